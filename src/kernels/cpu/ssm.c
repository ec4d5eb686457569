/* State-space ops of Mamba (Gu & Dao 2023): the causal depthwise convolution, softplus for the step
 * sizes, and the selective scan. Every loop that sums runs in a fixed order whatever the thread
 * count: work is split over channels or rows, never over the summed index. */
#include <math.h>

#include "bwt/kernels.h"
#include "core/vecmath.h"

void bwt_conv1d_causal_forward(float *out, const float *inp, const float *weight, const float *bias, int B,
                               int T, int D, int K) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++) {
      float *o = out + ((size_t)b * T + t) * D;
      for (int d = 0; d < D; d++) o[d] = bias ? bias[d] : 0.0f;
      for (int k = 0; k < K; k++) {
        int s = t - (K - 1) + k; /* the input step tap k reads */
        if (s < 0) continue;
        const float *x = inp + ((size_t)b * T + s) * D;
#pragma omp simd
        for (int d = 0; d < D; d++) o[d] += weight[(size_t)d * K + k] * x[d];
      }
    }
}

void bwt_conv1d_causal_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                                const float *weight, int B, int T, int D, int K) {
  if (dinp) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
      for (int s = 0; s < T; s++) {
        float *dx = dinp + ((size_t)b * T + s) * D;
        for (int k = 0; k < K; k++) {
          int t = s + (K - 1) - k; /* the output step that read input s through tap k */
          if (t >= T) continue;
          const float *g = dout + ((size_t)b * T + t) * D;
#pragma omp simd
          for (int d = 0; d < D; d++) dx[d] += weight[(size_t)d * K + k] * g[d];
        }
      }
  }
  if (!dweight && !dbias) return;
  /* Per channel, summed over (b, t) in order. */
#pragma omp parallel for schedule(static)
  for (int d = 0; d < D; d++) {
    double db = 0;
    for (int k = 0; k < K; k++) {
      double dw = 0;
      for (int b = 0; b < B; b++)
        for (int t = (K - 1) - k; t < T; t++)
          dw += (double)dout[((size_t)b * T + t) * D + d] * inp[((size_t)b * T + t - (K - 1) + k) * D + d];
      if (dweight) dweight[(size_t)d * K + k] += (float)dw;
    }
    if (dbias) {
      for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) db += dout[((size_t)b * T + t) * D + d];
      dbias[d] += (float)db;
    }
  }
}

/* softplus(x) = log(1 + e^x), computed without overflow; torch's threshold (x > 20: x) too. */
void bwt_softplus_forward(float *out, const float *inp, size_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
  for (size_t i = 0; i < n; i++) {
    float x = inp[i];
    out[i] = x > 20.0f ? x : log1pf(expf(x));
  }
}

void bwt_softplus_backward(float *dinp, const float *dout, const float *inp, size_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
  for (size_t i = 0; i < n; i++) {
    float x = inp[i];
    dinp[i] += dout[i] * (x > 20.0f ? 1.0f : 1.0f / (1.0f + expf(-x)));
  }
}

/* The scan's work items are blocks of SCAN_BLOCK channels: row bt's states of a block are
 * contiguous (SCAN_BLOCK·N floats), whereas one channel alone would step through memory D·N floats
 * at a time, a cache miss per step that the prefetchers do not follow. The loop over the state n is
 * the hot loop (B·T·D·N exponentials), vectorised with libmvec's expf; the first step (h_{−1} = 0)
 * and the last (g_T = 0) are apart so that it has no branch. Each sum runs in the same order
 * whatever the block or thread count. */
#define SCAN_BLOCK 8

static inline void scan_step_forward(float *y, float *ht, const float *hp, const float *a, const float *Bt,
                                     const float *Ct, float dt, float x, float dskip, int N) {
  float acc = 0, dtx = dt * x;
  if (!hp) {
#pragma omp simd reduction(+ : acc)
    for (int n = 0; n < N; n++) {
      ht[n] = dtx * Bt[n];
      acc += Ct[n] * ht[n];
    }
  } else {
#pragma omp simd reduction(+ : acc)
    for (int n = 0; n < N; n++) {
      float hn = expf(dt * a[n]) * hp[n] + dtx * Bt[n];
      ht[n] = hn;
      acc += Ct[n] * hn;
    }
  }
  *y = acc + dskip * x;
}

void bwt_selective_scan_forward(float *y, float *h, const float *u, const float *delta, const float *A,
                                const float *Bm, const float *Cm, const float *Dskip, int B, int T, int D,
                                int N) {
  int blocks = (D + SCAN_BLOCK - 1) / SCAN_BLOCK;
#pragma omp parallel for collapse(2) schedule(static)
  for (int b = 0; b < B; b++)
    for (int k = 0; k < blocks; k++) {
      int d0 = k * SCAN_BLOCK, d1 = d0 + SCAN_BLOCK < D ? d0 + SCAN_BLOCK : D;
      for (int t = 0; t < T; t++) {
        size_t bt = (size_t)b * T + t;
        for (int d = d0; d < d1; d++) {
          size_t i = bt * D + d;
          float *ht = h + i * N;
          scan_step_forward(y + i, ht, t ? ht - (size_t)D * N : NULL, A + (size_t)d * N, Bm + bt * N, Cm + bt * N,
                            delta[i], u[i], Dskip ? Dskip[d] : 0.0f, N);
        }
      }
    }
}

/* One (t, d) of pass 1: g_t = dy_t C_t + exp(Δ_{t+1} A) g_{t+1} (gn = g_{t+1}, NULL at the last
 * step), then this step's sums for ∂L/∂Δ_t, ∂L/∂u_t (without the skip) and ∂L/∂A. */
static inline void scan_step_backward(float *ddt_out, float *dbx_out, float *dAd, float *gt, const float *gn,
                                      float dnext, const float *hp, const float *a, const float *Bt,
                                      const float *Ct, float dt, float x, float gy, int N) {
  float ddt = 0, dbx = 0; /* Σ g·(A·decay·h_{t−1} + B x) and Σ g·B */
  if (gn) {
#pragma omp simd
    for (int n = 0; n < N; n++) gt[n] = gy * Ct[n] + expf(dnext * a[n]) * gn[n];
  } else {
#pragma omp simd
    for (int n = 0; n < N; n++) gt[n] = gy * Ct[n];
  }
  if (hp) {
#pragma omp simd reduction(+ : ddt, dbx)
    for (int n = 0; n < N; n++) {
      float gdh = gt[n] * expf(dt * a[n]) * hp[n]; /* g · decay · h_{t−1} */
      ddt += a[n] * gdh + gt[n] * Bt[n] * x;
      dbx += gt[n] * Bt[n];
      if (dAd) dAd[n] += dt * gdh;
    }
  } else {
#pragma omp simd reduction(+ : ddt, dbx)
    for (int n = 0; n < N; n++) {
      ddt += gt[n] * Bt[n] * x;
      dbx += gt[n] * Bt[n];
    }
  }
  *ddt_out = ddt, *dbx_out = dbx;
}

void bwt_selective_scan_backward(float *du, float *ddelta, float *dA, float *dB, float *dC, float *dD, float *g,
                                 const float *dy, const float *h, const float *u, const float *delta,
                                 const float *A, const float *Bm, const float *Cm, const float *Dskip, int B,
                                 int T, int D, int N) {
  /* Pass 1, per block of channels (it owns du, ddelta, dA, dD there), backwards through time;
   * g = ∂L/∂h is kept for pass 2. */
  int blocks = (D + SCAN_BLOCK - 1) / SCAN_BLOCK;
#pragma omp parallel for schedule(static)
  for (int k = 0; k < blocks; k++) {
    int d0 = k * SCAN_BLOCK, d1 = d0 + SCAN_BLOCK < D ? d0 + SCAN_BLOCK : D;
    double dskip[SCAN_BLOCK] = {0};
    for (int b = 0; b < B; b++)
      for (int t = T - 1; t >= 0; t--) {
        size_t bt = (size_t)b * T + t;
        for (int d = d0; d < d1; d++) {
          size_t i = bt * D + d;
          float *gt = g + i * N, ddt, dbx, gy = dy[i], x = u[i];
          const float *ht = h + i * N;
          scan_step_backward(&ddt, &dbx, dA ? dA + (size_t)d * N : NULL, gt, t + 1 < T ? gt + (size_t)D * N : NULL,
                             t + 1 < T ? delta[i + D] : 0.0f, t ? ht - (size_t)D * N : NULL, A + (size_t)d * N,
                             Bm + bt * N, Cm + bt * N, delta[i], x, gy, N);
          if (ddelta) ddelta[i] += ddt;
          if (du) du[i] += delta[i] * dbx + (Dskip ? Dskip[d] * gy : 0.0f);
          dskip[d - d0] += (double)gy * x;
        }
      }
    for (int d = d0; d < d1 && dD; d++) dD[d] += (float)dskip[d - d0];
  }
  if (!dB && !dC) return;
  /* Pass 2, per row: dB_t = Σ_d g_t Δ_t u_t and dC_t = Σ_d dy_t h_t, summed over d in order. */
#pragma omp parallel for schedule(static)
  for (size_t bt = 0; bt < (size_t)B * T; bt++) {
    for (int d = 0; d < D; d++) {
      size_t i = bt * D + d;
      const float *gt = g + i * N, *ht = h + i * N;
      float w = delta[i] * u[i], gy = dy[i];
      if (dB) {
#pragma omp simd
        for (int n = 0; n < N; n++) dB[bt * N + n] += gt[n] * w;
      }
      if (dC) {
#pragma omp simd
        for (int n = 0; n < N; n++) dC[bt * N + n] += gy * ht[n];
      }
    }
  }
}

void bwt_ssm_decay_forward(float *A, const float *A_log, size_t n) {
  for (size_t i = 0; i < n; i++) A[i] = -expf(A_log[i]);
}

/* dA/dA_log = −exp(A_log) = A. */
void bwt_ssm_decay_backward(float *dA_log, const float *dA, const float *A, size_t n) {
  for (size_t i = 0; i < n; i++) dA_log[i] += dA[i] * A[i];
}
