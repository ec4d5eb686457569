/* The geometry detector with its controls (bwt/lab/detector.h). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/lab/detector.h"
#include "bwt/lab/curvature.h"
#include "bwt/fileio.h"
#include "bwt/lab/plot.h"
#include "bwt/lab/dynamics.h"
#include "bwt/eval.h"
#include "bwt/kernels.h"
#include "bwt/rng.h"
#include "bwt/lab/stats.h"

const char *const bwt_detect_input_names[BWT_DETECT_N] = {"real", "random_tokens", "shuffled_labels"};

void bwt_detector_options_default(bwt_detector_options *o) {
  *o = (bwt_detector_options){-1, 256, 32, 0x5eed, 0.0, 0.3, 200, 100};
}

double bwt_silhouette(const float *x, const int *labels, int n, int d, double *per_point) {
  int K = 0;
  for (int i = 0; i < n; i++) K = labels[i] + 1 > K ? labels[i] + 1 : K;
  int *count = bwt_calloc(K > 0 ? K : 1, sizeof(int), NULL), clusters = 0;
  if (!count) return NAN;
  for (int i = 0; i < n; i++) clusters += count[labels[i]]++ == 0;
  double total = 0;
  int ok = clusters >= 2;
#pragma omp parallel for reduction(+ : total) schedule(dynamic, 16) if (ok && n > 64)
  for (int i = 0; i < (ok ? n : 0); i++) {
    double *sum = bwt_calloc(K, sizeof(double), NULL), s = 0;
    if (!sum) continue; /* an out-of-memory point counts 0 */
    for (int j = 0; j < n; j++) {
      if (j == i) continue;
      double dot = 0;
      for (int k = 0; k < d; k++) dot += (double)x[(size_t)i * d + k] * x[(size_t)j * d + k];
      sum[labels[j]] += 1 - dot; /* cosine distance of unit rows */
    }
    int own = labels[i];
    if (count[own] > 1) {
      double a = sum[own] / (count[own] - 1), b = INFINITY;
      for (int c = 0; c < K; c++)
        if (c != own && count[c] > 0) b = fmin(b, sum[c] / count[c]);
      double m = fmax(a, b);
      s = m > 0 ? (b - a) / m : 0;
    }
    if (per_point) per_point[i] = s;
    total += s;
    free(sum);
  }
  free(count);
  return ok ? total / n : NAN;
}

/* The labelled rows of one input kind: unit features (rows, F), labels, and |H(p) − H(q)|. */
typedef struct {
  int rows, cap, F;
  float *feat;
  int *label;
  double *err, *bayes_entropy; /* |H(p) − H(q)| and H(q) per row (NAN for random tokens) */
} row_set;

static void rows_free(row_set *r) {
  free(r->feat), free(r->label), free(r->err), free(r->bayes_entropy);
  memset(r, 0, sizeof *r);
}

/* One batch: forward, cross-entropy gradient against targets, traced backward of the block, rows. */
static bwt_status add_batch(bwt_model *m, bwt_batch *b, const bwt_task *task, bwt_detect_input kind,
                            const bwt_detector_options *o, float *probs, float *dl, int32_t *targets, float *adv,
                            row_set *r) {
  int n = b->n_sup, K = task->n_classes, V = task->vocab, NH = m->cfg.n_heads, T = b->T;
  size_t M = (size_t)b->B * n;
  const float *logits;
  BWT_TRY(bwt_model_forward(m, b, &logits));
  bwt_softmax_forward(probs, logits, (int)M, K);
  for (size_t i = 0; i < M; i++) { /* random tokens have no posterior: the model's own MAP stands in */
    int best = 0;
    for (int k = 1; k < K; k++) best = probs[i * K + k] > probs[i * K + best] ? k : best;
    targets[i] = kind == BWT_DETECT_RANDOM_TOKENS ? best : b->target[i];
  }
  memset(dl, 0, sizeof(float) * M * K);
  bwt_xent_backward(dl, probs, targets, NULL, 1.0f / (float)M, (int)M, K);
  bwt_attention_trace t;
  bwt_status s = bwt_model_backward_traced(m, b, dl, o->layer, &t);
  for (int bb = 0; s == BWT_STATUS_OK && bb < b->B; bb++) {
    float *f0 = r->feat + (size_t)r->rows * r->F;
    int kept = 0, idx[4096];
    for (int j = 0; j < n && j < 4096; j++) { /* which rows of this sequence are labelled */
      size_t i = (size_t)bb * n + j;
      int label = targets[i];
      double q = kind == BWT_DETECT_RANDOM_TOKENS ? probs[i * K + label] : b->posterior[i * K + label];
      if (q < o->min_map || r->rows + kept >= r->cap) continue;
      idx[kept] = j;
      r->label[r->rows + kept] = label;
      int random = kind == BWT_DETECT_RANDOM_TOKENS;
      double hq = random ? NAN : bwt_entropy_bits(b->posterior + i * K, K);
      r->bayes_entropy[r->rows + kept] = hq;
      r->err[r->rows + kept] = random ? NAN : fabs(bwt_entropy_bits_float(probs + i * K, K) - hq);
      kept++;
    }
    memset(f0, 0, sizeof(float) * (size_t)kept * r->F);
    for (int h = 0; h < NH && kept; h++) {
      bwt_dynamics_head(&t, bb, h, NULL, adv, NULL);
      for (int k = 0; k < kept; k++) {
        int j = idx[k], pos = b->sup_pos[bb * n + j], qrow = t.qpos ? j : pos;
        float *f = f0 + (size_t)k * r->F + (size_t)h * V;
        for (int s2 = 0; s2 <= pos; s2++) f[b->tokens[(size_t)bb * T + s2]] += adv[(size_t)qrow * T + s2];
      }
    }
    for (int k = 0; k < kept; k++) { /* unit rows: cosine geometry */
      float *f = f0 + (size_t)k * r->F;
      double nn = 0;
      for (int i = 0; i < r->F; i++) nn += (double)f[i] * f[i];
      if (nn > 0)
        for (int i = 0; i < r->F; i++) f[i] = (float)(f[i] / sqrt(nn));
    }
    r->rows += kept;
  }
  bwt_attention_trace_free(&t);
  bwt_model_zero_grad(m);
  return s;
}

static bwt_status collect(bwt_model *m, const bwt_task *task, bwt_detect_input kind, const bwt_detector_options *o,
                          row_set *r) {
  int B = o->batch < o->n_seqs ? o->batch : o->n_seqs, n = task->n_sup, K = task->n_classes;
  int T = task->seq_len, NH = m->cfg.n_heads, nq = o->layer + 1 == m->cfg.n_layers ? n : T;
  memset(r, 0, sizeof *r);
  r->F = NH * task->vocab, r->cap = o->n_seqs * n;
  r->feat = bwt_calloc((size_t)r->cap * r->F, sizeof(float), "detector");
  r->label = bwt_calloc(r->cap, sizeof(int), "detector");
  r->err = bwt_calloc(r->cap, sizeof(double), "detector");
  r->bayes_entropy = bwt_calloc(r->cap, sizeof(double), "detector");
  size_t M = (size_t)B * n;
  float *probs = bwt_calloc(M * K, sizeof(float), "detector"), *dl = bwt_calloc(M * K, sizeof(float), "detector");
  float *adv = bwt_calloc((size_t)nq * T, sizeof(float), "detector");
  int32_t *targets = bwt_calloc(M, sizeof(int32_t), "detector");
  bwt_batch b;
  memset(&b, 0, sizeof b);
  bwt_status s = r->feat && r->label && r->err && r->bayes_entropy && probs && dl && adv && targets ? BWT_STATUS_OK : BWT_STATUS_NOMEM;
  if (s == BWT_STATUS_OK) s = bwt_batch_alloc(&b, task, B);
  /* Held-out sequences 0..n_seqs-1 (the last batch holds only those left); random tokens are drawn
   * per sequence, so neither depends on the batch size. */
  for (int done = 0; s == BWT_STATUS_OK && done < o->n_seqs; done += B) {
    int full_B = b.B;
    b.B = o->n_seqs - done < B ? o->n_seqs - done : B;
    s = bwt_eval_sample(task, o->seed, done, &b);
    for (int bb = 0; s == BWT_STATUS_OK && kind == BWT_DETECT_RANDOM_TOKENS && bb < b.B; bb++) {
      bwt_rng rng;
      bwt_rng_seed(&rng, bwt_hash2(o->seed, 0xc0de), (uint64_t)(done + bb));
      for (int k = 0; k < T; k++) b.tokens[(size_t)bb * T + k] = (int32_t)bwt_rng_below(&rng, (uint32_t)task->vocab);
    }
    if (s == BWT_STATUS_OK) s = add_batch(m, &b, task, kind, o, probs, dl, targets, adv, r);
    b.B = full_B;
  }
  if (s == BWT_STATUS_OK && kind == BWT_DETECT_SHUFFLED_LABELS) {
    bwt_rng rng;
    bwt_rng_seed(&rng, o->seed, 0x5407);
    for (int i = r->rows - 1; i > 0; i--) { /* Fisher-Yates */
      int j = (int)bwt_rng_below(&rng, (uint32_t)(i + 1)), tmp = r->label[i];
      r->label[i] = r->label[j], r->label[j] = tmp;
    }
  }
  bwt_batch_free(&b);
  free(probs), free(dl), free(adv), free(targets);
  if (s != BWT_STATUS_OK) rows_free(r);
  return s;
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

bwt_status bwt_detect_fire_rate(const float *feat, const int *label, int rows, int F, const bwt_detector_options *o,
                                uint64_t stream, bwt_detect_result *d) {
  int k = o->subsample_rows < rows ? o->subsample_rows : rows, fired = 0, done = 0;
  d->fire_rate = NAN;
  if (k < 2) return BWT_STATUS_OK;
  float *x = bwt_malloc(sizeof(float) * (size_t)k * F, NULL);
  int *lab = bwt_malloc(sizeof(int) * k, NULL), *perm = bwt_malloc(sizeof(int) * rows, NULL);
  d->sub_silhouette = bwt_calloc(o->subsamples, sizeof(double), NULL);
  if (!x || !lab || !perm || !d->sub_silhouette) {
    free(x), free(lab), free(perm);
    return bwt_fail(BWT_STATUS_NOMEM, "out of memory for the detector's subsamples");
  }
  bwt_rng rng;
  bwt_rng_seed(&rng, o->seed, stream);
  for (int t = 0; t < o->subsamples; t++) {
    for (int i = 0; i < rows; i++) perm[i] = i;
    for (int i = 0; i < k; i++) { /* a partial Fisher-Yates: the first k of a random order */
      int j = i + (int)bwt_rng_below(&rng, (uint32_t)(rows - i)), tmp = perm[i];
      perm[i] = perm[j], perm[j] = tmp;
      memcpy(x + (size_t)i * F, feat + (size_t)perm[i] * F, sizeof(float) * F);
      lab[i] = label[perm[i]];
    }
    double s = bwt_silhouette(x, lab, k, F, NULL);
    if (isnan(s)) continue; /* one cluster: nothing to decide */
    fired += s > o->threshold;
    d->sub_silhouette[done++] = s;
  }
  free(x), free(lab), free(perm);
  d->n_sub = done;
  qsort(d->sub_silhouette, done, sizeof(double), by_value);
  d->fire_rate = done ? (double)fired / done : NAN;
  return BWT_STATUS_OK;
}

void bwt_detect_result_free(bwt_detect_result *r) {
  free(r->sub_silhouette);
  memset(r, 0, sizeof *r);
}

/* The curvature of the rows' features along the posterior entropy, and Pearson(−local turning,
 * accuracy) with accuracy (rows) given; local (rows) is scratch. */
static bwt_status curvature_confidence(const row_set *r, const double *accuracy, double *local, bwt_detect_result *d) {
  if (r->rows < 2) return BWT_STATUS_OK;
  bwt_curvature cv;
  BWT_TRY(bwt_curvature_compute(&cv, r->feat, r->bayes_entropy, r->rows, r->F, r->F, BWT_CURVATURE_BINS,
                                BWT_CURVATURE_SHUFFLES, 0xc0de));
  d->curvature = cv.curvature, d->curvature_null = cv.null_median;
  for (int i = 0; i < r->rows; i++) local[i] = -cv.turning[cv.point_of_row[i]];
  d->curvature_confidence_r = bwt_pearson(local, accuracy, r->rows);
  bwt_curvature_free(&cv);
  return BWT_STATUS_OK;
}

bwt_status bwt_detect(bwt_model *m, const bwt_task *task, const bwt_detector_options *opt, bwt_detect_result *out) {
  bwt_detector_options o = *opt;
  if (!bwt_model_has(m, BWT_CAP_ATTENTION | BWT_CAP_CAPTURE | BWT_CAP_TRACE) || task->vocab == 0)
    return bwt_fail(BWT_STATUS_ARG, "the detector needs a transformer on a token task");
  if (o.layer < 0) o.layer = m->cfg.n_layers - 1;
  if (o.layer >= m->cfg.n_layers || o.n_seqs < 1 || o.batch < 1 || o.subsamples < 1 || o.subsample_rows < 2)
    return bwt_fail(BWT_STATUS_ARG, "detector: block %d, %d sequences, batch %d, %d subsamples of %d rows are not possible",
                    o.layer, o.n_seqs, o.batch, o.subsamples, o.subsample_rows);
  BWT_TRY(bwt_model_check_task(m, task));
  memset(out, 0, sizeof *out * BWT_DETECT_N);
  for (int kind = 0; kind < BWT_DETECT_N; kind++) {
    row_set r;
    BWT_TRY(collect(m, task, (bwt_detect_input)kind, &o, &r));
    bwt_detect_result *d = &out[kind];
    *d = (bwt_detect_result){.rows = r.rows, .silhouette = NAN, .confidence_r = NAN, .fire_rate = NAN, .curvature = NAN,
                              .curvature_null = NAN, .curvature_confidence_r = NAN};
    double *per = bwt_calloc(r.rows ? r.rows : 1, sizeof(double), "detector");
    double *acc = bwt_calloc(r.rows ? r.rows : 1, sizeof(double), "detector");
    if (!per || !acc) {
      free(per), free(acc), rows_free(&r);
      return BWT_STATUS_NOMEM;
    }
    int seen[4096] = {0};
    for (int i = 0; i < r.rows; i++)
      if (r.label[i] < 4096 && !seen[r.label[i]]++) d->clusters++;
    d->silhouette = r.rows >= 2 ? bwt_silhouette(r.feat, r.label, r.rows, r.F, per) : NAN;
    if (kind != BWT_DETECT_RANDOM_TOKENS && r.rows >= 2) {
      for (int i = 0; i < r.rows; i++) acc[i] = -r.err[i];
      d->confidence_r = bwt_pearson(per, acc, r.rows);
    }
    bwt_status st = kind == BWT_DETECT_RANDOM_TOKENS ? BWT_STATUS_OK : curvature_confidence(&r, acc, per, d);
    if (st == BWT_STATUS_OK) st = bwt_detect_fire_rate(r.feat, r.label, r.rows, r.F, &o, 0xf12e + (uint64_t)kind, d);
    free(per), free(acc);
    rows_free(&r);
    BWT_TRY(st);
  }
  return BWT_STATUS_OK;
}

char *bwt_detect_to_json(const bwt_detector_options *o, const bwt_detect_result *r) {
  cJSON *root = cJSON_CreateObject();
  if (!root) return NULL;
  cJSON *opt = cJSON_AddObjectToObject(root, "options");
  cJSON_AddNumberToObject(opt, "layer", o->layer);
  cJSON_AddNumberToObject(opt, "seqs", o->n_seqs);
  cJSON_AddNumberToObject(opt, "min_map", o->min_map);
  cJSON_AddNumberToObject(opt, "threshold", o->threshold);
  cJSON_AddNumberToObject(opt, "subsamples", o->subsamples);
  cJSON_AddNumberToObject(opt, "subsample_rows", o->subsample_rows);
  for (int k = 0; k < BWT_DETECT_N; k++) {
    cJSON *d = cJSON_AddObjectToObject(root, bwt_detect_input_names[k]);
    cJSON_AddNumberToObject(d, "rows", r[k].rows);
    cJSON_AddNumberToObject(d, "clusters", r[k].clusters);
    cJSON_AddNumberToObject(d, "silhouette", r[k].silhouette);
    cJSON_AddNumberToObject(d, "confidence_accuracy_r", r[k].confidence_r);
    cJSON_AddNumberToObject(d, "curvature", r[k].curvature);
    cJSON_AddNumberToObject(d, "curvature_null_median", r[k].curvature_null);
    cJSON_AddNumberToObject(d, "curvature_confidence_accuracy_r", r[k].curvature_confidence_r);
    cJSON_AddNumberToObject(d, "fire_rate", r[k].fire_rate);
    cJSON_AddItemToObject(d, "subsample_silhouettes", cJSON_CreateDoubleArray(r[k].sub_silhouette, r[k].n_sub));
  }
  char *text = cJSON_Print(root);
  cJSON_Delete(root);
  return text;
}

bwt_status bwt_detect_figure(const bwt_detector_options *o, const bwt_detect_result *r, const char *dir) {
  BWT_TRY(bwt_mkdir_p(dir));
  int most = 2;
  for (int k = 0; k < BWT_DETECT_N; k++) most = r[k].n_sub > most ? r[k].n_sub : most;
  double *buf = bwt_calloc((size_t)(BWT_DETECT_N + 2) * most, sizeof(double), "detector figure");
  if (!buf) return BWT_STATUS_NOMEM;
  bwt_plot_series s[BWT_DETECT_N + 1];
  int n = 0;
  static const char *const labels[BWT_DETECT_N] = {"real task", "control: random tokens", "control: shuffled labels"};
  for (int k = 0; k < BWT_DETECT_N; k++) {
    if (r[k].n_sub < 1) continue;
    double *y = buf + (size_t)k * most;
    for (int i = 0; i < r[k].n_sub; i++) y[i] = (i + 1.0) / r[k].n_sub; /* the empirical CDF */
    s[n++] = (bwt_plot_series){labels[k], r[k].sub_silhouette, y, NULL, NULL, r[k].n_sub, 0, k + 1};
  }
  double *tx = buf + (size_t)BWT_DETECT_N * most, *ty = tx + most;
  tx[0] = tx[1] = o->threshold, ty[0] = 0, ty[1] = 1;
  s[n++] = (bwt_plot_series){"threshold (fires to the right)", tx, ty, NULL, NULL, 2, 0, 4};
  char path[4096];
  snprintf(path, sizeof path, "%s/detector", dir);
  bwt_plot_axes ax = {"Detector: silhouette of advantage features by hypothesis, per subsample",
                      "silhouette (cosine distance)", "share of subsamples at or below", 0, 0};
  bwt_status st = bwt_plot_lines(path, &ax, s, n);
  free(buf);
  return st;
}
