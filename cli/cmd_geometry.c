/* bwt geometry: the mechanism view of a transformer checkpoint (SPEC.md §5), or with --series the
 * frame–precision dissociation over a run's snapshots. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/checkpoint.h"
#include "bwt/lab/geometry.h"
#include "commands.h"
#include "options.h"
#include "progress.h"

/* One row of the value-manifold table: where ("block", "final" or "state") and layer (−1: none). */
static void manifold_row(const char *where, int layer, const bwt_manifold_stats *m, double probe_r2) {
  char label[40];
  if (layer >= 0) snprintf(label, sizeof label, "%s %d", where, layer);
  else snprintf(label, sizeof label, "%s", where);
  printf("%8s %7.2f%% %7.2f%% %6d %8.2f %9.4f %9.4f %9.4f %9.3f %9.3f\n", label, 100 * m->pc1, 100 * m->pc12, m->dims90,
         m->participation_ratio, m->pearson, m->spearman, probe_r2, m->curvature, m->curvature_null);
}

static void print_geometry(const bwt_geometry *g) {
  printf("rows %ld (supervised positions of held-out sequences); entropy MAE %.5f bits, KL %.5f bits\n",
         g->n_rows, g->entropy_mae, g->kl_bits);
  if (g->key_orth) {
    printf("\nkey frames: mean |cos| between the keys of hypothesis tokens %d..%d (Gaussian expectation %.4f)\n",
           g->hyp_lo, g->hyp_lo + g->n_hyp - 1, g->gaussian_cos);
    printf("%6s %6s %10s %10s\n", "layer", "head", "trained", "init");
    for (int l = 0; l < g->L; l++)
      for (int h = 0; h < g->NH; h++)
        printf("%6d %6d %10.4f %10.4f\n", l, h, g->key_orth[l * g->NH + h],
               g->key_orth_init ? g->key_orth_init[l * g->NH + h] : NAN);
  } else {
    printf("\nkey frames: skipped (%s)\n", g->attn_entropy ? "the task has no hypothesis tokens" : "the model has no attention");
  }
  if (g->attn_entropy) {
    printf("\nattention entropy at supervised positions, bits (uniform over the prefix: %.3f)\n", g->uniform_entropy);
    for (int l = 0; l < g->L; l++) {
      printf("  layer %d:", l);
      for (int h = 0; h < g->NH; h++) printf(" %.3f", g->attn_entropy[l * g->NH + h]);
      printf("\n");
    }
    printf("  reduction first -> last layer: %.1f%%\n", 100 * g->attn_reduction);
  }
  printf("\nvalue manifold (PCA of the final norm's output; correlations of PC1 with the posterior entropy;\n"
         "curvature of the entropy-ordered curve in half-turns beside its shuffled-entropy null, docs/curvature.md)\n");
  printf("%8s %8s %8s %6s %8s %9s %9s %9s %9s %9s\n", "where", "PC1", "PC1+2", "dim90", "PR", "Pearson", "Spearman",
         "probe R2", "curvature", "null");
  printf("%8s %8s %8s %6s %8s %9s %9s %9.4f\n", "embed", "", "", "", "", "", "", g->probe_r2[0]);
  for (int l = 0; l < g->L; l++) manifold_row("block", l, &g->layer[l], g->probe_r2[l + 1]);
  manifold_row("final", -1, &g->final, g->probe_r2[g->L + 1]);
  for (int l = 0; g->state && l < g->L; l++) manifold_row("state", l, &g->state[l], g->state_probe_r2[l]);
}

static void series_progress(void *ctx, int i, int n, int step) {
  char detail[32];
  snprintf(detail, sizeof detail, " (step %d)", step);
  progress_count("geometry: checkpoint", i, n, detail);
}

static int run_series(const char *run_dir, const char *out, const bwt_geometry_options *o, int figures) {
  bwt_series s;
  if (bwt_geometry_series(run_dir, o, &s, series_progress, NULL) != BWT_STATUS_OK) return cli_error("geometry");
  printf("%8s", "step");
  for (int k = 0; k < BWT_SERIES_N; k++) printf(" %22s", bwt_series_names[k]);
  printf("\n");
  for (int i = 0; i < s.n; i++) {
    printf("%8d", s.step[i]);
    for (int k = 0; k < BWT_SERIES_N; k++) printf(" %22.5f", s.value[k][i]);
    printf("\n");
  }
  printf("%8s", "90% at");
  for (int k = 0; k < BWT_SERIES_N; k++) printf(" %22d", s.settle_step[k]);
  printf("\n");
  bwt_status st = write_output(out, "series.json", bwt_series_to_json(&s));
  if (st == BWT_STATUS_OK && figures) st = bwt_series_figure(&s, out);
  bwt_series_free(&s);
  if (st != BWT_STATUS_OK) return cli_error("geometry");
  printf("wrote %s/series.json%s\n", out, figures ? " and dissociation.{png,svg}" : "");
  return 0;
}

/* The HMM's length generalisation: per-position error at the training K and at 30 and 50 (those
 * the model's positions reach). */
static bwt_status hmm_lengths(bwt_model *model, const bwt_run_config *cfg, const bwt_geometry_options *o,
                              const char *out) {
  int lengths[3] = {cfg->task.K, 30, 50}, n = 0;
  bwt_eval_result r[3];
  memset(r, 0, sizeof r);
  bwt_status s = BWT_STATUS_OK;
  for (int i = 0; i < 3 && s == BWT_STATUS_OK; i++) {
    if (i > 0 && lengths[i] <= cfg->task.K) continue;
    bwt_task_config tc = cfg->task;
    tc.K = lengths[i];
    bwt_task *task = NULL;
    s = bwt_task_create(&task, &tc);
    if (s != BWT_STATUS_OK) break;
    if (cfg->model.positions == BWT_POS_LEARNED && task->seq_len > model->cfg.max_T) {
      bwt_task_free(task);
      continue; /* beyond the learned positions */
    }
    s = bwt_evaluate(model, task, o->seed, o->n_seqs, o->batch, &r[n]);
    bwt_task_free(task);
    if (s == BWT_STATUS_OK) lengths[n++] = tc.K;
  }
  if (s == BWT_STATUS_OK) {
    printf("\nHMM length generalisation (%s positions): entropy MAE", bwt_positions_name(cfg->model.positions));
    for (int i = 0; i < n; i++) printf("  K=%d %.5f", lengths[i], r[i].overall.entropy_mae);
    printf(" bits\n");
    s = bwt_length_figure(out, r, lengths, n);
  }
  for (int i = 0; i < 3; i++) bwt_eval_result_free(&r[i]);
  return s;
}

int cmd_geometry(int argc, char **argv) {
  bwt_geometry_options o;
  bwt_geometry_options_default(&o);
  int threads = 0, no_figures = 0, series = 0;
  char out[OPT_STRING_MAX] = "";
  cli_option opts[] = {
      {"seqs", OPT_INT, &o.n_seqs, "held-out sequences measured"},
      {"batch", OPT_INT, &o.batch, "sequences per forward pass"},
      {"seed", OPT_U64, &o.seed, "held-out stream seed"},
      {"ridge", OPT_DOUBLE, &o.ridge, "ridge penalty of the linear probes (relative to the mean feature variance)"},
      {"out", OPT_STRING, out, "output directory (default RUN_DIR/geometry)"},
      {"no-figures", OPT_FLAG, &no_figures, "write the JSON only"},
      {"series", OPT_FLAG, &series, "the frame-precision dissociation over RUN_DIR/snapshots (bwt train --snapshots N)"},
      threads_option(&threads, NULL),
  };
  cli_spec spec = {"geometry", "CHECKPOINT|RUN_DIR [options]",
                   "Measures how a transformer or Mamba checkpoint does Bayesian inference, against its task's exact\n"
                   "posterior on held-out sequences: key-frame orthogonality per layer and head (beside its value at\n"
                   "initialisation and the Gaussian expectation), attention entropy per layer and head, query-key\n"
                   "cosines, the value manifold (PCA of the final norm's output and of each block's output;\n"
                   "correlation of PC1 with the posterior entropy) and linear probes of the posterior entropy;\n"
                   "for Mamba (no attention, no key frames) also the manifold and probe of each layer's scan state.\n"
                   "Writes geometry.json and figures (PNG and SVG); HMM models also get their error per position\n"
                   "at K = 20, 30, 50. With --series, tracks frame and precision across the run's snapshots.",
                   opts, (int)(sizeof opts / sizeof *opts), 1, 1};
  const char *pos[1];
  int npos = 0, rc = cli_parse(&spec, argc, argv, pos, &npos);
  if (rc) return rc == 1 ? 0 : rc;
  if (o.n_seqs < 2 || o.batch < 1 || threads < 0 || !(o.ridge >= 0)) {
    fprintf(stderr, "bwt geometry: --seqs must be >= 2, --batch >= 1, --ridge >= 0, --threads >= 0\n");
    return 2;
  }
  char path[4096], dir[4096], outdir[4096 + 16];
  if (series) {
    if (bwt_set_threads(threads) != BWT_STATUS_OK) return cli_error("geometry");
    bwt_run_paths(pos[0], path, dir, sizeof path);
    output_dir(outdir, sizeof outdir, out, dir, "geometry");
    return run_series(dir, outdir, &o, !no_figures);
  }
  bwt_run run;
  if (bwt_run_open(&run, pos[0], threads, 0) != BWT_STATUS_OK) return cli_error("geometry");
  output_dir(outdir, sizeof outdir, out, run.dir, "geometry");
  const bwt_run_config *cfg = &run.cfg;
  bwt_model *init = NULL;
  bwt_geometry g;
  memset(&g, 0, sizeof g);
  char desc[128];
  /* The run's own initial weights: the model created from its seed. */
  bwt_status s = bwt_model_create(&init, &cfg->model, cfg->train.seed);
  if (s == BWT_STATUS_OK) {
    printf("%s: %s on %s, step %d\n", run.path, bwt_arch_name(cfg->model.arch),
           bwt_task_config_describe(&cfg->task, desc, sizeof desc), run.step);
    s = bwt_geometry_compute(run.model, init, run.task, &o, &g);
  }
  if (s == BWT_STATUS_OK) {
    print_geometry(&g);
    s = write_output(outdir, "geometry.json", bwt_geometry_to_json(&g));
  }
  if (s == BWT_STATUS_OK && !no_figures) s = bwt_geometry_figures(&g, outdir);
  if (s == BWT_STATUS_OK && !no_figures && strcmp(cfg->task.name, "hmm") == 0) s = hmm_lengths(run.model, cfg, &o, outdir);
  if (s == BWT_STATUS_OK) printf("\nwrote %s/geometry.json%s\n", outdir, no_figures ? "" : " and figures");
  rc = s == BWT_STATUS_OK ? 0 : cli_error("geometry");
  bwt_geometry_free(&g);
  bwt_model_free(init);
  bwt_run_close(&run);
  return rc;
}
