/* State-space ops of Mamba (Gu & Dao 2023): the causal depthwise convolution, softplus for the step
 * sizes, and the selective scan. Every loop that sums runs in a fixed order whatever the thread
 * count: work is split over channels or rows, never over the summed index. */
#include <math.h>

#include "bwt/kernels.h"

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

void bwt_selective_scan_forward(float *y, float *h, const float *u, const float *delta, const float *A,
                                const float *Bm, const float *Cm, const float *Dskip, int B, int T, int D,
                                int N) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int b = 0; b < B; b++)
    for (int d = 0; d < D; d++) {
      const float *a = A + (size_t)d * N;
      for (int t = 0; t < T; t++) {
        size_t bt = (size_t)b * T + t;
        float dt = delta[bt * D + d], x = u[bt * D + d];
        const float *Bt = Bm + bt * N, *Ct = Cm + bt * N;
        float *ht = h + (bt * D + d) * N;
        const float *hp = t ? ht - (size_t)D * N : NULL; /* h_{t−1} of this channel */
        float acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int n = 0; n < N; n++) {
          float hn = (hp ? expf(dt * a[n]) * hp[n] : 0.0f) + dt * Bt[n] * x;
          ht[n] = hn;
          acc += Ct[n] * hn;
        }
        y[bt * D + d] = acc + (Dskip ? Dskip[d] * x : 0.0f);
      }
    }
}

void bwt_selective_scan_backward(float *du, float *ddelta, float *dA, float *dB, float *dC, float *dD, float *g,
                                 const float *dy, const float *h, const float *u, const float *delta,
                                 const float *A, const float *Bm, const float *Cm, const float *Dskip, int B,
                                 int T, int D, int N) {
  /* Pass 1, per channel (it owns du, ddelta, dA, dD there): g_t = ∂L/∂h_t backwards through time,
   * g_t = dy_t C_t + exp(Δ_{t+1} A) g_{t+1}, kept for pass 2. */
#pragma omp parallel for schedule(static)
  for (int d = 0; d < D; d++) {
    const float *a = A + (size_t)d * N;
    double dskip = 0;
    for (int b = 0; b < B; b++) {
      for (int t = T - 1; t >= 0; t--) {
        size_t bt = (size_t)b * T + t, i = bt * D + d;
        float dt = delta[i], x = u[i], gy = dy[i];
        const float *Bt = Bm + bt * N, *Ct = Cm + bt * N, *ht = h + i * N;
        const float *hp = t ? ht - (size_t)D * N : NULL;
        float *gt = g + i * N;
        const float *gn = t + 1 < T ? gt + (size_t)D * N : NULL; /* g_{t+1} */
        float dnext = t + 1 < T ? delta[i + D] : 0.0f;
        float ddt = 0, dx = 0;
        for (int n = 0; n < N; n++) {
          float gv = gy * Ct[n] + (gn ? expf(dnext * a[n]) * gn[n] : 0.0f);
          gt[n] = gv;
          float decay = hp ? expf(dt * a[n]) : 0.0f, prev = hp ? hp[n] : 0.0f;
          ddt += gv * (a[n] * decay * prev + Bt[n] * x);
          dx += gv * dt * Bt[n];
          if (dA) dA[(size_t)d * N + n] += gv * dt * decay * prev;
        }
        if (ddelta) ddelta[i] += ddt;
        if (du) du[i] += dx + (Dskip ? Dskip[d] * gy : 0.0f);
        dskip += (double)gy * x;
      }
    }
    if (dD) dD[d] += (float)dskip;
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
