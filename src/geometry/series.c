/* Frame–precision dissociation over a run's snapshots (see bwt_geometry_series in geometry.h). */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/capture.h"
#include "bwt/checkpoint.h"
#include "bwt/eval.h"
#include "bwt/fileio.h"
#include "bwt/lab/geometry.h"
#include "bwt/lab/plot.h"
#include "bwt/lab/stats.h"

const char *const bwt_series_names[BWT_SERIES_N] = {"attention_similarity", "key_subspace_overlap",
                                                    "value_similarity", "entropy_mae_bits", "kl_bits",
                                                    "manifold_alignment"};

void bwt_series_free(bwt_series *s) {
  free(s->step);
  for (int i = 0; i < BWT_SERIES_N; i++) free(s->value[i]);
  memset(s, 0, sizeof *s);
}

static int by_step(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

/* The snapshot steps under run_dir/snapshots, ascending (caller frees). */
static bwt_status list_snapshots(const char *run_dir, int **steps, int *n) {
  char path[4096];
  snprintf(path, sizeof path, "%s/snapshots", run_dir);
  *steps = NULL, *n = 0;
  DIR *d = opendir(path);
  if (!d) return bwt_fail(BWT_STATUS_IO, "%s has no snapshots/ (train with --snapshots N)", run_dir);
  int cap = 0;
  bwt_status s = BWT_STATUS_OK;
  for (struct dirent *e; s == BWT_STATUS_OK && (e = readdir(d));) {
    int step;
    char tail[32];
    if (sscanf(e->d_name, "step_%d.safetens%31s", &step, tail) != 2 || strcmp(tail, "ors") != 0) continue;
    if (*n == cap) {
      int *grown = bwt_realloc(*steps, sizeof(int) * (cap = cap ? 2 * cap : 16), "snapshot steps");
      if (!grown) s = bwt_fail(BWT_STATUS_NOMEM, "out of memory listing snapshots");
      else *steps = grown;
    }
    if (s == BWT_STATUS_OK) (*steps)[(*n)++] = step;
  }
  closedir(d);
  if (s == BWT_STATUS_OK && *n == 0) s = bwt_fail(BWT_STATUS_IO, "%s/snapshots holds no step_*.safetensors", run_dir);
  if (s == BWT_STATUS_OK) qsort(*steps, *n, sizeof(int), by_step);
  return s;
}

/* What one checkpoint contributes: its attention weights on the fixed batch and its key-frame bases
 * (per layer and head, r_lh rows of hs), plus the precision measures. */
typedef struct {
  bwt_capture cap;
  double **basis; /* (L·NH) each (r, hs), NULL without hypotheses */
  double mae, kl, align;
} measured;

static void measured_free(measured *m, int heads) {
  bwt_capture_free(&m->cap);
  for (int i = 0; m->basis && i < heads; i++) free(m->basis[i]);
  free(m->basis);
  memset(m, 0, sizeof *m);
}

/* Measures model; rank (L·NH) gives each head's basis size (NULL: the model is the final one and its
 * own 90% dimensions are written into rank). */
static bwt_status measure(bwt_model *model, const bwt_task *task, const bwt_batch *fixed,
                          const bwt_geometry_options *opt, int *rank, int final, measured *out) {
  memset(out, 0, sizeof *out);
  bwt_geometry g;
  BWT_TRY(bwt_geometry_compute(model, NULL, task, opt, &g));
  out->mae = g.entropy_mae, out->kl = g.kl_bits, out->align = fabs(g.final.spearman);
  int L = g.L, NH = g.NH, C = g.C, hs = C / NH, lo = g.hyp_lo, n_hyp = g.n_hyp;
  bwt_geometry_free(&g);
  BWT_TRY(bwt_model_capture(model, fixed, NULL, BWT_CAPTURE_ATTENTION | BWT_CAPTURE_VALUES, &out->cap, NULL));
  if (n_hyp < 2) return BWT_STATUS_OK;
  out->basis = bwt_calloc((size_t)L * NH, sizeof(double *), "key bases");
  float *keys = bwt_calloc((size_t)n_hyp * C, sizeof(float), "key bases");
  bwt_status s = out->basis && keys ? BWT_STATUS_OK : BWT_STATUS_NOMEM;
  for (int l = 0; s == BWT_STATUS_OK && l < L; l++) {
    s = bwt_geometry_keys(model, l, lo, n_hyp, keys);
    for (int h = 0; s == BWT_STATUS_OK && h < NH; h++) {
      bwt_pca p;
      s = bwt_pca_compute(&p, keys + h * hs, n_hyp, hs, C, final ? hs : rank[l * NH + h]);
      if (s != BWT_STATUS_OK) break;
      if (final) rank[l * NH + h] = p.dims90 < p.k ? p.dims90 : p.k;
      int r = rank[l * NH + h] < p.k ? rank[l * NH + h] : p.k;
      out->basis[l * NH + h] = bwt_calloc((size_t)r * hs, sizeof(double), "key bases");
      if (!out->basis[l * NH + h]) s = BWT_STATUS_NOMEM;
      else memcpy(out->basis[l * NH + h], p.components, sizeof(double) * r * hs);
      bwt_pca_free(&p);
    }
  }
  free(keys);
  return s;
}

/* Mean over the L layers of the cosine between two captured arrays x and f, per elements a layer. */
static double layer_similarity(const float *x, const float *f, int L, size_t per) {
  double sum = 0;
  for (int l = 0; l < L; l++) {
    double ab = 0, aa = 0, bb = 0;
    for (size_t i = l * per; i < (l + 1) * per; i++) {
      if (isnan(x[i]) || isnan(f[i])) continue; /* a bypassed block */
      ab += (double)x[i] * f[i], aa += (double)x[i] * x[i], bb += (double)f[i] * f[i];
    }
    sum += aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : 0;
  }
  return sum / L;
}

/* Mean over heads of ‖U_tᵀU_f‖²_F / r (both bases orthonormal, r rows of hs). */
static double key_overlap(const measured *t, const measured *f, const int *rank, int heads, int hs) {
  if (!t->basis || !f->basis) return NAN;
  double sum = 0;
  for (int i = 0; i < heads; i++) {
    int r = rank[i];
    double o = 0;
    for (int a = 0; a < r; a++)
      for (int b = 0; b < r; b++) {
        double d = 0;
        for (int c = 0; c < hs; c++) d += t->basis[i][a * hs + c] * f->basis[i][b * hs + c];
        o += d * d;
      }
    sum += o / r;
  }
  return sum / heads;
}

static bwt_status load(const char *path, bwt_run_config *cfg, bwt_model **model, int *step) {
  return bwt_checkpoint_load(path, cfg, model, NULL, NULL, step);
}

bwt_status bwt_geometry_series(const char *run_dir, const bwt_geometry_options *opt, bwt_series *out,
                               void (*progress)(void *ctx, int i, int n, int step), void *ctx) {
  memset(out, 0, sizeof *out);
  int *steps = NULL, n = 0;
  BWT_TRY(list_snapshots(run_dir, &steps, &n));
  char path[4096];
  bwt_run_config cfg;
  bwt_model *model = NULL;
  bwt_task *task = NULL;
  bwt_batch fixed;
  memset(&fixed, 0, sizeof fixed);
  measured fin, cur;
  memset(&fin, 0, sizeof fin);
  memset(&cur, 0, sizeof cur);
  int final_step = 0, *rank = NULL, heads = 0, hs = 0;
  snprintf(path, sizeof path, "%s/checkpoint.safetensors", run_dir);
  bwt_status s = load(path, &cfg, &model, &final_step);
  if (s == BWT_STATUS_OK) s = bwt_task_create(&task, &cfg.task);
  if (s == BWT_STATUS_OK) s = bwt_batch_alloc(&fixed, task, opt->batch);
  if (s == BWT_STATUS_OK) s = bwt_eval_sample(task, opt->seed, 0, &fixed);
  if (s == BWT_STATUS_OK) {
    heads = cfg.model.n_layers * cfg.model.n_heads, hs = cfg.model.d_model / cfg.model.n_heads;
    rank = bwt_calloc(heads, sizeof(int), "series");
    if (!rank) s = BWT_STATUS_NOMEM;
  }
  if (s == BWT_STATUS_OK) s = measure(model, task, &fixed, opt, rank, 1, &fin);
  bwt_model_free(model);
  model = NULL;
  /* The final checkpoint closes the series unless the last snapshot is the same step. */
  int total = n + (steps[n - 1] != final_step);
  out->n = total;
  out->step = bwt_calloc(total, sizeof(int), "series");
  for (int k = 0; k < BWT_SERIES_N; k++) out->value[k] = bwt_calloc(total, sizeof(double), "series");
  for (int k = 0; s == BWT_STATUS_OK && k < BWT_SERIES_N; k++)
    if (!out->value[k] || !out->step) s = BWT_STATUS_NOMEM;
  for (int i = 0; s == BWT_STATUS_OK && i < total; i++) {
    const measured *m = &fin;
    int step = final_step;
    if (i < n) {
      snprintf(path, sizeof path, "%s/snapshots/step_%07d.safetensors", run_dir, steps[i]);
      bwt_run_config c2;
      s = load(path, &c2, &model, &step);
      if (s == BWT_STATUS_OK && (c2.model.n_layers != cfg.model.n_layers || c2.model.d_model != cfg.model.d_model ||
                                 c2.model.n_heads != cfg.model.n_heads || c2.model.vocab != cfg.model.vocab))
        s = bwt_fail(BWT_STATUS_FORMAT, "%s: a different model from the run's checkpoint", path);
      if (s == BWT_STATUS_OK) s = measure(model, task, &fixed, opt, rank, 0, &cur);
      bwt_model_free(model);
      model = NULL;
      m = &cur;
    }
    if (s != BWT_STATUS_OK) break;
    if (progress) progress(ctx, i + 1, total, step);
    out->step[i] = step;
    const bwt_capture *c = &m->cap;
    out->value[BWT_SERIES_ATTN][i] = layer_similarity(c->attention, fin.cap.attention, c->L,
                                                      (size_t)c->B * c->NH * c->n_sup * c->T);
    out->value[BWT_SERIES_VALUES][i] = layer_similarity(c->values, fin.cap.values, c->L, (size_t)c->B * c->T * c->C);
    out->value[BWT_SERIES_KEYS][i] = key_overlap(m, &fin, rank, heads, hs);
    out->value[BWT_SERIES_MAE][i] = m->mae;
    out->value[BWT_SERIES_KL][i] = m->kl;
    out->value[BWT_SERIES_MANIFOLD][i] = m->align;
    if (m == &cur) measured_free(&cur, heads);
  }
  for (int k = 0; s == BWT_STATUS_OK && k < BWT_SERIES_N; k++) {
    const double *v = out->value[k];
    double first = v[0], last = v[total - 1];
    out->settle_step[k] = -1;
    if (!isfinite(first) || !isfinite(last)) continue;
    for (int i = total - 1; i >= 0; i--) { /* the earliest step from which progress stays >= 0.9 */
      double progress_i = last != first ? (v[i] - first) / (last - first) : 1;
      if (!(progress_i >= 0.9)) break;
      out->settle_step[k] = out->step[i];
    }
  }
  measured_free(&cur, heads);
  measured_free(&fin, heads);
  free(rank);
  free(steps);
  bwt_batch_free(&fixed);
  bwt_task_free(task);
  if (s != BWT_STATUS_OK) bwt_series_free(out);
  return s;
}

char *bwt_series_to_json(const bwt_series *s) {
  cJSON *o = cJSON_CreateObject();
  if (!o) return NULL;
  cJSON *steps = cJSON_AddArrayToObject(o, "steps");
  for (int i = 0; i < s->n; i++) cJSON_AddItemToArray(steps, cJSON_CreateNumber(s->step[i]));
  cJSON *settle = cJSON_AddObjectToObject(o, "step_at_90pct");
  for (int k = 0; k < BWT_SERIES_N; k++) {
    cJSON *a = cJSON_AddArrayToObject(o, bwt_series_names[k]);
    for (int i = 0; i < s->n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(s->value[k][i]));
    if (s->settle_step[k] >= 0) cJSON_AddNumberToObject(settle, bwt_series_names[k], s->settle_step[k]);
    else cJSON_AddNullToObject(settle, bwt_series_names[k]);
  }
  char *text = cJSON_Print(o);
  cJSON_Delete(o);
  return text;
}

bwt_status bwt_series_figure(const bwt_series *s, const char *dir) {
  static const char *const labels[BWT_SERIES_N] = {"frame: attention similarity", "frame: key subspace overlap",
                                                   "values: similarity", "precision: entropy MAE",
                                                   "precision: KL", "precision: manifold alignment"};
  BWT_TRY(bwt_mkdir_p(dir));
  double *buf = bwt_calloc((size_t)(BWT_SERIES_N + 1) * s->n, sizeof(double), "series figure");
  if (!buf) return BWT_STATUS_NOMEM;
  bwt_plot_series lines[BWT_SERIES_N];
  int n_lines = 0;
  double *x = buf;
  for (int i = 0; i < s->n; i++) x[i] = s->step[i] > 0 ? s->step[i] : 1;
  for (int k = 0; k < BWT_SERIES_N; k++) {
    const double *v = s->value[k];
    double first = v[0], last = v[s->n - 1], *y = buf + (size_t)(k + 1) * s->n;
    if (!isfinite(first) || !isfinite(last)) continue;
    for (int i = 0; i < s->n; i++) y[i] = last != first ? (v[i] - first) / (last - first) : 1;
    lines[n_lines++] = (bwt_plot_series){labels[k], x, y, NULL, NULL, s->n, 0, 0};
  }
  char path[4096];
  snprintf(path, sizeof path, "%s/dissociation", dir);
  bwt_plot_axes ax = {"Frame vs precision: progress towards the final value (0.9 = settled)",
                      "training step", "progress (0 = first snapshot, 1 = final)", 1, 0};
  bwt_status st = bwt_plot_lines(path, &ax, lines, n_lines);
  free(buf);
  return st;
}
