/* The backward of causal grouped-query attention (bwt_gqa_attention_forward): the gradients of the
 * queries, keys and values, and — the instruments of the gradient-dynamics checks (SPEC.md §6) — of
 * the scaled scores and of the softmax weights.
 *
 * With o_i = Σ_j α_ij v_j (query head h, key/value head g = h / (NH/NKV)) and u_i = ∂L/∂o_i:
 *   ∂L/∂α_ij = u_iᵀ v_j,   ∂L/∂s_ij = α_ij (∂L/∂α_ij − Σ_k α_ik ∂L/∂α_ik),
 *   ∂L/∂q_i = scale Σ_j ∂L/∂s_ij k_j,   ∂L/∂k_j = scale Σ_{h in g} Σ_i ∂L/∂s_ij q_i,
 *   ∂L/∂v_j = Σ_{h in g} Σ_i α_ij u_i   (the query heads sharing a key/value head add up).
 * Three passes, each parallel over rows that only it writes, each looping in a fixed order inside:
 * (b, h, i) rows for the score and query gradients, (b, g, j) rows for the key and value gradients,
 * so the results do not depend on the thread count. Dot products and sums in double. */
#include <stdlib.h>

#include "bwt/kernels.h"

#define GQA_BW_OMP_MIN_WORK 16384

static int first_key(int t, int window) { return window > 0 && t - window + 1 > 0 ? t - window + 1 : 0; }

bwt_status bwt_gqa_attention_backward(float *dq, float *dk, float *dv, float *dscores, float *dpattern,
                                      const float *dout, const float *att, const float *q, const float *k,
                                      const float *v, int B, int T, int nq, int NH, int NKV, int hs, int window,
                                      float scale) {
  if (B <= 0 || NH <= 0) return BWT_STATUS_OK;
  if (T <= 0 || nq <= 0 || nq > T || NKV <= 0 || NH % NKV != 0 || hs <= 0)
    return bwt_fail(BWT_STATUS_ARG, "attention backward: T=%d, nq=%d, NH=%d, NKV=%d, hs=%d do not fit", T, nq, NH, NKV, hs);
  int group = NH / NKV, QC = NH * hs, KC = NKV * hs;
  size_t n_att = (size_t)B * NH * nq * T;
  float *ds = dscores ? dscores : bwt_malloc(sizeof(float) * n_att, "attention backward");
  if (!ds) return BWT_STATUS_NOMEM;
  long rows = (long)B * NH * nq;
  int parallel = rows * T * hs >= GQA_BW_OMP_MIN_WORK;
  /* Pass 1: per query row, ∂L/∂α, ∂L/∂s and ∂L/∂q. */
#pragma omp parallel for schedule(static) if (parallel)
  for (long r = 0; r < rows; r++) {
    int j = (int)(r % nq), h = (int)(r / nq % NH), b = (int)(r / nq / NH);
    int t = T - nq + j, s0 = first_key(t, window);
    const float *u = dout + ((size_t)b * nq + j) * QC + (size_t)h * hs;
    const float *vb = v + (size_t)b * T * KC + (size_t)(h / group) * hs;
    const float *kb = k + (size_t)b * T * KC + (size_t)(h / group) * hs;
    const float *a = att + (size_t)r * T;
    float *dsr = ds + (size_t)r * T, *dpr = dpattern ? dpattern + (size_t)r * T : NULL;
    double base = 0.0;
    for (int s = 0; s < T; s++) {
      double d = 0.0;
      if (s >= s0 && s <= t)
        for (int i = 0; i < hs; i++) d += (double)u[i] * vb[(size_t)s * KC + i];
      dsr[s] = (float)d; /* ∂L/∂α for now */
      base += a[s] * d;
    }
    for (int s = 0; s < T; s++) {
      if (dpr) dpr[s] = dsr[s];
      dsr[s] = s >= s0 && s <= t ? (float)(a[s] * ((double)dsr[s] - base)) : 0.0f;
    }
    if (dq) {
      float *g = dq + ((size_t)b * nq + j) * QC + (size_t)h * hs;
      for (int i = 0; i < hs; i++) {
        double acc = 0.0;
        for (int s = s0; s <= t; s++) acc += (double)dsr[s] * kb[(size_t)s * KC + i];
        g[i] += (float)(acc * scale);
      }
    }
  }
  /* Pass 2: per key/value row, ∂L/∂k and ∂L/∂v over the query heads of its group, in order. */
  long krows = (long)B * NKV * T;
  if (dk || dv) {
#pragma omp parallel for schedule(static) if (parallel)
    for (long r = 0; r < krows; r++) {
      int s = (int)(r % T), g = (int)(r / T % NKV), b = (int)(r / T / NKV);
      size_t o = ((size_t)b * T + s) * KC + (size_t)g * hs;
      for (int i = 0; i < hs; i++) {
        double gk = 0.0, gv = 0.0;
        for (int h = g * group; h < (g + 1) * group; h++)
          for (int j = 0; j < nq; j++) {
            int t = T - nq + j;
            if (s > t || s < first_key(t, window)) continue;
            size_t ar = (((size_t)b * NH + h) * nq + j) * T + s, qo = ((size_t)b * nq + j) * QC + (size_t)h * hs + i;
            gk += (double)ds[ar] * q[qo];
            gv += (double)att[ar] * dout[qo];
          }
        if (dk) dk[o + i] += (float)(gk * scale);
        if (dv) dv[o + i] += (float)gv;
      }
    }
  }
  if (!dscores) free(ds);
  return BWT_STATUS_OK;
}
