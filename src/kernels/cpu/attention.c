/* Causal multi-head self-attention over already-projected q, k, v.
 *
 * Layout: q, k, v, out (B,T,C) with head h owning channels [h·hs, (h+1)·hs), hs = C/NH;
 * att (B,NH,T,T) holds the softmax weights α (row t: columns 0..t, zeros after).
 * For one (b,h) pair:  s_ts = q_t·k_s / sqrt(hs) (s ≤ t),  α_t = softmax(s_t),
 *                      out_t = mask[h] · Σ_s α_ts v_s.
 * The fast versions parallelise over the B·NH pairs: each pair reads and writes only its own
 * channel slice and att block, and loops in a fixed order inside, so results do not depend on the
 * thread count. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/kernels.h"

#define ATT_OMP_MIN_WORK 16384

/* x(n)·y(n) with eight interleaved partial sums (fixed order; lets the compiler vectorise without
 * -ffast-math). */
static float dot(const float *x, const float *y, int n) {
  float acc[8] = {0};
  int i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; j++) acc[j] += x[i + j] * y[i + j];
  for (; i < n; i++) acc[0] += x[i] * y[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/* y(n) += a · x(n). */
static void axpy(float *y, float a, const float *x, int n) {
  for (int i = 0; i < n; i++) y[i] += a * x[i];
}

void bwt_attention_forward(float *out, float *att, const float *q, const float *k, const float *v,
                           const float *head_mask, int B, int T, int C, int NH) {
  int hs = C / NH, BH = B * NH;
  float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel for schedule(static) if ((long)B * T * T * C >= ATT_OMP_MIN_WORK)
  for (int bh = 0; bh < BH; bh++) {
    int b = bh / NH, h = bh % NH;
    float mask = head_mask ? head_mask[h] : 1.0f;
    const float *qb = q + (size_t)b * T * C + h * hs;
    const float *kb = k + (size_t)b * T * C + h * hs;
    const float *vb = v + (size_t)b * T * C + h * hs;
    for (int t = 0; t < T; t++) {
      const float *qt = qb + (size_t)t * C;
      float *a = att + ((size_t)bh * T + t) * T; /* α_t(T), built in place */
      float mx = -INFINITY;
      for (int s = 0; s <= t; s++) {
        a[s] = dot(qt, kb + (size_t)s * C, hs) * scale;
        if (a[s] > mx) mx = a[s];
      }
      double sum = 0.0; /* max-subtracted, so every term is in (0, 1] and sum ≥ 1 */
      for (int s = 0; s <= t; s++) {
        a[s] = expf(a[s] - mx);
        sum += a[s];
      }
      float inv = (float)(1.0 / sum);
      for (int s = 0; s <= t; s++) a[s] *= inv;
      for (int s = t + 1; s < T; s++) a[s] = 0.0f;

      float *o = out + ((size_t)b * T + t) * C + h * hs; /* out_t(hs) */
      memset(o, 0, sizeof(float) * (size_t)hs);
      for (int s = 0; s <= t; s++) axpy(o, a[s], vb + (size_t)s * C, hs);
      for (int i = 0; i < hs; i++) o[i] *= mask;
    }
  }
}

/* Score s_ts of head h in double, recomputed on every use (the oracle favours plainness). */
static double naive_score(const float *q, const float *k, int b, int t, int s, int h, int T, int C,
                          int hs) {
  const float *qt = q + ((size_t)b * T + t) * C + h * hs;
  const float *ks = k + ((size_t)b * T + s) * C + h * hs;
  double d = 0.0;
  for (int i = 0; i < hs; i++) d += (double)qt[i] * ks[i];
  return d / sqrt((double)hs);
}

/* The oracle: one (b,t,h) at a time, all arithmetic in double, single-threaded. */
void bwt_attention_forward_naive(float *out, float *att, const float *q, const float *k,
                                 const float *v, const float *head_mask, int B, int T, int C,
                                 int NH) {
  int hs = C / NH;
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++)
      for (int h = 0; h < NH; h++) {
        double mx = -INFINITY, sum = 0.0;
        for (int s = 0; s <= t; s++) mx = fmax(mx, naive_score(q, k, b, t, s, h, T, C, hs));
        for (int s = 0; s <= t; s++) sum += exp(naive_score(q, k, b, t, s, h, T, C, hs) - mx);
        float *a = att + (((size_t)b * NH + h) * T + t) * T;
        for (int s = 0; s < T; s++)
          a[s] = s <= t ? (float)(exp(naive_score(q, k, b, t, s, h, T, C, hs) - mx) / sum) : 0.0f;
        double mask = head_mask ? head_mask[h] : 1.0;
        float *o = out + ((size_t)b * T + t) * C + h * hs;
        for (int i = 0; i < hs; i++) {
          double acc = 0.0;
          for (int s = 0; s <= t; s++)
            acc += exp(naive_score(q, k, b, t, s, h, T, C, hs) - mx) / sum *
                   v[((size_t)b * T + s) * C + h * hs + i];
          o[i] = (float)(mask * acc);
        }
      }
}

/* For one (b,h) and each query row t (g = dout_t, m = mask[h]):
 *   dα_s = m (g·v_s),  ds_s = α_s (dα_s − Σ_s' α_s' dα_s'),
 *   dq_t += Σ_s ds_s k_s / sqrt(hs),  dk_s += ds_s q_t / sqrt(hs),  dv_s += m α_s g. */
void bwt_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *att,
                            const float *q, const float *k, const float *v, const float *head_mask,
                            int B, int T, int C, int NH) {
  if (B <= 0 || T <= 0 || NH <= 0) return;
  int hs = C / NH, BH = B * NH;
  float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel if ((long)B * T * T * C >= ATT_OMP_MIN_WORK)
  {
    /* dα row cache, one per thread per call. Should malloc fail, dα is recomputed in the second
     * pass instead: the same dot products in the same order, so the same bits, only slower. */
    float *cache = malloc(sizeof(float) * (size_t)T);
#pragma omp for schedule(static)
    for (int bh = 0; bh < BH; bh++) {
      int b = bh / NH, h = bh % NH;
      float mask = head_mask ? head_mask[h] : 1.0f;
      size_t base = (size_t)b * T * C + (size_t)h * hs; /* start of this head's slice of (b) */
      for (int t = 0; t < T; t++) {
        const float *a = att + ((size_t)bh * T + t) * T; /* α_t(T) */
        const float *g = dout + base + (size_t)t * C;    /* dout_t(hs) */
        const float *qt = q + base + (size_t)t * C;
        double adot = 0.0; /* Σ_s α_s dα_s */
        for (int s = 0; s <= t; s++) {
          float da = mask * dot(g, v + base + (size_t)s * C, hs);
          if (cache) cache[s] = da;
          adot += (double)a[s] * da;
        }
        float sub = (float)adot;
        for (int s = 0; s <= t; s++) {
          size_t off = base + (size_t)s * C;
          float da = cache ? cache[s] : mask * dot(g, v + off, hs);
          float ds = a[s] * (da - sub) * scale;
          if (dv) axpy(dv + off, mask * a[s], g, hs);
          if (dq) axpy(dq + base + (size_t)t * C, ds, k + off, hs);
          if (dk) axpy(dk + off, ds, qt, hs);
        }
      }
    }
    free(cache);
  }
}
