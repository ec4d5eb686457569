/* Paper II's identities and seed 000's detector on language models (bwt/lab/lm_dynamics.h), from
 * the real backward of bwt/lm_grad.h. The per-head formulas are bwt_dynamics_head's (routing.c),
 * fed a trace whose values are each query head's key/value head's (the GQA repeat). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/kernels.h"
#include "bwt/lab/lm_dynamics.h"
#include "bwt/lab/stats.h"
#include "bwt/rng.h"

/* max that keeps a NaN: a NaN anywhere must fail the check, not vanish from it. */
static double max_nan(double a, double b) { return a > b || isnan(a) ? a : b; }

/* The trace of layer l (one sequence, every position a query, C = NH·hs) with v repeated per query
 * head into vrep (T, NH·hs). */
static bwt_status layer_trace(const bwt_lm *lm, const bwt_lm_grad *g, int l, float *vrep, bwt_attention_trace *t) {
  const bwt_lm_config *c = bwt_lm_config_of(lm);
  int T = g->T, group = c->NH / c->NKV;
  char name[BWT_LM_NAME_MAX];
  snprintf(name, sizeof name, "blocks.%d.attn.hook_v", l);
  const bwt_lm_activation *v = bwt_lm_grad_act(g, name);
  snprintf(name, sizeof name, "blocks.%d.attn.hook_pattern", l);
  const bwt_lm_activation *a = bwt_lm_grad_act(g, name);
  if (!v || !a || !g->dz) return bwt_fail(BWT_STATUS_ARG, "layer %d has no saved values, pattern or backward", l);
  for (int s = 0; s < T; s++)
    for (int h = 0; h < c->NH; h++)
      memcpy(vrep + ((size_t)s * c->NH + h) * c->hs, v->data + ((size_t)s * c->NKV + h / group) * c->hs,
             sizeof(float) * c->hs);
  *t = (bwt_attention_trace){l, 1, T, c->NH * c->hs, c->NH, T, NULL, g->dz[l], a->data, vrep, g->dscores[l], NULL};
  return BWT_STATUS_OK;
}

bwt_status bwt_lm_dynamics_check(const bwt_lm *lm, const bwt_lm_grad *g, int l, bwt_dynamics_check *out) {
  const bwt_lm_config *c = bwt_lm_config_of(lm);
  memset(out, 0, sizeof *out);
  if (l < 0 || l >= c->L) return bwt_fail(BWT_STATUS_ARG, "layer %d is not one of the model's 0..%d", l, c->L - 1);
  int T = g->T, hs = c->hs, group = c->NH / c->NKV, KC = c->NKV * hs;
  float *vrep = bwt_calloc((size_t)T * c->NH * hs, sizeof(float), "dynamics check");
  float *adv = bwt_calloc((size_t)T * T, sizeof(float), "dynamics check");
  float *resp = bwt_calloc((size_t)T * hs, sizeof(float), "dynamics check");
  double *dv = bwt_calloc((size_t)T * KC, sizeof(double), "dynamics check");
  bwt_status s = vrep && adv && resp && dv ? BWT_STATUS_OK : BWT_STATUS_NOMEM;
  bwt_attention_trace t;
  if (s == BWT_STATUS_OK) s = layer_trace(lm, g, l, vrep, &t);
  for (int h = 0; s == BWT_STATUS_OK && h < c->NH; h++) {
    bwt_dynamics_head(&t, 0, h, NULL, adv, resp);
    const float *ds = g->dscores[l] + (size_t)h * T * T;
    for (size_t i = 0; i < (size_t)T * T; i++) {
      out->score_max_abs = max_nan(out->score_max_abs, fabs((double)ds[i] - adv[i]));
      out->score_scale = max_nan(out->score_scale, fabs(ds[i]));
    }
    /* Σ_i α_ij u_i of the query heads sharing a key/value head, in head order */
    for (int j = 0; j < T; j++)
      for (int i = 0; i < hs; i++) dv[(size_t)j * KC + (size_t)(h / group) * hs + i] += resp[(size_t)j * hs + i];
  }
  for (size_t i = 0; s == BWT_STATUS_OK && i < (size_t)T * KC; i++) {
    out->value_max_abs = max_nan(out->value_max_abs, fabs((double)g->dv[l][i] - dv[i]));
    out->value_scale = max_nan(out->value_scale, fabs(g->dv[l][i]));
  }
  free(vrep), free(adv), free(resp), free(dv);
  if (s == BWT_STATUS_OK && (!isfinite(out->score_max_abs) || !isfinite(out->value_max_abs) ||
                             !isfinite(out->score_scale) || !isfinite(out->value_scale)))
    return bwt_fail(BWT_STATUS_NUMERIC, "the gradients of layer %d are not finite: the model's weights or outputs are broken", l);
  return s;
}

bwt_status bwt_lm_dynamics_verify(bwt_lm *lm, const bwt_lm_record *p, int n, bwt_dynamics_check *per_layer) {
  const bwt_lm_config *c = bwt_lm_config_of(lm);
  memset(per_layer, 0, sizeof *per_layer * c->L);
  if (n < 1) return bwt_fail(BWT_STATUS_ARG, "verify needs at least one prompt");
  bwt_status s = BWT_STATUS_OK;
  for (int i = 0; s == BWT_STATUS_OK && i < n; i++) {
    if (p[i].T < 2) return bwt_fail(BWT_STATUS_ARG, "prompt %d has %d token: verify needs at least 2 (a next-token target)", i, p[i].T);
    int32_t *targets = bwt_malloc(sizeof(int32_t) * (size_t)p[i].T, "targets");
    if (!targets) return BWT_STATUS_NOMEM;
    for (int t = 0; t < p[i].T; t++) targets[t] = t + 1 < p[i].T ? p[i].tokens[t + 1] : -1;
    bwt_lm_grad g;
    s = bwt_lm_grad_xent(lm, p[i].tokens, p[i].T, targets, &g);
    for (int l = 0; s == BWT_STATUS_OK && l < c->L; l++) {
      bwt_dynamics_check k;
      s = bwt_lm_dynamics_check(lm, &g, l, &k);
      if (s != BWT_STATUS_OK) break;
      bwt_dynamics_check *d = &per_layer[l];
      d->score_max_abs = fmax(d->score_max_abs, k.score_max_abs), d->score_scale = fmax(d->score_scale, k.score_scale);
      d->value_max_abs = fmax(d->value_max_abs, k.value_max_abs), d->value_scale = fmax(d->value_scale, k.value_scale);
    }
    bwt_lm_grad_free(&g);
    free(targets);
  }
  return s;
}

/* ---- the detector ------------------------------------------------------------------------------- */

void bwt_lm_detect_options_default(bwt_lm_detect_options *o) {
  bwt_detector_options_default(&o->det);
  o->buckets = 0;
  o->soft = 0;
}

void bwt_lm_detect_result_free(bwt_lm_detect_result *r) {
  for (int k = 0; k < BWT_DETECT_N; k++) {
    bwt_detect_result_free(&r->r[k]);
    free(r->qv_ratio[k]);
  }
  memset(r, 0, sizeof *r);
}

typedef struct {
  int rows, F;
  float *feat;
  int *label;
  double *err;
  float **sq, **sv; /* (L) Σ_rows ∂L/∂W_Q, ∂L/∂W_V */
  double loss;
} lm_rows;

static void lm_rows_free(lm_rows *r, int L) {
  free(r->feat), free(r->label), free(r->err);
  for (int l = 0; l < L; l++) {
    if (r->sq) free(r->sq[l]);
    if (r->sv) free(r->sv[l]);
  }
  free(r->sq), free(r->sv);
  memset(r, 0, sizeof *r);
}

/* The model's probabilities of the two label tokens at the last position, renormalised. */
static void label_probs(const float *row, const int32_t *labels, double *p2) {
  double a = row[labels[0]], b = row[labels[1]], m = fmax(a, b);
  double ea = exp(a - m), eb = exp(b - m);
  p2[0] = ea / (ea + eb), p2[1] = eb / (ea + eb);
}

static double entropy2(const double *p) {
  double h = 0;
  for (int i = 0; i < 2; i++)
    if (p[i] > 0) h -= p[i] * log2(p[i]);
  return h;
}

/* One row: forward, the last position's loss, backward, the advantage feature. */
static bwt_status add_row(bwt_lm *lm, const bwt_lm_record *p, const int32_t *tokens, bwt_detect_input kind,
                          const bwt_lm_detect_options *o, int layer, int buckets, lm_rows *r, float *adv) {
  const bwt_lm_config *c = bwt_lm_config_of(lm);
  int T = p->T, V = c->V, last = T - 1;
  bwt_lm_grad g;
  bwt_status s = bwt_lm_grad_forward(lm, tokens, T, &g);
  float *dl = s == BWT_STATUS_OK ? bwt_calloc((size_t)T * V, sizeof(float), "dlogits") : NULL;
  float *probs = s == BWT_STATUS_OK ? bwt_calloc((size_t)V, sizeof(float), "probs") : NULL;
  float *vrep = s == BWT_STATUS_OK ? bwt_calloc((size_t)T * c->NH * c->hs, sizeof(float), "detector") : NULL;
  if (s == BWT_STATUS_OK && (!dl || !probs || !vrep)) s = BWT_STATUS_NOMEM;
  if (s == BWT_STATUS_OK) {
    const float *row = g.logits + (size_t)last * V;
    double p2[2];
    label_probs(row, p->labels, p2);
    int y = kind == BWT_DETECT_RANDOM_TOKENS ? (p2[1] > p2[0]) : p->y;
    int32_t target = p->labels[y];
    bwt_softmax_forward(probs, row, 1, V);
    if (o->soft && kind != BWT_DETECT_RANDOM_TOKENS) {
      double *soft = bwt_calloc((size_t)V, sizeof(double), "soft targets");
      if (!soft) s = BWT_STATUS_NOMEM;
      else {
        soft[p->labels[0]] = p->posterior[0], soft[p->labels[1]] = p->posterior[1];
        r->loss += bwt_xent_loss(row, NULL, soft, 1, V);
        bwt_xent_backward(dl + (size_t)last * V, probs, NULL, soft, 1.0f, 1, V);
        free(soft);
      }
    } else {
      r->loss += bwt_xent_loss(row, &target, NULL, 1, V);
      bwt_xent_backward(dl + (size_t)last * V, probs, &target, NULL, 1.0f, 1, V);
    }
    if (s == BWT_STATUS_OK) s = bwt_lm_grad_backward(lm, &g, dl);
    bwt_attention_trace t;
    if (s == BWT_STATUS_OK) s = layer_trace(lm, &g, layer, vrep, &t);
    if (s == BWT_STATUS_OK) {
      float *f = r->feat + (size_t)r->rows * r->F;
      for (int h = 0; h < c->NH; h++) {
        bwt_dynamics_head(&t, 0, h, NULL, adv, NULL);
        for (int j = 0; j <= last; j++) f[(size_t)h * buckets + tokens[j] % buckets] += adv[(size_t)last * T + j];
      }
      double nn = 0;
      for (int i = 0; i < r->F; i++) nn += (double)f[i] * f[i];
      if (nn > 0)
        for (int i = 0; i < r->F; i++) f[i] = (float)(f[i] / sqrt(nn));
      r->label[r->rows] = y;
      r->err[r->rows] = kind == BWT_DETECT_RANDOM_TOKENS ? NAN : fabs(entropy2(p2) - entropy2(p->posterior));
      r->rows++;
      size_t nq = (size_t)c->NH * c->hs * c->C, nk = (size_t)c->NKV * c->hs * c->C;
      for (int l = 0; l < c->L; l++) {
        bwt_add_inplace(r->sq[l], g.dWq[l], nq);
        bwt_add_inplace(r->sv[l], g.dWv[l], nk);
      }
    }
  }
  free(dl), free(probs), free(vrep);
  bwt_lm_grad_free(&g);
  return s;
}

static bwt_status collect(bwt_lm *lm, const bwt_lm_record *p, int n, bwt_detect_input kind, const bwt_lm_detect_options *o,
                          int layer, int buckets, lm_rows *r, int *skipped) {
  const bwt_lm_config *c = bwt_lm_config_of(lm);
  memset(r, 0, sizeof *r);
  r->F = c->NH * buckets;
  int maxT = 1;
  for (int i = 0; i < n; i++) maxT = p[i].T > maxT ? p[i].T : maxT;
  r->feat = bwt_calloc((size_t)n * r->F, sizeof(float), "detector features");
  r->label = bwt_calloc((size_t)n, sizeof(int), "detector");
  r->err = bwt_calloc((size_t)n, sizeof(double), "detector");
  r->sq = bwt_calloc((size_t)c->L, sizeof(float *), "detector");
  r->sv = bwt_calloc((size_t)c->L, sizeof(float *), "detector");
  float *adv = bwt_calloc((size_t)maxT * maxT, sizeof(float), "detector");
  int32_t *tok = bwt_calloc((size_t)maxT, sizeof(int32_t), "detector");
  bwt_status s = r->feat && r->label && r->err && r->sq && r->sv && adv && tok ? BWT_STATUS_OK : BWT_STATUS_NOMEM;
  for (int l = 0; s == BWT_STATUS_OK && l < c->L; l++) {
    r->sq[l] = bwt_calloc((size_t)c->NH * c->hs * c->C, sizeof(float), "detector");
    r->sv[l] = bwt_calloc((size_t)c->NKV * c->hs * c->C, sizeof(float), "detector");
    if (!r->sq[l] || !r->sv[l]) s = BWT_STATUS_NOMEM;
  }
  *skipped = 0;
  for (int i = 0; s == BWT_STATUS_OK && i < n; i++) {
    if (strcmp(p[i].control, "none") != 0) {
      ++*skipped;
      continue;
    }
    if (kind != BWT_DETECT_RANDOM_TOKENS && p[i].posterior[p[i].y] < o->det.min_map) continue;
    memcpy(tok, p[i].tokens, sizeof(int32_t) * (size_t)p[i].T);
    if (kind == BWT_DETECT_RANDOM_TOKENS) { /* per prompt, so independent of the others */
      bwt_rng rng;
      bwt_rng_seed(&rng, bwt_hash2(o->det.seed, 0xc0de), (uint64_t)i);
      for (int t = 0; t < p[i].T; t++) tok[t] = (int32_t)bwt_rng_below(&rng, (uint32_t)c->V);
    }
    s = add_row(lm, &p[i], tok, kind, o, layer, buckets, r, adv);
  }
  free(adv), free(tok);
  if (s != BWT_STATUS_OK) lm_rows_free(r, c->L);
  return s;
}

bwt_status bwt_lm_detect(bwt_lm *lm, const bwt_lm_record *p, int n, const bwt_lm_detect_options *opt,
                         bwt_lm_detect_result *out) {
  const bwt_lm_config *c = bwt_lm_config_of(lm);
  memset(out, 0, sizeof *out);
  bwt_lm_detect_options o = *opt;
  int layer = o.det.layer < 0 ? c->L - 1 : o.det.layer;
  int buckets = o.buckets > 0 ? o.buckets : (c->V < 1024 ? c->V : 1024);
  if (layer >= c->L || o.buckets < 0 || o.det.subsamples < 1 || o.det.subsample_rows < 2)
    return bwt_fail(BWT_STATUS_ARG, "detector: layer %d of %d, %d buckets, %d subsamples of %d rows are not possible",
                    o.det.layer, c->L, o.buckets, o.det.subsamples, o.det.subsample_rows);
  for (int i = 0; i < n; i++)
    if (!p[i].has_labels) return bwt_fail(BWT_STATUS_ARG, "prompt %d has no labels, y and posterior: the detector needs them", i);
  out->L = c->L, out->layer = layer, out->F = c->NH * buckets, out->buckets = buckets;
  o.det.layer = layer;
  lm_rows real = {0}; /* kept for the shuffled kind: the same rows, features and losses */
  for (int kind = 0; kind < BWT_DETECT_N; kind++) {
    lm_rows r;
    bwt_status s = BWT_STATUS_OK;
    if (kind == BWT_DETECT_SHUFFLED_LABELS) {
      r = real;
      r.label = bwt_malloc(sizeof(int) * (size_t)(real.rows ? real.rows : 1), "detector");
      if (!r.label) s = BWT_STATUS_NOMEM;
      else memcpy(r.label, real.label, sizeof(int) * (size_t)real.rows);
      bwt_rng rng;
      bwt_rng_seed(&rng, o.det.seed, 0x5407);
      for (int i = r.rows - 1; s == BWT_STATUS_OK && i > 0; i--) { /* Fisher-Yates */
        int j = (int)bwt_rng_below(&rng, (uint32_t)(i + 1)), t = r.label[i];
        r.label[i] = r.label[j], r.label[j] = t;
      }
    } else {
      s = collect(lm, p, n, (bwt_detect_input)kind, &o, layer, buckets, &r, &out->skipped);
    }
    if (s != BWT_STATUS_OK) {
      lm_rows_free(&real, c->L);
      return s;
    }
    bwt_detect_result *d = &out->r[kind];
    *d = (bwt_detect_result){.rows = r.rows, .silhouette = NAN, .confidence_r = NAN, .fire_rate = NAN, .curvature = NAN,
                              .curvature_null = NAN, .curvature_confidence_r = NAN};
    out->mean_loss[kind] = r.rows ? r.loss / r.rows : NAN;
    out->qv_ratio[kind] = bwt_calloc((size_t)c->L, sizeof(double), "detector");
    double *per = bwt_calloc(r.rows ? (size_t)r.rows : 1, sizeof(double), "detector");
    double *acc = bwt_calloc(r.rows ? (size_t)r.rows : 1, sizeof(double), "detector");
    if (!out->qv_ratio[kind] || !per || !acc) s = BWT_STATUS_NOMEM;
    for (int l = 0; s == BWT_STATUS_OK && l < c->L; l++) {
      double nq = bwt_sumsq(r.sq[l], (size_t)c->NH * c->hs * c->C), nv = bwt_sumsq(r.sv[l], (size_t)c->NKV * c->hs * c->C);
      out->qv_ratio[kind][l] = nv > 0 ? sqrt(nq / nv) : NAN; /* the mean's 1/rows cancels */
    }
    int seen[2] = {0, 0};
    for (int i = 0; i < r.rows; i++) seen[r.label[i]] = 1;
    d->clusters = seen[0] + seen[1];
    if (s == BWT_STATUS_OK && r.rows >= 2) d->silhouette = bwt_silhouette(r.feat, r.label, r.rows, r.F, per);
    if (s == BWT_STATUS_OK && kind != BWT_DETECT_RANDOM_TOKENS && r.rows >= 2 && d->clusters == 2) {
      for (int i = 0; i < r.rows; i++) acc[i] = -r.err[i];
      d->confidence_r = bwt_pearson(per, acc, r.rows);
    }
    if (s == BWT_STATUS_OK) s = bwt_detect_fire_rate(r.feat, r.label, r.rows, r.F, &o.det, 0xf12e + (uint64_t)kind, d);
    free(per), free(acc);
    if (kind == BWT_DETECT_REAL) real = r;
    else if (kind == BWT_DETECT_SHUFFLED_LABELS) free(r.label);
    else lm_rows_free(&r, c->L);
    if (s != BWT_STATUS_OK) {
      lm_rows_free(&real, c->L);
      return s;
    }
  }
  lm_rows_free(&real, c->L);
  return BWT_STATUS_OK;
}

char *bwt_lm_detect_to_json(const bwt_lm_detect_options *o, const bwt_lm_detect_result *r, const char *model) {
  bwt_detector_options d = o->det;
  d.layer = r->layer;
  char *base = bwt_detect_to_json(&d, r->r);
  cJSON *root = base ? cJSON_Parse(base) : NULL;
  free(base);
  if (!root) return NULL;
  cJSON *opt = cJSON_GetObjectItemCaseSensitive(root, "options");
  cJSON_DeleteItemFromObject(opt, "seqs");
  cJSON_AddStringToObject(opt, "model", model);
  cJSON_AddNumberToObject(opt, "buckets", r->buckets);
  cJSON_AddBoolToObject(opt, "soft", o->soft);
  cJSON_AddNumberToObject(root, "skipped_controls", r->skipped);
  cJSON_AddNumberToObject(root, "layers", r->L);
  for (int k = 0; k < BWT_DETECT_N; k++) {
    cJSON *x = cJSON_GetObjectItemCaseSensitive(root, bwt_detect_input_names[k]);
    cJSON_AddNumberToObject(x, "mean_loss", r->mean_loss[k]);
    cJSON_AddItemToObject(x, "qv_ratio", cJSON_CreateDoubleArray(r->qv_ratio[k], r->L));
  }
  char *text = cJSON_Print(root);
  cJSON_Delete(root);
  return text;
}
