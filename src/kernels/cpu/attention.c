/* Causal multi-head self-attention over already-projected q, k, v.
 *
 * Layout: q, k, v, out (B,T,C) with head h owning channels [h·hs, (h+1)·hs), hs = C/NH;
 * att (B,NH,T,T) holds the softmax weights α (row t: columns 0..t, zeros after).
 * For one (b,h) pair:  s_ts = q_t·k_s / sqrt(hs) (s ≤ t),  α_t = softmax(s_t),
 *                      out_t = mask[h] · Σ_s α_ts v_s.
 * The fast versions parallelise over the B·NH pairs: each pair reads and writes only its own
 * channel slice and att block, and loops in a fixed order inside, so results do not depend on the
 * thread count. Within a pair, k (or v) is first copied transposed, (hs,T), so that a row of
 * scores is built with vector operations across s rather than one short dot product per s. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "bwt/kernels.h"
#include "core/vecmath.h"

#define ATT_OMP_MIN_WORK 16384

/* Inner loops work on LANES floats held in registers (one AVX-512 vector, two AVX2 ones):
 * accumulating in memory instead stalls every iteration on the store of the one before. */
#define LANES 16

/* The transposed head slice has rows padded to a multiple of LANES (zeros past T). */
static int padded(int T) { return (T + LANES - 1) / LANES * LANES; }

/* xt(hs,ld) = the (T,hs) slice x[s·C + i] transposed: column s of xt is row s of the head. */
static void transpose_head(float *xt, const float *x, int T, int C, int hs, int ld) {
  for (int i = 0; i < hs; i++)
    for (int s = 0; s < ld; s++) xt[(size_t)i * ld + s] = s < T ? x[(size_t)s * C + i] : 0.0f;
}

/* row(n) = Σ_i w[i] · xt[i·ld + s] for s < n (n ≤ ld): n dot products at once, i in order. */
static void row_dots(float *row, const float *w, const float *xt, int hs, int ld, int n) {
  for (int s0 = 0; s0 < n; s0 += LANES) {
    float acc[LANES] = {0};
    for (int i = 0; i < hs; i++) {
      float wi = w[i];
      const float *x = xt + (size_t)i * ld + s0;
      for (int j = 0; j < LANES; j++) acc[j] += wi * x[j];
    }
    int m = n - s0 < LANES ? n - s0 : LANES;
    for (int j = 0; j < m; j++) row[s0 + j] = acc[j];
  }
}

/* o(hs) = Σ_{s<n} a[s] · x[s·C + i]: a weighted sum of the head's rows, s in order. */
static void weighted_rows(float *o, const float *a, const float *x, int n, int C, int hs) {
  int i0 = 0;
  for (; i0 + LANES <= hs; i0 += LANES) {
    float acc[LANES] = {0};
    for (int s = 0; s < n; s++) {
      float as = a[s];
      const float *xs = x + (size_t)s * C + i0;
      for (int j = 0; j < LANES; j++) acc[j] += as * xs[j];
    }
    memcpy(o + i0, acc, sizeof acc);
  }
  for (int i = i0; i < hs; i++) {
    float acc = 0.0f;
    for (int s = 0; s < n; s++) acc += a[s] * x[(size_t)s * C + i];
    o[i] = acc;
  }
}

/* y(n) += a · x(n). */
static void axpy(float *y, float a, const float *x, int n) {
#pragma omp simd
  for (int i = 0; i < n; i++) y[i] += a * x[i];
}

/* Scratch of (hs·ld + nq·ld + ld + 2·hs) floats per thread, allocated before the parallel region:
 * a transposed head, an nq x ld matrix, a column and two head-size rows. */
static float *thread_scratch(int hs, int nq, int ld, size_t *per_thread) {
  *per_thread = (size_t)hs * ld + (size_t)nq * ld + ld + 2 * (size_t)hs;
  return bwt_calloc((size_t)omp_get_max_threads() * *per_thread, sizeof(float), "attention scratch");
}

/* The position of query row j of sequence b. */
static int query_pos(const int32_t *qpos, int b, int nq, int j) { return qpos ? qpos[b * nq + j] : j; }

bwt_status bwt_attention_forward(float *out, float *att, const float *q, const float *k,
                                 const float *v, const float *head_mask, int B, int T, int C,
                                 int NH, int nq, const int32_t *qpos) {
  if (B <= 0 || T <= 0 || NH <= 0 || nq <= 0) return BWT_STATUS_OK;
  int hs = C / NH, BH = B * NH, ld = padded(T);
  float scale = 1.0f / sqrtf((float)hs);
  size_t per;
  float *scratch = thread_scratch(hs, nq, ld, &per);
  if (!scratch) return BWT_STATUS_NOMEM;
#pragma omp parallel if ((long)B * nq * T * C >= ATT_OMP_MIN_WORK)
  {
    float *kt = scratch + per * omp_get_thread_num(), *qs = kt + (size_t)hs * ld;
#pragma omp for schedule(static)
    for (int bh = 0; bh < BH; bh++) {
      int b = bh / NH, h = bh % NH;
      float mask = head_mask ? head_mask[h] : 1.0f;
      size_t kv = (size_t)b * T * C + (size_t)h * hs; /* this head's slice of sequence b */
      transpose_head(kt, k + kv, T, C, hs, ld);
      for (int j = 0; j < nq; j++) {
        int t = query_pos(qpos, b, nq, j);
        size_t row = ((size_t)b * nq + j) * C + (size_t)h * hs; /* in q and out */
        float *a = att + ((size_t)bh * nq + j) * T;             /* α_t(T), built in place */
        for (int i = 0; i < hs; i++) qs[i] = q[row + i] * scale;
        row_dots(a, qs, kt, hs, ld, t + 1);
        float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
        for (int s = 0; s <= t; s++) mx = a[s] > mx ? a[s] : mx;
#pragma omp simd
        for (int s = 0; s <= t; s++) a[s] = expf(a[s] - mx);
        float sum = 0.0f; /* max-subtracted, so every term is in (0, 1] and sum ≥ 1 */
#pragma omp simd reduction(+ : sum)
        for (int s = 0; s <= t; s++) sum += a[s];
        float inv = 1.0f / sum;
        for (int s = 0; s <= t; s++) a[s] *= inv;
        for (int s = t + 1; s < T; s++) a[s] = 0.0f;

        float *o = out + row; /* out_t(hs) */
        weighted_rows(o, a, v + kv, t + 1, C, hs);
        if (mask != 1.0f)
          for (int i = 0; i < hs; i++) o[i] *= mask;
      }
    }
  }
  free(scratch);
  return BWT_STATUS_OK;
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

/* For one (b,h) and each query row j at position t (g = dout_j, m = mask[h]):
 *   dα_js = m (g_j·v_s),  ds_js = α_js (dα_js − Σ_s' α_js' dα_js'),
 *   dq_j += Σ_s ds_js k_s / sqrt(hs),  dk_s += Σ_j ds_js q_j / sqrt(hs),  dv_s += m Σ_j α_js g_j.
 * Rows j first (ds and dq), then columns s (dk and dv), so that every sum runs in registers and
 * each gradient row is written once. Column s takes rows from the first query that sees s on;
 * rows past their own position hold zeros, so any query order gives the right sums. */
bwt_status bwt_attention_backward(float *dq, float *dk, float *dv, const float *dout,
                                  const float *att, const float *q, const float *k, const float *v,
                                  const float *head_mask, int B, int T, int C, int NH, int nq,
                                  const int32_t *qpos, float *dscore) {
  if (B <= 0 || T <= 0 || NH <= 0 || nq <= 0) return BWT_STATUS_OK;
  int hs = C / NH, BH = B * NH, ld = padded(T);
  float scale = 1.0f / sqrtf((float)hs);
  size_t per;
  float *scratch = thread_scratch(hs, nq, ld, &per);
  if (!scratch) return BWT_STATUS_NOMEM;
#pragma omp parallel if ((long)B * nq * T * C >= ATT_OMP_MIN_WORK)
  {
    float *vt = scratch + per * omp_get_thread_num(); /* (hs,ld) v transposed */
    float *dsm = vt + (size_t)hs * ld;                 /* (nq,ld) ds, row j */
    float *col = dsm + (size_t)nq * ld;                /* (ld) a column of ds or α */
    float *sum = col + ld;                             /* (hs) */
#pragma omp for schedule(static)
    for (int bh = 0; bh < BH; bh++) {
      int b = bh / NH, h = bh % NH;
      float mask = head_mask ? head_mask[h] : 1.0f;
      size_t kv = (size_t)b * T * C + (size_t)h * hs, rows = (size_t)b * nq * C + (size_t)h * hs;
      const float *a0 = att + (size_t)bh * nq * T; /* α (nq,T) */
      transpose_head(vt, v + kv, T, C, hs, ld);
      for (int j = 0; j < nq; j++) {
        int t = query_pos(qpos, b, nq, j);
        const float *a = a0 + (size_t)j * T;
        float *ds = dsm + (size_t)j * ld;
        row_dots(ds, dout + rows + (size_t)j * C, vt, hs, ld, t + 1); /* g·v_s, then ds in place */
        float adot = 0.0f;                                            /* Σ_s α_s dα_s */
#pragma omp simd reduction(+ : adot)
        for (int s = 0; s <= t; s++) {
          ds[s] *= mask;
          adot += a[s] * ds[s];
        }
#pragma omp simd
        for (int s = 0; s <= t; s++) ds[s] = a[s] * (ds[s] - adot); /* ∂L/∂score */
        if (dscore) {
          float *out = dscore + ((size_t)bh * nq + j) * T;
          memcpy(out, ds, sizeof(float) * (t + 1));
          memset(out + t + 1, 0, sizeof(float) * (T - t - 1));
        }
#pragma omp simd
        for (int s = 0; s <= t; s++) ds[s] *= scale; /* ∂L/∂(q·k) */
        for (int s = t + 1; s < T; s++) ds[s] = 0.0f;
        if (dq) {
          weighted_rows(sum, ds, k + kv, t + 1, C, hs);
          axpy(dq + rows + (size_t)j * C, 1.0f, sum, hs);
        }
      }
      int j0 = 0; /* the first query row that sees key s */
      for (int s = 0; s < T; s++) {
        while (j0 < nq && query_pos(qpos, b, nq, j0) < s) j0++;
        if (j0 == nq) break;
        size_t off = kv + (size_t)s * C;
        if (dk) {
          for (int j = j0; j < nq; j++) col[j - j0] = dsm[(size_t)j * ld + s];
          weighted_rows(sum, col, q + rows + (size_t)j0 * C, nq - j0, C, hs);
          axpy(dk + off, 1.0f, sum, hs);
        }
        if (dv) {
          for (int j = j0; j < nq; j++) col[j - j0] = mask * a0[(size_t)j * T + s];
          weighted_rows(sum, col, dout + rows + (size_t)j0 * C, nq - j0, C, hs);
          axpy(dv + off, 1.0f, sum, hs);
        }
      }
    }
  }
  free(scratch);
  return BWT_STATUS_OK;
}

/* One float dot per (query, key) in channel order, then the scale: the weights' logits as the
 * forward's scaling defines them (the capture's scores). */
void bwt_attention_scores(float *scores, const float *q, const float *k, const int32_t *qpos, int B,
                          int T, int C, int NH, int nq) {
  int hs = C / NH;
  float scale = 1.0f / sqrtf((float)hs);
  for (int b = 0; b < B; b++)
    for (int h = 0; h < NH; h++)
      for (int j = 0; j < nq; j++) {
        int pos = qpos[b * nq + j];
        float *row = scores + (((size_t)b * NH + h) * nq + j) * T;
        const float *qr = q + ((size_t)b * nq + j) * C + h * hs;
        for (int s = 0; s < T; s++) {
          if (s > pos) {
            row[s] = -INFINITY;
            continue;
          }
          const float *kr = k + ((size_t)b * T + s) * C + h * hs;
          float dot = 0;
          for (int i = 0; i < hs; i++) dot += qr[i] * kr[i];
          row[s] = dot * scale;
        }
      }
}
