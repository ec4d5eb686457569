/* Causal grouped-query attention (Llama 2/3, Mistral): NH query heads share NKV key/value heads,
 * query head h reading key/value head h / (NH/NKV), any head size hs, an optional sliding window.
 *
 * Queries are the last nq of T positions, so one call serves a whole sequence (nq = T) and a step
 * after a key/value cache (nq < T). Few queries (a step after the cache, nq < GQA_BLOCK_MIN): the
 * row version parallelises over (b, h, j) rows; each writes only its own att, scores and out rows
 * and loops in a fixed order inside. Many (a prompt): the blocked version takes GQA_BLOCK queries
 * of one head at a time, scores = Q·Kᵀ over the keys the block sees and out = P·V as two
 * cblas_sgemm calls on the head's strided rows (no copies), the masked softmax between them
 * vectorised; blocks run in parallel, each sgemm on one thread (OpenBLAS inside an OpenMP region),
 * so neither version's results depend on the thread count. */
#include <math.h>
#include <string.h>

#include <cblas.h>

#include "bwt/kernels.h"
#include "core/vecmath.h"

#define GQA_OMP_MIN_WORK 16384
#define GQA_BLOCK_MIN 32 /* queries from which the blocked version runs */
#define GQA_BLOCK 64     /* queries per block */

/* The first key position query position t sees. */
static int first_key(int t, int window) { return window > 0 && t - window + 1 > 0 ? t - window + 1 : 0; }

static int bad_shape(int T, int nq, int NH, int NKV, int hs) {
  return T <= 0 || nq <= 0 || nq > T || NKV <= 0 || NH % NKV != 0 || hs <= 0;
}

/* One block: queries j0..j1-1 of head h in batch b. The block sees keys s_lo..s_hi (the first key
 * of its first query to its last query); each row's own range is masked inside it. */
static void gqa_block(float *out, float *att, float *scores, const float *q, const float *k,
                      const float *v, int b, int h, int j0, int j1, int T, int nq, int NH, int NKV,
                      int hs, int window, float scale) {
  int group = NH / NKV, QC = NH * hs, KC = NKV * hs, m = j1 - j0;
  int s_lo = first_key(T - nq + j0, window), s_hi = T - nq + j1 - 1, nk = s_hi - s_lo + 1;
  const float *qb = q + ((size_t)b * nq + j0) * QC + (size_t)h * hs;
  const float *kb = k + ((size_t)b * T + s_lo) * KC + (size_t)(h / group) * hs;
  const float *vb = v + ((size_t)b * T + s_lo) * KC + (size_t)(h / group) * hs;
  float *ab = att + (((size_t)b * NH + h) * nq + j0) * T;
  float *ob = out + ((size_t)b * nq + j0) * QC + (size_t)h * hs;
  /* Raw dot products into the att rows' columns s_lo..s_hi. */
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, nk, hs, scale, qb, QC, kb, KC, 0.0f, ab + s_lo, T);
  for (int i = 0; i < m; i++) {
    int t = T - nq + j0 + i, s0 = first_key(t, window);
    float *a = ab + (size_t)i * T;
    float mx = -INFINITY;
    for (int s = s0; s <= t; s++) mx = a[s] > mx ? a[s] : mx;
    if (scores) {
      float *sc = scores + (((size_t)b * NH + h) * nq + j0 + i) * T;
      for (int s = 0; s < T; s++) sc[s] = s >= s0 && s <= t ? a[s] : -INFINITY;
    }
    float sum = 0.0f; /* max-subtracted: every term in (0, 1], sum ≥ 1 */
#pragma omp simd reduction(+ : sum)
    for (int s = s0; s <= t; s++) {
      float e = expf(a[s] - mx);
      a[s] = e;
      sum += e;
    }
    float inv = 1.0f / sum;
    if (s0 > 0) memset(a, 0, sizeof(float) * (size_t)s0);
#pragma omp simd
    for (int s = s0; s <= t; s++) a[s] *= inv;
    if (t + 1 < T) memset(a + t + 1, 0, sizeof(float) * (size_t)(T - t - 1));
  }
  /* The zeros outside each row's range contribute nothing. */
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, hs, nk, 1.0f, ab + s_lo, T, vb, KC, 0.0f, ob, QC);
}

bwt_status bwt_gqa_attention_forward(float *out, float *att, float *scores, const float *q,
                                     const float *k, const float *v, int B, int T, int nq, int NH,
                                     int NKV, int hs, int window, float scale) {
  if (B <= 0 || NH <= 0) return BWT_STATUS_OK;
  if (bad_shape(T, nq, NH, NKV, hs))
    return bwt_fail(BWT_STATUS_ARG, "attention: T=%d, nq=%d, NH=%d, NKV=%d, hs=%d do not fit", T, nq, NH, NKV, hs);
  if (nq >= GQA_BLOCK_MIN) {
    int nb = (nq + GQA_BLOCK - 1) / GQA_BLOCK;
    long tasks = (long)B * NH * nb;
    /* Later blocks see more keys: dynamic hands them out as threads free up (which thread runs a
     * block does not change its result). */
#pragma omp parallel for schedule(dynamic, 1) if (tasks > 1 && (long)nq * T * hs * NH >= GQA_OMP_MIN_WORK)
    for (long r = 0; r < tasks; r++) {
      int blk = (int)(nb - 1 - r % nb), h = (int)(r / nb % NH), b = (int)(r / nb / NH); /* longest first */
      int j0 = blk * GQA_BLOCK, j1 = j0 + GQA_BLOCK < nq ? j0 + GQA_BLOCK : nq;
      gqa_block(out, att, scores, q, k, v, b, h, j0, j1, T, nq, NH, NKV, hs, window, scale);
    }
    return BWT_STATUS_OK;
  }
  int group = NH / NKV, QC = NH * hs, KC = NKV * hs;
  long rows = (long)B * NH * nq;
#pragma omp parallel for schedule(static) if (rows * T * hs >= GQA_OMP_MIN_WORK)
  for (long r = 0; r < rows; r++) {
    int j = (int)(r % nq), h = (int)(r / nq % NH), b = (int)(r / nq / NH);
    int t = T - nq + j, s0 = first_key(t, window);
    const float *qr = q + ((size_t)b * nq + j) * QC + (size_t)h * hs;
    const float *kb = k + (size_t)b * T * KC + (size_t)(h / group) * hs;
    const float *vb = v + (size_t)b * T * KC + (size_t)(h / group) * hs;
    float *a = att + (size_t)r * T, *o = out + ((size_t)b * nq + j) * QC + (size_t)h * hs;
    float mx = -INFINITY;
    for (int s = s0; s <= t; s++) {
      const float *ks = kb + (size_t)s * KC;
      float d = 0.0f;
#pragma omp simd reduction(+ : d)
      for (int i = 0; i < hs; i++) d += qr[i] * ks[i];
      a[s] = d * scale;
      mx = a[s] > mx ? a[s] : mx;
    }
    if (scores) {
      float *sc = scores + (size_t)r * T;
      for (int s = 0; s < T; s++) sc[s] = s >= s0 && s <= t ? a[s] : -INFINITY;
    }
    float sum = 0.0f; /* max-subtracted: every term in (0, 1], sum ≥ 1 */
    for (int s = s0; s <= t; s++) sum += a[s] = expf(a[s] - mx);
    float inv = 1.0f / sum;
    for (int s = 0; s < T; s++) a[s] = s >= s0 && s <= t ? a[s] * inv : 0.0f;
    for (int i = 0; i < hs; i++) o[i] = 0.0f;
    for (int s = s0; s <= t; s++) {
      const float *vs = vb + (size_t)s * KC;
      float w = a[s];
#pragma omp simd
      for (int i = 0; i < hs; i++) o[i] += w * vs[i];
    }
  }
  return BWT_STATUS_OK;
}

/* The oracle: every score recomputed in double from the definition, one row at a time. */
static double naive_score(const float *q, const float *k, int b, int j, int s, int h, int T, int nq,
                          int NH, int NKV, int hs, float scale) {
  const float *qr = q + ((size_t)b * nq + j) * NH * hs + (size_t)h * hs;
  const float *ks = k + ((size_t)b * T + s) * NKV * hs + (size_t)(h / (NH / NKV)) * hs;
  double d = 0.0;
  for (int i = 0; i < hs; i++) d += (double)qr[i] * ks[i];
  return d * scale;
}

void bwt_gqa_attention_forward_naive(float *out, float *att, float *scores, const float *q,
                                     const float *k, const float *v, int B, int T, int nq, int NH,
                                     int NKV, int hs, int window, float scale) {
  if (B <= 0 || NH <= 0 || bad_shape(T, nq, NH, NKV, hs)) return;
  for (int b = 0; b < B; b++)
    for (int h = 0; h < NH; h++)
      for (int j = 0; j < nq; j++) {
        int t = T - nq + j, s0 = first_key(t, window);
        size_t r = ((size_t)b * NH + h) * nq + j;
        double mx = -INFINITY, sum = 0.0;
        for (int s = s0; s <= t; s++) mx = fmax(mx, naive_score(q, k, b, j, s, h, T, nq, NH, NKV, hs, scale));
        for (int s = s0; s <= t; s++) sum += exp(naive_score(q, k, b, j, s, h, T, nq, NH, NKV, hs, scale) - mx);
        for (int s = 0; s < T; s++) {
          int seen = s >= s0 && s <= t;
          double sc = seen ? naive_score(q, k, b, j, s, h, T, nq, NH, NKV, hs, scale) : -INFINITY;
          att[r * T + s] = seen ? (float)(exp(sc - mx) / sum) : 0.0f;
          if (scores) scores[r * T + s] = (float)sc;
        }
        float *o = out + ((size_t)b * nq + j) * NH * hs + (size_t)h * hs;
        for (int i = 0; i < hs; i++) {
          double acc = 0.0;
          for (int s = s0; s <= t; s++)
            acc += (double)att[r * T + s] * v[((size_t)b * T + s) * NKV * hs + (size_t)(h / (NH / NKV)) * hs + i];
          o[i] = (float)acc;
        }
      }
}
