/* The routing law and the responsibility-weighted value gradient (bwt/lab/dynamics.h), evaluated from
 * a traced backward pass and compared with the gradients the kernels computed. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/lab/dynamics.h"
#include "bwt/kernels.h"

static int query_pos(const bwt_attention_trace *t, int b, int j) { return t->qpos ? t->qpos[b * t->nq + j] : j; }

void bwt_dynamics_head(const bwt_attention_trace *t, int b, int h, float *bmat, float *adv, float *resp) {
  int T = t->T, C = t->C, hs = C / t->NH, nq = t->nq;
  const float *a0 = t->att + ((size_t)b * t->NH + h) * nq * T;
  const float *v = t->v + (size_t)b * T * C + h * hs, *u = t->u + (size_t)b * nq * C + h * hs;
  if (resp) memset(resp, 0, sizeof(float) * T * hs);
  double *row = bwt_malloc(sizeof(double) * T, NULL), *acc = bwt_calloc((size_t)T * hs, sizeof(double), NULL);
  if (!row || !acc) { /* a few KB: report through NANs rather than a status nobody checks */
    if (bmat) for (int i = 0; i < nq * T; i++) bmat[i] = NAN;
    if (adv) for (int i = 0; i < nq * T; i++) adv[i] = NAN;
    if (resp) for (int i = 0; i < T * hs; i++) resp[i] = NAN;
    free(row);
    free(acc);
    return;
  }
  for (int j = 0; j < nq; j++) {
    int pos = query_pos(t, b, j);
    const float *a = a0 + (size_t)j * T, *uj = u + (size_t)j * C;
    double mean = 0; /* Σ_k α_jk b_jk: the baseline */
    for (int s = 0; s < T; s++) {
      double d = 0;
      if (s <= pos)
        for (int i = 0; i < hs; i++) d += (double)uj[i] * v[(size_t)s * C + i];
      row[s] = d;
      mean += a[s] * d;
    }
    for (int s = 0; s < T; s++) {
      if (bmat) bmat[(size_t)j * T + s] = (float)row[s];
      if (adv) adv[(size_t)j * T + s] = s <= pos ? (float)(a[s] * (row[s] - mean)) : 0.0f;
      for (int i = 0; resp && s <= pos && i < hs; i++) acc[(size_t)s * hs + i] += a[s] * uj[i];
    }
  }
  if (resp)
    for (int i = 0; i < T * hs; i++) resp[i] = (float)acc[i];
  free(row);
  free(acc);
}

/* max that keeps a NaN (fmax drops it): a NaN anywhere must fail the check, not vanish from it. */
static double max_nan(double a, double b) { return a > b || isnan(a) ? a : b; }

bwt_status bwt_dynamics_check_trace(const bwt_attention_trace *t, bwt_dynamics_check *out) {
  memset(out, 0, sizeof *out);
  int T = t->T, C = t->C, hs = C / t->NH, nq = t->nq;
  float *adv = bwt_calloc((size_t)nq * T, sizeof(float), "dynamics check");
  float *resp = bwt_calloc((size_t)T * hs, sizeof(float), "dynamics check");
  if (!adv || !resp) {
    free(adv);
    free(resp);
    return BWT_STATUS_NOMEM;
  }
  for (int b = 0; b < t->B; b++)
    for (int h = 0; h < t->NH; h++) {
      bwt_dynamics_head(t, b, h, NULL, adv, resp);
      const float *ds = t->dscore + ((size_t)b * t->NH + h) * nq * T;
      for (size_t i = 0; i < (size_t)nq * T; i++) {
        out->score_max_abs = max_nan(out->score_max_abs, fabs((double)ds[i] - adv[i]));
        out->score_scale = max_nan(out->score_scale, fabs(ds[i]));
      }
      for (int s = 0; s < T; s++)
        for (int i = 0; i < hs; i++) {
          double kernel = t->dv[((size_t)b * T + s) * C + h * hs + i];
          out->value_max_abs = max_nan(out->value_max_abs, fabs(kernel - resp[(size_t)s * hs + i]));
          out->value_scale = max_nan(out->value_scale, fabs(kernel));
        }
    }
  free(adv);
  free(resp);
  if (!isfinite(out->score_max_abs) || !isfinite(out->value_max_abs) || !isfinite(out->score_scale) || !isfinite(out->value_scale))
    return bwt_fail(BWT_STATUS_NUMERIC, "the traced gradients are not finite: the model's weights or outputs are broken");
  return BWT_STATUS_OK;
}

static void merge(bwt_dynamics_check *into, const bwt_dynamics_check *c) {
  into->score_max_abs = fmax(into->score_max_abs, c->score_max_abs);
  into->score_scale = fmax(into->score_scale, c->score_scale);
  into->value_max_abs = fmax(into->value_max_abs, c->value_max_abs);
  into->value_scale = fmax(into->value_scale, c->value_scale);
}

bwt_status bwt_dynamics_verify(bwt_model *m, const bwt_task *task, const bwt_forward_options *opt, uint64_t seed,
                               int n_batches, int batch, bwt_dynamics_check *per_layer) {
  if (n_batches < 1 || batch < 1) return bwt_fail(BWT_STATUS_ARG, "verify needs at least one batch of one sequence");
  BWT_TRY(bwt_model_check_task(m, task));
  int L = m->cfg.n_layers, K = task->n_classes;
  memset(per_layer, 0, sizeof *per_layer * L);
  bwt_batch b;
  BWT_TRY(bwt_batch_alloc(&b, task, batch));
  size_t M = (size_t)batch * task->n_sup;
  float *probs = bwt_calloc(M * K, sizeof(float), "verify"), *dlogits = bwt_calloc(M * K, sizeof(float), "verify");
  bwt_status s = probs && dlogits ? BWT_STATUS_OK : BWT_STATUS_NOMEM;
  float *saved = s == BWT_STATUS_OK ? bwt_malloc(sizeof(float) * m->n_params, NULL) : NULL;
  if (s == BWT_STATUS_OK && !saved) s = bwt_fail(BWT_STATUS_NOMEM, "out of memory saving gradients");
  if (saved) memcpy(saved, m->grads, sizeof(float) * m->n_params); /* the caller's gradients stay as they were */
  for (int i = 0; s == BWT_STATUS_OK && i < n_batches; i++) {
    s = bwt_task_sample(task, seed + (uint64_t)i, &b);
    for (int l = 0; s == BWT_STATUS_OK && l < L; l++) {
      if (opt && opt->skip_attn && opt->skip_attn[l]) continue;
      const float *logits = NULL;
      s = bwt_model_forward_with(m, &b, opt, &logits);
      if (s != BWT_STATUS_OK) break;
      bwt_softmax_forward(probs, logits, (int)M, K);
      memset(dlogits, 0, sizeof(float) * M * K);
      bwt_xent_backward(dlogits, probs, b.target, NULL, 1.0f / (float)M, (int)M, K);
      bwt_attention_trace tr;
      bwt_dynamics_check c;
      s = bwt_model_backward_traced(m, &b, dlogits, l, &tr);
      if (s == BWT_STATUS_OK) s = bwt_dynamics_check_trace(&tr, &c);
      if (s == BWT_STATUS_OK) merge(&per_layer[l], &c);
      bwt_attention_trace_free(&tr);
    }
  }
  if (saved) memcpy(m->grads, saved, sizeof(float) * m->n_params);
  free(saved);
  free(probs);
  free(dlogits);
  bwt_batch_free(&b);
  return s;
}
