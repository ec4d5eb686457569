/* bwt dynamics: the gradient-dynamics instruments of Paper II (SPEC.md §6). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/checkpoint.h"
#include "bwt/lab/detector.h"
#include "bwt/lab/dynamics.h"
#include "bwt/fileio.h"
#include "bwt/lab/geometry.h"
#include "bwt/lab/lm_dynamics.h"
#include "bwt/lab/single_head.h"
#include "bwt/lab/timescales.h"
#include "commands.h"
#include "options.h"
#include "progress.h"

static const char *const experiments =
    "experiments:\n"
    "  verify CKPT|RUN_DIR   on real batches of the checkpoint's task, runs the backward pass with every\n"
    "                        block's attention traced and checks the two identities of the softmax\n"
    "                        Jacobian against the gradients the kernels computed:\n"
    "                          routing law   dL/ds_ij = a_ij (b_ij - sum_k a_ik b_ik),  b_ij = u_i . v_j\n"
    "                          values        dL/dv_j  = sum_i a_ij u_i\n"
    "                        (u_i = dL/do_i, the upstream gradient of the attention output). Prints the\n"
    "                        largest deviation per block; exits 1 if one exceeds --tol relative to the\n"
    "                        block's largest gradient.\n"
    "  verify MODEL_DIR      the same on a Hugging Face language model (a directory with config.json and\n"
    "                        model.safetensors or its index, and no checkpoint.safetensors: a run\n"
    "                        directory has one): the real fp32 backward of the next-token cross-entropy\n"
    "                        on --prompts FILE.jsonl ({\"tokens\": [ids]}) or --batches random prompts of\n"
    "                        --length tokens (--seed); with grouped-query attention v_j is the head's\n"
    "                        key/value head's value and dL/dv_j sums over the query heads sharing it.\n"
    "  em                    the sticky Markov chain (one sequence of --T positions, full batch) with\n"
    "                        Paper II's single head: plain gradient descent with --lr everywhere (SGD)\n"
    "                        against the EM-like schedule (--lr-v on W_V, --lr elsewhere) from identical\n"
    "                        starts, per seed. Reports the speed-up (steps / mean step at which the EM arm\n"
    "                        goes below the SGD arm's mean final loss), its spread over seeds, a paired t\n"
    "                        and an exact sign-flip test on the final losses, and each arm's distance to the\n"
    "                        exact posterior's cross-entropy and to the 1.82919-nat floor.\n"
    "  falsify               the same runs under each routing mode: gradient (the true gradient), frozen\n"
    "                        (W_Q, W_K never updated), no-baseline (dL/ds_ij replaced by a_ij b_ij) and\n"
    "                        uniform (a_ij = 1/(i+1)): loss, calibration against the exact posterior and the\n"
    "                        value manifold (PC1 of the head outputs against the posterior entropy).\n"
    "  timescales RUN_DIR    routing vs content in a transformer run: from the training log (every log\n"
    "                        step, every block), the gradient norms of W_Q and W_K over that of W_V and the\n"
    "                        update rate of W_Q over that of W_V, early (first 10%% of steps) and over the\n"
    "                        run; with snapshots (bwt train --snapshots N), the steps at which the attention\n"
    "                        patterns and the values reach 90%% of their final similarity.\n"
    "  detect CKPT|RUN_DIR   the geometry detector of seed 000 with controls: per-head advantage matrices\n"
    "                        from a traced backward, one feature per supervised row (the advantage mass\n"
    "                        routed to each token), their silhouette under the rows' hypotheses (targets),\n"
    "                        each row's silhouette as its confidence against its error |H(p) - H(q)|,\n"
    "                        and how often the detector fires (silhouette > --threshold) on subsamples of\n"
    "                        the real task, of random-token inputs and of label-shuffled rows.\n"
    "  detect MODEL_DIR --prompts FILE.jsonl\n"
    "                        the detector on a language model: records of bwt lm sula --export\n"
    "                        ({\"tokens\", \"labels\": [idA, idB], \"y\", \"posterior\", \"control\"}), one row\n"
    "                        per prompt (control \"none\"), the final position, the loss the cross-entropy\n"
    "                        of label y (--soft: of the posterior over the two labels); features per head\n"
    "                        over token buckets (id mod --buckets); also the Q/V gradient-norm ratio\n"
    "                        |dL/dW_Q| / |dL/dW_V| of every layer (docs/lm.md, Gradients).\n";

static bwt_status write_verify_json(const char *path, const bwt_dynamics_check *c, int L) {
  cJSON *a = cJSON_CreateArray();
  for (int l = 0; a && l < L; l++) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "block", l);
    cJSON_AddNumberToObject(o, "routing_max_abs_diff", c[l].score_max_abs);
    cJSON_AddNumberToObject(o, "routing_max_abs_grad", c[l].score_scale);
    cJSON_AddNumberToObject(o, "values_max_abs_diff", c[l].value_max_abs);
    cJSON_AddNumberToObject(o, "values_max_abs_grad", c[l].value_scale);
    cJSON_AddItemToArray(a, o);
  }
  char *text = a ? cJSON_Print(a) : NULL;
  cJSON_Delete(a);
  bwt_status s = text ? bwt_write_file_atomic(path, text, strlen(text)) : bwt_fail(BWT_STATUS_NOMEM, "out of memory");
  free(text);
  return s;
}

/* A Hugging Face model directory rather than a run: config.json with model.safetensors (or its
 * index) and no checkpoint.safetensors (a run directory has config.json too). */
static int is_lm_dir(const char *where) {
  char path[4096 + 64];
  snprintf(path, sizeof path, "%s/checkpoint.safetensors", where);
  if (bwt_path_exists(path)) return 0;
  snprintf(path, sizeof path, "%s/config.json", where);
  if (!bwt_path_exists(path)) return 0;
  snprintf(path, sizeof path, "%s/model.safetensors", where);
  int weights = bwt_path_exists(path);
  snprintf(path, sizeof path, "%s/model.safetensors.index.json", where);
  return weights || bwt_path_exists(path);
}

/* Prints the per-block table of verify; returns whether a deviation exceeds tol. */
static int print_verify(const bwt_dynamics_check *c, int L, double tol, const char *what) {
  int failed = 0;
  printf("%6s %14s %14s %10s %14s %14s %10s\n", what, "routing |diff|", "max |dL/ds|", "relative",
         "values |diff|", "max |dL/dv|", "relative");
  for (int l = 0; l < L; l++) {
    double rs = c[l].score_scale > 0 ? c[l].score_max_abs / c[l].score_scale : 0;
    double rv = c[l].value_scale > 0 ? c[l].value_max_abs / c[l].value_scale : 0;
    failed |= rs > tol || rv > tol;
    printf("%6d %14.3e %14.3e %10.2e %14.3e %14.3e %10.2e\n", l, c[l].score_max_abs, c[l].score_scale, rs,
           c[l].value_max_abs, c[l].value_scale, rv);
  }
  printf(failed ? "FAILED: a deviation exceeds %g of its %s's largest gradient\n"
                : "both identities hold to rounding (tolerance %g relative)\n", tol, what);
  return failed;
}

static int verify_lm(const char *dir, const char *prompts, int n_random, int length, uint64_t seed, double tol,
                     const char *json, int threads) {
  if (bwt_set_threads(threads) != BWT_STATUS_OK) return cli_error("dynamics verify");
  bwt_lm *lm = NULL;
  if (bwt_lm_open(&lm, dir) != BWT_STATUS_OK) return cli_error("dynamics verify");
  const bwt_lm_config *c = bwt_lm_config_of(lm);
  bwt_lm_record *p = NULL;
  int n = n_random;
  bwt_status s = BWT_STATUS_OK;
  if (!*prompts && length > c->max_pos)
    s = bwt_fail(BWT_STATUS_ARG, "--length %d exceeds the model's %d positions", length, c->max_pos);
  else s = *prompts ? bwt_lm_records_read(prompts, c->V, c->max_pos, 0, &p, &n) : bwt_lm_records_random(&p, n, length, c->V, seed);
  if (s != BWT_STATUS_OK) {
    bwt_lm_close(lm);
    fprintf(stderr, "bwt dynamics verify: %s\n", bwt_last_error());
    return 2;
  }
  bwt_dynamics_check *chk = bwt_calloc((size_t)c->L, sizeof *chk, "verify");
  s = chk ? bwt_lm_dynamics_verify(lm, p, n, chk) : BWT_STATUS_NOMEM;
  int failed = 0;
  if (s == BWT_STATUS_OK) {
    printf("%s (%s, %d layers, %d query heads on %d key/value heads): %d %s prompts, every head of every layer\n", dir,
           c->architecture, c->L, c->NH, c->NKV, n, *prompts ? "file" : "random");
    failed = print_verify(chk, c->L, tol, "layer");
    if (*json) s = write_verify_json(json, chk, c->L);
  }
  int rc = s != BWT_STATUS_OK ? (s == BWT_STATUS_ARG ? (fprintf(stderr, "bwt dynamics verify: %s\n", bwt_last_error()), 2)
                                                      : cli_error("dynamics verify"))
                              : failed;
  free(chk);
  bwt_lm_records_free(p, n);
  bwt_lm_close(lm);
  return rc;
}

static int verify(int argc, char **argv) {
  int batches = 4, batch = 32, threads = 0, length = 32;
  uint64_t seed = 0x5eed;
  double tol = 1e-4;
  char json[OPT_STRING_MAX] = "", prompts[OPT_STRING_MAX] = "";
  cli_option opts[] = {
      {"json", OPT_STRING, json, "also write the deviations per block as JSON to this file"},
      {"batches", OPT_INT, &batches, "real batches checked (language model: random prompts)"},
      {"prompts", OPT_STRING, prompts, "language model: JSON lines of prompts {\"tokens\": [ids]} instead of random ones"},
      {"length", OPT_INT, &length, "language model: tokens per random prompt"},
      {"batch", OPT_INT, &batch, "sequences per batch"},
      {"seed", OPT_U64, &seed, "batch stream seed"},
      {"tol", OPT_DOUBLE, &tol, "largest deviation allowed, relative to the block's largest gradient"},
      threads_option(&threads, NULL),
  };
  cli_spec spec = {"dynamics verify", "CHECKPOINT|RUN_DIR|MODEL_DIR [options]",
                   "Checks the routing law and the responsibility-weighted value gradient against the real\n"
                   "backward pass of every attention block (see bwt dynamics --help).",
                   opts, (int)(sizeof opts / sizeof *opts), 1, 1};
  const char *pos[1];
  int npos = 0, rc = cli_parse(&spec, argc, argv, pos, &npos);
  if (rc) return rc == 1 ? 0 : rc;
  if (batches < 1 || batch < 1 || threads < 0 || !(tol > 0)) {
    fprintf(stderr, "bwt dynamics verify: --batches and --batch must be >= 1, --tol > 0, --threads >= 0\n");
    return 2;
  }
  if (is_lm_dir(pos[0])) {
    if (length < 2) {
      fprintf(stderr, "bwt dynamics verify: --length must be >= 2 (a prompt needs a next-token target)\n");
      return 2;
    }
    return verify_lm(pos[0], prompts, batches, length, seed, tol, json, threads);
  }
  if (*prompts) {
    fprintf(stderr, "bwt dynamics verify: --prompts is for a language model directory, %s is a bwt run or checkpoint\n", pos[0]);
    return 2;
  }
  bwt_run run;
  if (bwt_run_open(&run, pos[0], threads, BWT_RUN_NO_TASK) != BWT_STATUS_OK) return cli_error("dynamics verify");
  const bwt_model *model = run.model;
  bwt_dynamics_check c[256];
  bwt_status s = model->cfg.n_layers <= 256 ? bwt_run_create_task(&run) : bwt_fail(BWT_STATUS_ARG, "more than 256 blocks");
  if (s == BWT_STATUS_OK) s = bwt_dynamics_verify(run.model, run.task, NULL, seed, batches, batch, c);
  int failed = 0;
  if (s == BWT_STATUS_OK) {
    printf("%s, step %d: %d batches of %d sequences, every head of every block\n", run.path, run.step, batches, batch);
    failed = print_verify(c, model->cfg.n_layers, tol, "block");
    if (*json) s = write_verify_json(json, c, model->cfg.n_layers);
  }
  rc = s != BWT_STATUS_OK ? cli_error("dynamics verify") : failed;
  bwt_run_close(&run);
  return rc;
}

/* "42,2024,..." into seeds (at most cap); returns the count, or 0 after printing an error. */
static int parse_seeds(const char *text, uint64_t *seeds, int cap, const char *command) {
  int n = 0;
  for (const char *p = text; *p;) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(p, &end, 10);
    if (end == p || errno || (*end && *end != ',') || n == cap || *p == '-') {
      fprintf(stderr, "bwt dynamics %s: --seeds needs up to %d comma-separated non-negative integers, got '%s'\n",
              command, cap, text);
      return 0;
    }
    seeds[n++] = v;
    p = *end ? end + 1 : end;
  }
  if (!n) fprintf(stderr, "bwt dynamics %s: --seeds is empty\n", command);
  return n;
}

static void count_runs(void *ctx, int i, int n) { progress_count((const char *)ctx, i, n, ""); }

/* The options em and falsify share; returns 0 or an exit code. */
typedef struct {
  bwt_em_config c;
  char seeds_text[OPT_STRING_MAX], routing[OPT_STRING_MAX], out[OPT_STRING_MAX];
  uint64_t seeds[20];
  int threads, no_figures;
} sh_options;

static int sh_parse(sh_options *o, int argc, char **argv, const char *name, const char *summary, int with_routing) {
  o->c = (bwt_em_config){1999, 1000, 0.01, 0.1, BWT_ROUTING_GRADIENT, 0, o->seeds};
  snprintf(o->seeds_text, sizeof o->seeds_text, "42,2024,1337,7777,9999");
  snprintf(o->routing, sizeof o->routing, "gradient");
  snprintf(o->out, sizeof o->out, "runs/dynamics/%s", name);
  o->threads = 0, o->no_figures = 0;
  cli_option opts[] = {
      {"T", OPT_INT, &o->c.T, "positions of the sticky-chain sequence (full batch)"},
      {"steps", OPT_INT, &o->c.steps, "full-batch gradient steps"},
      {"lr", OPT_DOUBLE, &o->c.lr, "step size on W_Q, W_K, W_O (and on W_V in the SGD arm)"},
      {"lr-v", OPT_DOUBLE, &o->c.lr_v, "step size on W_V in the EM-like arm"},
      {"seeds", OPT_STRING, o->seeds_text, "seeds, comma-separated (each gives a sequence and a start)"},
      {"out", OPT_STRING, o->out, "output directory"},
      {"no-figures", OPT_FLAG, &o->no_figures, "write the JSON only"},
      threads_option(&o->threads, NULL),
      {"routing", OPT_STRING, o->routing, "routing mode of both arms: gradient, frozen, no-baseline, uniform"},
  };
  char command[64];
  snprintf(command, sizeof command, "dynamics %s", name);
  cli_spec spec = {command, "[options]", summary, opts, (int)(sizeof opts / sizeof *opts) - !with_routing, 0, 0};
  int npos = 0, rc = cli_parse(&spec, argc, argv, NULL, &npos);
  if (rc) return rc == 1 ? -1 : rc;
  if (o->c.T < 2 || o->c.steps < 1 || !(o->c.lr >= 0) || !(o->c.lr_v >= 0) || o->threads < 0) {
    fprintf(stderr, "bwt dynamics %s: --T must be >= 2, --steps >= 1, --lr and --lr-v >= 0, --threads >= 0\n", name);
    return 2;
  }
  if (!(o->c.n_seeds = parse_seeds(o->seeds_text, o->seeds, 20, name))) return 2;
  if (bwt_routing_parse(o->routing, &o->c.routing) != BWT_STATUS_OK) {
    fprintf(stderr, "bwt dynamics %s: %s\n", name, bwt_last_error());
    return 2;
  }
  if (bwt_set_threads(o->threads) != BWT_STATUS_OK) {
    fprintf(stderr, "bwt dynamics %s: %s\n", name, bwt_last_error());
    return 1;
  }
  return 0;
}

static int em(int argc, char **argv) {
  sh_options o;
  int rc = sh_parse(&o, argc, argv, "em",
                    "EM-like schedule vs SGD on the sticky chain with Paper II's single head (see bwt dynamics --help).", 1);
  if (rc) return rc < 0 ? 0 : rc;
  bwt_em_result r;
  bwt_status s = bwt_em_vs_sgd(&o.c, &r, count_runs, "dynamics em: run");
  if (s != BWT_STATUS_OK) return cli_error("dynamics em");
  printf("sticky chain, T=%d, %d full-batch steps, lr %g (EM arm: %g on W_V), routing %s\n", o.c.T, o.c.steps, o.c.lr,
         o.c.lr_v, bwt_routing_name(o.c.routing));
  printf("%8s %10s %10s %10s %12s %12s %12s\n", "seed", "Bayes CE", "SGD final", "EM final", "EM below at",
         "SGD KL bits", "EM KL bits");
  for (int i = 0; i < r.n_seeds; i++)
    printf("%8llu %10.4f %10.4f %10.4f %12d %12.4f %12.4f\n", (unsigned long long)o.seeds[i], r.bayes_ce[i],
           r.sgd[(size_t)i * (r.steps + 1) + r.steps], r.em[(size_t)i * (r.steps + 1) + r.steps], r.em_cross[i],
           r.sgd_report[i].kl_bits, r.em_report[i].kl_bits);
  double gap_sgd = 0, gap_em = 0, bayes = 0;
  for (int i = 0; i < r.n_seeds; i++) {
    bayes += r.bayes_ce[i] / r.n_seeds;
    gap_sgd += (r.sgd[(size_t)i * (r.steps + 1) + r.steps] - r.bayes_ce[i]) / r.n_seeds;
    gap_em += (r.em[(size_t)i * (r.steps + 1) + r.steps] - r.bayes_ce[i]) / r.n_seeds;
  }
  printf("speed-up %.2fx (%d / mean step of the EM arm below the SGD arm's mean final loss %.4f); per seed %.2f +- %.2f (sd)\n",
         r.speedup, r.steps, r.sgd_mean_final, r.speedup_mean, r.speedup_sd);
  printf("final loss SGD - EM: paired t %.2f over %d seeds, exact sign-flip p = %.4f\n", r.t_stat, r.n_seeds, r.p_exact);
  printf("mean distance to the exact posterior's cross-entropy (%.4f nats): SGD %+.4f, EM %+.4f; to the floor %.5f: SGD %+.4f, EM %+.4f nats\n",
         bayes, gap_sgd, gap_em, r.floor_nats, gap_sgd + bayes - r.floor_nats, gap_em + bayes - r.floor_nats);
  s = write_output(o.out, "em.json", bwt_em_to_json(&o.c, &r));
  if (s == BWT_STATUS_OK && !o.no_figures) s = bwt_em_figure(&r, o.out);
  if (s == BWT_STATUS_OK) printf("wrote %s/em.json%s\n", o.out, o.no_figures ? "" : " and em_vs_sgd.{png,svg}");
  bwt_em_result_free(&r);
  return s == BWT_STATUS_OK ? 0 : cli_error("dynamics em");
}

static int falsify(int argc, char **argv) {
  sh_options o;
  int rc = sh_parse(&o, argc, argv, "falsify",
                    "The sticky-chain single head trained under each routing mode (see bwt dynamics --help).", 0);
  if (rc) return rc < 0 ? 0 : rc;
  const bwt_routing modes[4] = {BWT_ROUTING_GRADIENT, BWT_ROUTING_FROZEN, BWT_ROUTING_NO_BASELINE, BWT_ROUTING_UNIFORM};
  bwt_falsify_result r;
  bwt_status s = bwt_falsify(&o.c, modes, 4, &r, count_runs, "dynamics falsify: run");
  if (s != BWT_STATUS_OK) return cli_error("dynamics falsify");
  double bayes = 0;
  for (int i = 0; i < r.n_seeds; i++) bayes += r.bayes_ce[i] / r.n_seeds;
  printf("sticky chain, T=%d, %d full-batch steps, lr %g, lr on W_V %g; means over %d seeds (exact posterior's CE %.4f nats)\n",
         o.c.T, o.c.steps, o.c.lr, o.c.lr_v, r.n_seeds, bayes);
  printf("%12s %11s %11s %14s %10s %9s %18s\n", "routing", "final loss", "minus Bayes", "entropy MAE", "KL bits",
         "PC1", "Spearman(PC1, H)");
  for (int m = 0; m < 4; m++) {
    double loss = 0, mae = 0, kl = 0, pc1 = 0, rho = 0;
    for (int i = 0; i < r.n_seeds; i++) {
      const bwt_sh_report *rep = &r.report[m * r.n_seeds + i];
      loss += r.loss[((size_t)m * r.n_seeds + i) * (r.steps + 1) + r.steps] / r.n_seeds;
      mae += rep->entropy_mae_bits / r.n_seeds, kl += rep->kl_bits / r.n_seeds;
      pc1 += rep->pc1 / r.n_seeds, rho += fabs(rep->spearman) / r.n_seeds;
    }
    printf("%12s %11.4f %+11.4f %14.4f %10.4f %8.1f%% %18.3f\n", bwt_routing_name(modes[m]), loss, loss - bayes, mae,
           kl, 100 * pc1, rho);
  }
  printf("(Spearman as |rho|: the sign of a principal component is arbitrary)\n");
  s = write_output(o.out, "falsify.json", bwt_falsify_to_json(&o.c, &r));
  if (s == BWT_STATUS_OK && !o.no_figures) s = bwt_falsify_figure(&r, o.out);
  if (s == BWT_STATUS_OK) printf("wrote %s/falsify.json%s\n", o.out, o.no_figures ? "" : " and falsify.{png,svg}");
  bwt_falsify_free(&r);
  return s == BWT_STATUS_OK ? 0 : cli_error("dynamics falsify");
}

static int timescales(int argc, char **argv) {
  int threads = 0, no_figures = 0;
  char out[OPT_STRING_MAX] = "";
  cli_option opts[] = {
      {"out", OPT_STRING, out, "output directory (default RUN_DIR/dynamics)"},
      {"no-figures", OPT_FLAG, &no_figures, "write the JSON only"},
      threads_option(&threads, NULL),
  };
  cli_spec spec = {"dynamics timescales", "RUN_DIR [options]",
                   "Routing vs content timescales of a transformer run (see bwt dynamics --help).", opts,
                   (int)(sizeof opts / sizeof *opts), 1, 1};
  const char *pos[1];
  int npos = 0, rc = cli_parse(&spec, argc, argv, pos, &npos);
  if (rc) return rc == 1 ? 0 : rc;
  if (threads < 0) {
    fprintf(stderr, "bwt dynamics timescales: --threads must be >= 0\n");
    return 2;
  }
  bwt_run run;
  if (bwt_run_open(&run, pos[0], threads, BWT_RUN_NO_TASK) != BWT_STATUS_OK) return cli_error("dynamics timescales");
  bwt_run_close(&run); /* the configuration is all it needs */
  const char *dir = run.dir;
  const bwt_run_config cfg = run.cfg;
  char outdir[4096 + 16];
  output_dir(outdir, sizeof outdir, out, dir, "dynamics");
  bwt_timescales t;
  if (bwt_timescales_read(dir, cfg.train.steps, &t) != BWT_STATUS_OK) return cli_error("dynamics timescales");
  printf("%s: %d logged steps of %d; medians of the ratios over the logged steps\n", dir, t.n, cfg.train.steps);
  printf("%6s %16s %16s %16s %16s %18s %18s\n", "block", "|gQ|/|gV| early", "|gQ|/|gV| all", "|gK|/|gV| early",
         "|gK|/|gV| all", "updQ/updV early", "updQ/updV all");
  for (int l = 0; l < t.L; l++)
    printf("%6d %16.4f %16.4f %16.4f %16.4f %18.4f %18.4f\n", l, t.qv_early[l], t.qv_all[l], t.kv_early[l],
           t.kv_all[l], t.upd_qv_early[l], t.upd_qv_all[l]);
  bwt_status s = write_output(outdir, "timescales.json", bwt_timescales_to_json(&t));
  if (s == BWT_STATUS_OK && !no_figures) s = bwt_timescales_figure(&t, outdir);
  bwt_timescales_free(&t);
  char snaps[4096 + 16];
  snprintf(snaps, sizeof snaps, "%s/snapshots", dir);
  if (s == BWT_STATUS_OK && bwt_path_exists(snaps)) {
    bwt_geometry_options o;
    bwt_geometry_options_default(&o);
    o.n_seqs = 256;
    bwt_series sr;
    s = bwt_geometry_series(dir, &o, &sr, NULL, NULL);
    if (s == BWT_STATUS_OK) {
      printf("from %d snapshots: attention patterns reach 90%% of their final similarity at step %d, key frames at %d,"
             " values at %d\n", sr.n, sr.settle_step[BWT_SERIES_ATTN], sr.settle_step[BWT_SERIES_KEYS],
             sr.settle_step[BWT_SERIES_VALUES]);
      bwt_series_free(&sr);
    }
  }
  if (s == BWT_STATUS_OK) printf("wrote %s/timescales.json%s\n", outdir, no_figures ? "" : " and timescales.{png,svg}");
  return s == BWT_STATUS_OK ? 0 : cli_error("dynamics timescales");
}

/* The detector on a language model (bwt/lab/lm_dynamics.h). */
static int detect_lm(const char *dir, const char *prompts, bwt_lm_detect_options *o, const char *out, int no_figures,
                     int threads) {
  if (bwt_set_threads(threads) != BWT_STATUS_OK) return cli_error("dynamics detect");
  bwt_lm *lm = NULL;
  if (bwt_lm_open(&lm, dir) != BWT_STATUS_OK) return cli_error("dynamics detect");
  const bwt_lm_config *c = bwt_lm_config_of(lm);
  bwt_lm_record *p = NULL;
  int n = 0;
  if (o->det.layer >= c->L || o->det.layer < -1) {
    fprintf(stderr, "bwt dynamics detect: --layer %d is not one of the model's layers 0..%d (-1: the last)\n", o->det.layer, c->L - 1);
    bwt_lm_close(lm);
    return 2;
  }
  if (bwt_lm_records_read(prompts, c->V, c->max_pos, 1, &p, &n) != BWT_STATUS_OK) {
    fprintf(stderr, "bwt dynamics detect: %s\n", bwt_last_error());
    bwt_lm_close(lm);
    return 2;
  }
  char outdir[4096 + 64];
  if (*out) snprintf(outdir, sizeof outdir, "%s", out);
  else {
    const char *base = strrchr(dir, '/');
    base = base && base[1] ? base + 1 : dir;
    snprintf(outdir, sizeof outdir, "runs/dynamics/detect_%s", base);
  }
  bwt_lm_detect_result r;
  bwt_status s = bwt_lm_detect(lm, p, n, o, &r);
  if (s == BWT_STATUS_OK) {
    printf("%s (%s): layer %d, %d prompts (%d with another control skipped), %d feature slots per head%s; fires when the"
           " silhouette exceeds %g (%d subsamples of %d rows)\n", dir, c->architecture, r.layer, n, r.skipped, r.buckets,
           o->soft ? ", soft targets" : "", o->det.threshold, o->det.subsamples, o->det.subsample_rows);
    printf("%16s %7s %9s %11s %22s %10s %10s\n", "inputs", "rows", "clusters", "silhouette", "r(confidence, -error)",
           "fire rate", "mean loss");
    for (int k = 0; k < BWT_DETECT_N; k++)
      printf("%16s %7d %9d %11.4f %22.4f %9.1f%% %10.4f\n", bwt_detect_input_names[k], r.r[k].rows, r.r[k].clusters,
             r.r[k].silhouette, r.r[k].confidence_r, 100 * r.r[k].fire_rate, r.mean_loss[k]);
    char fp[2][48];
    for (int k = 0; k < 2; k++) {
      const bwt_detect_result *d = &r.r[k ? BWT_DETECT_SHUFFLED_LABELS : BWT_DETECT_RANDOM_TOKENS];
      if (isnan(d->fire_rate)) snprintf(fp[k], sizeof fp[k], "n/a (%d label%s: nothing to decide)", d->clusters, d->clusters == 1 ? "" : "s");
      else snprintf(fp[k], sizeof fp[k], "%.1f%%", 100 * d->fire_rate);
    }
    printf("false-positive rate on the controls: %s (random tokens), %s (shuffled labels)\n", fp[0], fp[1]);
    printf("%6s %18s %18s\n", "layer", "|gQ|/|gV| real", "|gQ|/|gV| random");
    for (int l = 0; l < r.L; l++) printf("%6d %18.4f %18.4f\n", l, r.qv_ratio[BWT_DETECT_REAL][l], r.qv_ratio[BWT_DETECT_RANDOM_TOKENS][l]);
    s = write_output(outdir, "detect.json", bwt_lm_detect_to_json(o, &r, dir));
    if (s == BWT_STATUS_OK && !no_figures) s = bwt_detect_figure(&o->det, r.r, outdir);
    if (s == BWT_STATUS_OK) printf("wrote %s/detect.json%s\n", outdir, no_figures ? "" : " and detector.{png,svg}");
    bwt_lm_detect_result_free(&r);
  }
  int rc = s == BWT_STATUS_OK ? 0 : cli_error("dynamics detect");
  bwt_lm_records_free(p, n);
  bwt_lm_close(lm);
  return rc;
}

static int detect(int argc, char **argv) {
  bwt_lm_detect_options lo;
  bwt_lm_detect_options_default(&lo);
  bwt_detector_options o = lo.det;
  int threads = 0, no_figures = 0;
  char out[OPT_STRING_MAX] = "", prompts[OPT_STRING_MAX] = "";
  cli_option opts[] = {
      {"out", OPT_STRING, out, "output directory (default RUN_DIR/dynamics; language model: runs/dynamics/detect_NAME)"},
      {"prompts", OPT_STRING, prompts, "language model: JSON lines of prompts with labels, y and posterior (required)"},
      {"buckets", OPT_INT, &lo.buckets, "language model: feature slots per head, token id mod this (0: min(V, 1024))"},
      {"soft", OPT_FLAG, &lo.soft, "language model: the loss against the posterior over the two labels"},
      {"no-figures", OPT_FLAG, &no_figures, "write the JSON only"},
      {"layer", OPT_INT, &o.layer, "block traced (-1 = the last)"},
      {"seqs", OPT_INT, &o.n_seqs, "held-out input sequences"},
      {"batch", OPT_INT, &o.batch, "sequences per forward pass"},
      {"seed", OPT_U64, &o.seed, "input stream seed"},
      {"min-map", OPT_DOUBLE, &o.min_map, "leave out rows whose posterior gives their hypothesis less than this"},
      {"threshold", OPT_DOUBLE, &o.threshold, "the detector fires when the silhouette exceeds this"},
      {"subsamples", OPT_INT, &o.subsamples, "subsamples for the firing rates"},
      {"subsample-rows", OPT_INT, &o.subsample_rows, "rows per subsample"},
      threads_option(&threads, NULL),
  };
  cli_spec spec = {"dynamics detect", "CHECKPOINT|RUN_DIR|MODEL_DIR [options]",
                   "The geometry detector of seed 000 with its controls (see bwt dynamics --help).", opts,
                   (int)(sizeof opts / sizeof *opts), 1, 1};
  const char *pos[1];
  int npos = 0, rc = cli_parse(&spec, argc, argv, pos, &npos);
  if (rc) return rc == 1 ? 0 : rc;
  if (threads < 0) {
    fprintf(stderr, "bwt dynamics detect: --threads must be >= 0\n");
    return 2;
  }
  if (is_lm_dir(pos[0])) {
    if (!*prompts || lo.buckets < 0 || o.subsamples < 1 || o.subsample_rows < 2) {
      fprintf(stderr, "bwt dynamics detect: a language model needs --prompts FILE.jsonl, --buckets >= 0, --subsamples >= 1,"
                      " --subsample-rows >= 2\n");
      return 2;
    }
    lo.det = o;
    return detect_lm(pos[0], prompts, &lo, out, no_figures, threads);
  }
  if (*prompts) {
    fprintf(stderr, "bwt dynamics detect: --prompts is for a language model directory, %s is a bwt run or checkpoint\n", pos[0]);
    return 2;
  }
  bwt_run run;
  if (bwt_run_open(&run, pos[0], threads, 0) != BWT_STATUS_OK) return cli_error("dynamics detect");
  char outdir[4096 + 16];
  output_dir(outdir, sizeof outdir, out, run.dir, "dynamics");
  bwt_detect_result r[BWT_DETECT_N];
  memset(r, 0, sizeof r);
  bwt_status s = bwt_detect(run.model, run.task, &o, r);
  if (s == BWT_STATUS_OK) {
    printf("%s, step %d: block %d, %d sequences; fires when the silhouette exceeds %g (%d subsamples of %d rows)\n",
           run.path, run.step, o.layer < 0 ? run.model->cfg.n_layers - 1 : o.layer, o.n_seqs, o.threshold, o.subsamples,
           o.subsample_rows);
    printf("%16s %7s %9s %11s %22s %10s %10s %8s %22s\n", "inputs", "rows", "clusters", "silhouette", "r(confidence, -error)",
           "fire rate", "curvature", "null", "r(-curvature, -error)");
    for (int k = 0; k < BWT_DETECT_N; k++)
      printf("%16s %7d %9d %11.4f %22.4f %9.1f%% %10.3f %8.3f %22.4f\n", bwt_detect_input_names[k], r[k].rows, r[k].clusters,
             r[k].silhouette, r[k].confidence_r, 100 * r[k].fire_rate, r[k].curvature, r[k].curvature_null,
             r[k].curvature_confidence_r);
    printf("false-positive rate on the controls: %.1f%% (random tokens), %.1f%% (shuffled labels)\n",
           100 * r[BWT_DETECT_RANDOM_TOKENS].fire_rate, 100 * r[BWT_DETECT_SHUFFLED_LABELS].fire_rate);
    s = write_output(outdir, "detect.json", bwt_detect_to_json(&o, r));
    if (s == BWT_STATUS_OK && !no_figures) s = bwt_detect_figure(&o, r, outdir);
    if (s == BWT_STATUS_OK) printf("wrote %s/detect.json%s\n", outdir, no_figures ? "" : " and detector.{png,svg}");
  }
  rc = s == BWT_STATUS_OK ? 0 : cli_error("dynamics detect");
  for (int k = 0; k < BWT_DETECT_N; k++) bwt_detect_result_free(&r[k]);
  bwt_run_close(&run);
  return rc;
}

static const struct {
  const char *name;
  int (*run)(int argc, char **argv);
} experiment_table[] = {
    {"verify", verify}, {"em", em}, {"falsify", falsify}, {"timescales", timescales}, {"detect", detect},
};

int cmd_dynamics(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
    fprintf(argc < 2 ? stderr : stdout,
            "usage: bwt dynamics EXPERIMENT [options]   (bwt dynamics EXPERIMENT --help for its options)\n\n"
            "The gradient dynamics of attention (Paper II, SPEC.md section 6).\n\n%s",
            experiments);
    return argc < 2 ? 2 : 0;
  }
  for (size_t i = 0; i < sizeof experiment_table / sizeof *experiment_table; i++)
    if (strcmp(argv[1], experiment_table[i].name) == 0) return experiment_table[i].run(argc - 1, argv + 1);
  fprintf(stderr, "bwt dynamics: unknown experiment '%s' (see bwt dynamics --help)\n", argv[1]);
  return 2;
}
