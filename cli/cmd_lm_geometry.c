/* bwt lm geometry | intervene: Paper III's geometry of a language model (bwt/lab/lm_geometry.h)
 * over prompts drawn by entropy quintile from a pool (bwt/lab/lm_pools.h), and interventions on
 * the entropy axis (bwt/lab/lm_intervene.h). A concise table on stdout, progress on stderr, JSON and
 * figures in --out. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bwt/fileio.h"
#include "bwt/lab/lm_geometry.h"
#include "bwt/lab/lm_intervene.h"
#include "bwt/lab/lm_pools.h"
#include "bwt/lm.h"
#include "bwt/lm_weights.h"
#include "bwt/rng.h"
#include "bwt/tokenizer.h"
#include "bwt/train.h"
#include "commands.h"
#include "options.h"
#include "progress.h"

typedef struct {
  char pool[OPT_STRING_MAX], tokenizer[OPT_STRING_MAX], out[OPT_STRING_MAX];
  int candidates, per_quintile;
  uint64_t seed;
} prompt_options;

static void coarse_progress(void *ctx, int i, int n) {
  int step = n > 4 ? n / 4 : 1;
  if (i % step == 0) progress_count((const char *)ctx, i + 1, n, "");
}

/* The model's tokenizer (the directory's or --tokenizer; none is fine: pools of ids only), the pool
 * and the stratified draw into *sel (quintile of each). Prints the error and returns the exit code. */
static int select_prompts(const char *cmd, const char *dir, prompt_options *po, bwt_lm *lm, bwt_lm_pool *sel,
                          int **quintile, char *pool_label, size_t cap) {
  bwt_tokenizer *tok = NULL;
  if (po->tokenizer[0]) {
    if (bwt_tokenizer_load(&tok, po->tokenizer) != BWT_STATUS_OK) return cli_error(cmd);
  } else {
    bwt_tokenizer_load(&tok, dir); /* absent: pools of ids only */
  }
  if (!po->pool[0]) snprintf(po->pool, sizeof po->pool, "%s", tok ? "mixed" : "ids");
  snprintf(pool_label, cap, "%s", po->pool);
  double t0 = (double)clock() / CLOCKS_PER_SEC;
  bwt_status s = bwt_lm_pool_draw(lm, tok, po->pool, po->candidates, po->per_quintile, po->seed, sel, quintile);
  bwt_tokenizer_free(tok);
  if (s != BWT_STATUS_OK) return cli_error(cmd);
  fprintf(stderr, "%s: pool %s: drew %d prompts by next-token-entropy quintile (%.1f s)\n", cmd, po->pool, sel->n, (double)clock() / CLOCKS_PER_SEC - t0);
  return 0;
}

static int check_prompt_options(const char *cmd, const prompt_options *po) {
  if (po->candidates < 5 || po->per_quintile < 1 || po->per_quintile > 100000) {
    fprintf(stderr, "bwt %s: --candidates must be >= 5 and --per-quintile >= 1\n", cmd);
    return 2;
  }
  return 0;
}

static void print_geometry(const bwt_lm_geometry *g) {
  printf("prompts %d (entropy quintiles), layers %d, heads %d on %d key/value heads of %d; bootstrap %d\n", g->n, g->L,
         g->NH, g->NKV, g->hs, g->n_boot);
  printf("\nvalue manifold (final-token values, all KV heads, z-scored; 95%% CI)\n");
  printf("%6s %22s %22s %22s %24s\n", "layer", "PC1", "PC1+PC2", "participation ratio", "Spearman(PC1, H)");
  for (int m = 0; m < g->n_manifold; m++) {
    const bwt_lm_manifold *v = &g->manifold[m];
    printf("%6d %7.3f [%5.3f,%5.3f] %7.3f [%5.3f,%5.3f] %7.2f [%5.2f,%5.2f] %8.3f [%6.3f,%6.3f]\n", v->layer, v->pc1.est,
           v->pc1.lo, v->pc1.hi, v->pc12.est, v->pc12.lo, v->pc12.hi, v->participation_ratio.est,
           v->participation_ratio.lo, v->participation_ratio.hi, v->spearman.est, v->spearman.lo, v->spearman.hi);
  }
  printf("\nkey orthogonality, mean |cos|: (a) W_K columns per KV head (Gaussian %.4f), (b) KV heads' keys at the final token\n"
         "(Gaussian %.4f), (c) random embeddings, degenerate: %.4f (Gaussian %.4f)\n",
         g->key_w_gaussian, g->key_act_gaussian, g->embed_cos, g->embed_gaussian);
  printf("%6s %10s %10s %12s %12s %12s %12s\n", "layer", "(a)", "(a) init", "(b) pre-RoPE", "(b) RoPE", "(b) init", "attn H bits");
  for (int l = 0; l < g->L; l++) {
    double a = 0, ai = 0;
    for (int h = 0; h < g->NKV; h++) a += g->key_w[l * g->NKV + h] / g->NKV, ai += g->key_w_init[l * g->NKV + h] / g->NKV;
    printf("%6d %10.4f %10.4f %12.4f %12.4f %12.4f %12.3f\n", l, a, ai, g->key_act[l], g->key_act_rot[l], g->key_act_init[l],
           g->attn_mean_heads[l]);
  }
  printf("\nattention entropy at the final token (mean over heads; uniform %.3f bits): reduction first -> last %.1f%% [%.1f, %.1f]"
         " (%.3f bits [%.3f, %.3f]); of the head-mean pattern: %.3f -> %.3f bits\n",
         g->uniform_entropy, 100 * g->attn_reduction.est, 100 * g->attn_reduction.lo, 100 * g->attn_reduction.hi,
         g->attn_reduction_bits.est, g->attn_reduction_bits.lo, g->attn_reduction_bits.hi, g->attn_of_mean[0],
         g->attn_of_mean[g->L - 1]);
  bwt_lm_check chk[8];
  int nc = bwt_lm_geometry_checks(g, chk, 8);
  printf("\nthresholds (docs/lm.md)\n");
  for (int i = 0; i < nc; i++) printf("  %-40s %-36s %9.4f  %s\n", chk[i].name, chk[i].rule, chk[i].value, chk[i].pass ? "pass" : "FAIL");
}

int cmd_lm_geometry(int argc, char **argv) {
  prompt_options po = {"", "", "lm_geometry", 1000, 15, 0};
  char layers[OPT_STRING_MAX] = "last", init_dir[OPT_STRING_MAX] = "";
  int boot = 1000, no_figures = 0, threads = 0;
  cli_option opts[] = {
      {"pool", OPT_STRING, po.pool, "prompt pool: mixed, math, code, prose, legal, ids, or FILE.jsonl ({\"text\"|\"tokens\", \"domain\"}); default mixed with a tokenizer, ids without"},
      {"candidates", OPT_INT, &po.candidates, "candidates a built-in pool makes"},
      {"per-quintile", OPT_INT, &po.per_quintile, "prompts drawn from each next-token-entropy quintile"},
      {"tokenizer", OPT_STRING, po.tokenizer, "tokenizer file or directory (default: the model directory's, if any)"},
      {"layers", OPT_STRING, layers, "value manifold at: last or all"},
      {"bootstrap", OPT_INT, &boot, "bootstrap resamples over prompts (95% intervals)"},
      {"init-dir", OPT_STRING, init_dir, "the same configuration at initialisation (key baselines); default: the model re-initialised in memory; none: W_K alone drawn"},
      {"seed", OPT_U64, &po.seed, "pool, draw, bootstrap and re-init seed"},
      {"out", OPT_STRING, po.out, "output directory (geometry.json, figures)"},
      {"no-figures", OPT_FLAG, &no_figures, "skip the figures"},
      threads_option(&threads, "threads (0 = environment; a model as small as stories260K runs fastest on 1)"),
  };
  cli_spec spec = {"lm geometry", "DIR [options]",
                   "Paper III's geometry of a language model over prompts drawn by next-token-entropy quintile:\n"
                   "the value manifold at the final token, key orthogonality by three definitions with their\n"
                   "Gaussian and initialisation baselines, attention focusing by layer, and the validation\n"
                   "thresholds (docs/lm.md). Writes OUT/geometry.json and figures.",
                   opts, 11, 1, 1};
  const char *pos[1];
  int npos = 0, rc = cli_parse(&spec, argc, argv, pos, &npos);
  if (rc) return rc == 1 ? 0 : rc;
  if ((rc = check_prompt_options("lm geometry", &po))) return rc;
  if (bwt_set_threads(threads) != BWT_STATUS_OK) return cli_error("lm geometry");
  if (strcmp(layers, "last") != 0 && strcmp(layers, "all") != 0) {
    fprintf(stderr, "bwt lm geometry: --layers must be last or all (got '%s')\n", layers);
    return 2;
  }
  if (boot < 0 || boot > 1000000) {
    fprintf(stderr, "bwt lm geometry: --bootstrap must be 0 to 1000000\n");
    return 2;
  }
  bwt_lm *lm = NULL, *init = NULL;
  if (bwt_lm_open(&lm, pos[0]) != BWT_STATUS_OK) return cli_error("lm geometry");
  char init_label[OPT_STRING_MAX + 64];
  if (init_dir[0] && strcmp(init_dir, "none") != 0) {
    if (bwt_lm_open(&init, init_dir) != BWT_STATUS_OK || bwt_lm_same_config(lm, init) != BWT_STATUS_OK) {
      bwt_lm_close(init);
      bwt_lm_close(lm);
      return cli_error("lm geometry");
    }
    snprintf(init_label, sizeof init_label, "init-dir %s", init_dir);
  } else if (!init_dir[0]) {
    /* The same configuration re-initialised in memory (bwt_lm_reinit); a model too large for it
     * keeps the W_K-only baseline. */
    if (bwt_lm_open(&init, pos[0]) == BWT_STATUS_OK && bwt_lm_reinit(init, bwt_hash2(po.seed, 0x1417), 0.02) == BWT_STATUS_OK) {
      snprintf(init_label, sizeof init_label, "re-initialised in memory: N(0, 0.02^2) projections and embeddings, norms 1, biases 0 (seed %llu)",
               (unsigned long long)po.seed);
    } else {
      fprintf(stderr, "lm geometry: no in-memory re-init (%s); the (a) baseline draws W_K alone, (b) has none (give --init-dir)\n", bwt_last_error());
      bwt_lm_close(init);
      init = NULL;
    }
  }
  bwt_lm_pool sel = {0};
  int *quintile = NULL;
  char label[OPT_STRING_MAX];
  rc = select_prompts("lm geometry", pos[0], &po, lm, &sel, &quintile, label, sizeof label);
  bwt_lm_geometry g = {0};
  if (!rc) {
    bwt_lm_geometry_options o;
    bwt_lm_geometry_options_default(&o);
    o.n_boot = boot, o.seed = po.seed, o.all_layers = strcmp(layers, "all") == 0;
    o.init_source = init ? init_label : NULL;
    clock_t t0 = clock();
    if (bwt_lm_geometry_compute(lm, init, &sel, quintile, &o, &g, coarse_progress, "lm geometry: prompt") != BWT_STATUS_OK)
      rc = cli_error("lm geometry");
    else fprintf(stderr, "lm geometry: measured in %.1f s\n", (double)(clock() - t0) / CLOCKS_PER_SEC);
  }
  if (!rc) {
    print_geometry(&g);
    bwt_status s = write_output(po.out, "geometry.json", bwt_lm_geometry_to_json(&g, pos[0], label));
    if (s == BWT_STATUS_OK && !no_figures) s = bwt_lm_geometry_figures(&g, po.out);
    if (s != BWT_STATUS_OK) rc = cli_error("lm geometry");
    else printf("\nwrote %s/geometry.json%s\n", po.out, no_figures ? "" : " and value_manifold, key_orthogonality, attention_entropy (.png, .svg)");
  }
  bwt_lm_geometry_free(&g);
  bwt_lm_pool_free(&sel);
  free(quintile);
  bwt_lm_close(init);
  bwt_lm_close(lm);
  return rc;
}

int cmd_lm_intervene(int argc, char **argv) {
  prompt_options po = {"", "", "lm_intervene", 1000, 15, 0};
  char layers_s[OPT_STRING_MAX] = "", sula[OPT_STRING_MAX] = "";
  int layer = -1, threads = 0, no_figures = 0;
  double alpha = 1.0;
  cli_option opts[] = {
      {"layer", OPT_INT, &layer, "the layer whose final-token values are edited (-1: the last)"},
      {"layers", OPT_STRING, layers_s, "several layers, comma-separated (3,4,5), each on its own"},
      {"alpha", OPT_DOUBLE, &alpha, "strength: 1 = full cut / keep-only, shifts of ±alpha sigma along the axis"},
      {"sula", OPT_STRING, sula, "SULA records (bwt lm sula --export JSON lines): entropy MAE with and without each edit"},
      {"pool", OPT_STRING, po.pool, "prompt pool for the axis (as bwt lm geometry)"},
      {"candidates", OPT_INT, &po.candidates, "candidates a built-in pool makes"},
      {"per-quintile", OPT_INT, &po.per_quintile, "prompts drawn from each next-token-entropy quintile"},
      {"tokenizer", OPT_STRING, po.tokenizer, "tokenizer file or directory (default: the model directory's, if any)"},
      {"seed", OPT_U64, &po.seed, "pool, draw and random-axis seed"},
      {"out", OPT_STRING, po.out, "output directory (intervene.json, intervene_spearman figure)"},
      {"no-figures", OPT_FLAG, &no_figures, "skip the figure"},
      threads_option(&threads, "threads (0 = environment; a model as small as stories260K runs fastest on 1)"),
  };
  cli_spec spec = {"lm intervene", "DIR [options]",
                   "Interventions on the entropy axis u_ent (PC1 of the standardised final-token values of a layer):\n"
                   "cut, keep-only and shifts of the final token's values, each beside the same edit along a\n"
                   "random axis orthogonal to u_ent; effects on the axis-entropy correlation, the next-token\n"
                   "entropy and (--sula) the SULA entropy MAE. Writes OUT/intervene.json and a figure.",
                   opts, 12, 1, 1};
  const char *pos[1];
  int npos = 0, rc = cli_parse(&spec, argc, argv, pos, &npos);
  if (rc) return rc == 1 ? 0 : rc;
  if ((rc = check_prompt_options("lm intervene", &po))) return rc;
  if (bwt_set_threads(threads) != BWT_STATUS_OK) return cli_error("lm intervene");
  if (!isfinite(alpha) || fabs(alpha) > 1e6) {
    fprintf(stderr, "bwt lm intervene: --alpha must be a finite number\n");
    return 2;
  }
  if (layers_s[0] && cli_given(&spec, "layer")) {
    fprintf(stderr, "bwt lm intervene: give one of --layer and --layers\n");
    return 2;
  }
  bwt_lm *lm = NULL;
  if (bwt_lm_open(&lm, pos[0]) != BWT_STATUS_OK) return cli_error("lm intervene");
  const bwt_lm_config *c = bwt_lm_config_of(lm);
  int ls[256], nl = 1;
  ls[0] = layer < 0 ? c->L - 1 : layer;
  if (layers_s[0]) nl = parse_int_list(layers_s, ls, 256, 0, c->L - 1);
  if (nl < 0 || ls[0] >= c->L || layer < -1) {
    fprintf(stderr, "bwt lm intervene: layers must be in 0..%d (got '%s')\n", c->L - 1, layers_s[0] ? layers_s : "--layer");
    bwt_lm_close(lm);
    return 2;
  }
  bwt_lm_record *rec = NULL;
  int n_rec = 0;
  if (sula[0] && bwt_lm_records_read(sula, c->V, c->max_pos, 1, &rec, &n_rec) != BWT_STATUS_OK) {
    bwt_lm_close(lm);
    return cli_error("lm intervene");
  }
  bwt_lm_pool sel = {0};
  int *quintile = NULL;
  char label[OPT_STRING_MAX];
  rc = select_prompts("lm intervene", pos[0], &po, lm, &sel, &quintile, label, sizeof label);
  bwt_lm_intervention *iv = calloc((size_t)nl, sizeof *iv);
  if (!rc && !iv) rc = (fprintf(stderr, "bwt lm intervene: out of memory\n"), 1);
  int done = 0;
  for (int k = 0; !rc && k < nl; k++, done++) {
    char what[64];
    snprintf(what, sizeof what, "lm intervene: layer %d, edit", ls[k]);
    if (bwt_lm_intervene(lm, &sel, ls[k], alpha, po.seed, rec, n_rec, &iv[k], coarse_progress, what) != BWT_STATUS_OK)
      rc = cli_error("lm intervene");
  }
  if (!rc) {
    for (int k = 0; k < nl; k++) {
      const bwt_lm_intervention *v = &iv[k];
      printf("layer %d: %d prompts, u_ent explains %.1f%% (PC1 score sd %.3f), Spearman(PC1, H) %.3f; SULA MAE %.4f bits over %d records\n",
             v->layer, v->n, 100 * v->pc1, v->score_sd, v->spearman, v->sula_mae, v->n_sula);
      printf("  %-12s %-8s %7s %18s %14s %14s %12s\n", "edit", "axis", "alpha", "Spearman(PC1, H)", "mean dH bits", "mean |dH|", "SULA MAE");
      for (int e = 0; e < v->n_effects; e++) {
        const bwt_lm_intervention_effect *x = &v->effects[e];
        printf("  %-12s %-8s %7.2f %18.3f %14.4f %14.4f %12.4f\n", x->op, x->axis, x->alpha, x->spearman, x->mean_entropy_change,
               x->mean_abs_entropy_change, x->sula_mae);
      }
    }
    bwt_status st = write_output(po.out, "intervene.json", bwt_lm_intervention_to_json(iv, nl, pos[0], label));
    if (st == BWT_STATUS_OK && !no_figures) st = bwt_lm_intervention_figure(iv, nl, po.out);
    if (st != BWT_STATUS_OK) rc = cli_error("lm intervene");
    else printf("wrote %s/intervene.json%s\n", po.out, no_figures ? "" : " and intervene_spearman (.png, .svg)");
  }
  for (int k = 0; iv && k < done; k++) bwt_lm_intervention_free(&iv[k]);
  free(iv);
  bwt_lm_records_free(rec, n_rec);
  bwt_lm_pool_free(&sel);
  free(quintile);
  bwt_lm_close(lm);
  return rc;
}
