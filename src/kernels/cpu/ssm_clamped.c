/* The reference repository's "simplified Mamba" (experiments/paper1_{bijection,hmm}/train_mamba.py): step sizes
 * clamped after the softplus, one decay per state shared by every channel, and a scan whose decay,
 * update and state are clamped for stability. Each clamp passes the gradient where its input lies
 * within the bounds, ends included, as torch.clamp does; the backward recomputes the clamped
 * quantities from the saved states rather than storing them. Sums run in a fixed order whatever the
 * thread count, as in ssm.c. */
#include <math.h>

#include "bwt/kernels.h"
#include "core/vecmath.h"

#define SCAN_DECAY_MIN (-20.0f) /* exp(clamp(Δ·A, −20, 0)) */
#define SCAN_UPDATE_MAX 10.0f   /* clamp(Δ·B·u, ±10) */
#define SCAN_STATE_MAX 100.0f   /* clamp(h, ±100) */

static inline float clampf(float x, float lo, float hi) { return x < lo ? lo : x > hi ? hi : x; }
static inline float within(float x, float lo, float hi) { return x >= lo && x <= hi ? 1.0f : 0.0f; }
static inline float softplus(float x) { return x > 20.0f ? x : log1pf(expf(x)); }

void bwt_softplus_clamp_forward(float *out, const float *inp, float lo, float hi, size_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
  for (size_t i = 0; i < n; i++) out[i] = clampf(softplus(inp[i]), lo, hi);
}

void bwt_softplus_clamp_backward(float *dinp, const float *dout, const float *inp, float lo, float hi, size_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
  for (size_t i = 0; i < n; i++) {
    float x = inp[i], slope = x > 20.0f ? 1.0f : 1.0f / (1.0f + expf(-x));
    dinp[i] += dout[i] * slope * within(softplus(x), lo, hi);
  }
}

void bwt_ssm_shared_decay_forward(float *A, const float *A_log, float max, int D, int N) {
  for (int d = 0; d < D; d++)
    for (int n = 0; n < N; n++) A[(size_t)d * N + n] = -expf(fminf(A_log[n], max));
}

/* dA_log[n] += Σ_d dA[d,n] · A[d,n] where A_log[n] ≤ max, summed over d in order. */
void bwt_ssm_shared_decay_backward(float *dA_log, const float *dA, const float *A_log, const float *A, float max,
                                   int D, int N) {
  for (int n = 0; n < N; n++) {
    if (A_log[n] > max) continue;
    double s = 0;
    for (int d = 0; d < D; d++) s += (double)dA[(size_t)d * N + n] * A[(size_t)d * N + n];
    dA_log[n] += (float)s;
  }
}

void bwt_ssm_skip_forward(float *out, const float *x, const float *scale, int rows, int D) {
#pragma omp parallel for schedule(static) if ((size_t)rows * D > 65536)
  for (int r = 0; r < rows; r++)
    for (int d = 0; d < D; d++) out[(size_t)r * D + d] += scale[d] * x[(size_t)r * D + d];
}

void bwt_ssm_skip_backward(float *dx, float *dscale, const float *dout, const float *x, const float *scale, int rows,
                           int D) {
  if (dx) {
#pragma omp parallel for schedule(static) if ((size_t)rows * D > 65536)
    for (int r = 0; r < rows; r++)
      for (int d = 0; d < D; d++) dx[(size_t)r * D + d] += scale[d] * dout[(size_t)r * D + d];
  }
  if (!dscale) return;
#pragma omp parallel for schedule(static)
  for (int d = 0; d < D; d++) {
    double s = 0;
    for (int r = 0; r < rows; r++) s += (double)dout[(size_t)r * D + d] * x[(size_t)r * D + d];
    dscale[d] += (float)s;
  }
}

/* Channels are taken in blocks of SCAN_BLOCK, whose states are contiguous in each row (as in ssm.c);
 * the loop over the state is vectorised (libmvec's expf). */
#define SCAN_BLOCK 8

/* One step of one channel: ht = clamp(exp(clamp(Δ a, −20, 0)) hp + clamp(Δ B x, ±10), ±100), y = Σ C ht.
 * The update is formed as (Δ·B)·x, the reference's order. */
static inline float step_forward(float *ht, const float *hp, const float *a, const float *Bt, const float *Ct,
                                 float dt, float x, int N) {
  float acc = 0;
  if (!hp) {
#pragma omp simd reduction(+ : acc)
    for (int n = 0; n < N; n++) {
      ht[n] = clampf(clampf(dt * Bt[n] * x, -SCAN_UPDATE_MAX, SCAN_UPDATE_MAX), -SCAN_STATE_MAX, SCAN_STATE_MAX);
      acc += Ct[n] * ht[n];
    }
    return acc;
  }
#pragma omp simd reduction(+ : acc)
  for (int n = 0; n < N; n++) {
    float upd = clampf(dt * Bt[n] * x, -SCAN_UPDATE_MAX, SCAN_UPDATE_MAX);
    float pre = expf(clampf(dt * a[n], SCAN_DECAY_MIN, 0.0f)) * hp[n] + upd;
    ht[n] = clampf(pre, -SCAN_STATE_MAX, SCAN_STATE_MAX);
    acc += Ct[n] * ht[n];
  }
  return acc;
}

void bwt_selective_scan_clamped_forward(float *y, float *h, const float *u, const float *delta, const float *A,
                                        const float *Bm, const float *Cm, int B, int T, int D, int N) {
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
          y[i] = step_forward(ht, t ? ht - (size_t)D * N : NULL, A + (size_t)d * N, Bm + bt * N, Cm + bt * N,
                              delta[i], u[i], N);
        }
      }
    }
}

/* One (t, d) of pass 1, backwards through time: gp_t = ∂L/∂(the state before its clamp) into gp (kept
 * for pass 2), from g_{t+1}'s gpn (NULL at the last step) decayed by Δ_{t+1}; this step's sums for
 * ∂L/∂Δ_t and ∂L/∂u_t, and its part of ∂L/∂A. */
static inline void step_backward(float *ddt_out, float *dx_out, float *dAd, float *gp, const float *gpn, float dtn,
                                 const float *hp, const float *a, const float *Bt, const float *Ct, float dt, float x,
                                 float gy, int N) {
  float ddt = 0, dx = 0;
#pragma omp simd reduction(+ : ddt, dx)
  for (int n = 0; n < N; n++) {
    float gh = gy * Ct[n] + (gpn ? expf(clampf(dtn * a[n], SCAN_DECAY_MIN, 0.0f)) * gpn[n] : 0.0f);
    float upd_raw = dt * Bt[n] * x, upd = clampf(upd_raw, -SCAN_UPDATE_MAX, SCAN_UPDATE_MAX);
    float w = dt * a[n], decay = expf(clampf(w, SCAN_DECAY_MIN, 0.0f)), hprev = hp ? hp[n] : 0.0f;
    float pre = hp ? decay * hprev + upd : upd;
    float g = gh * within(pre, -SCAN_STATE_MAX, SCAN_STATE_MAX);
    gp[n] = g;
    float gw = g * hprev * decay * within(w, SCAN_DECAY_MIN, 0.0f); /* zero at the first step */
    float gu = g * within(upd_raw, -SCAN_UPDATE_MAX, SCAN_UPDATE_MAX);
    ddt += gw * a[n] + gu * Bt[n] * x;
    dx += gu * dt * Bt[n];
    if (dAd) dAd[n] += gw * dt;
  }
  *ddt_out = ddt, *dx_out = dx;
}

void bwt_selective_scan_clamped_backward(float *du, float *ddelta, float *dA, float *dB, float *dC, float *g,
                                         const float *dy, const float *h, const float *u, const float *delta,
                                         const float *A, const float *Bm, const float *Cm, int B, int T, int D,
                                         int N) {
  /* Pass 1, per block of channels (it owns du, ddelta and dA there); the batch runs in order inside. */
  int blocks = (D + SCAN_BLOCK - 1) / SCAN_BLOCK;
#pragma omp parallel for schedule(static)
  for (int k = 0; k < blocks; k++) {
    int d0 = k * SCAN_BLOCK, d1 = d0 + SCAN_BLOCK < D ? d0 + SCAN_BLOCK : D;
    for (int b = 0; b < B; b++)
      for (int t = T - 1; t >= 0; t--) {
        size_t bt = (size_t)b * T + t;
        for (int d = d0; d < d1; d++) {
          size_t i = bt * D + d;
          float ddt, dx, *gp = g + i * N;
          step_backward(&ddt, &dx, dA ? dA + (size_t)d * N : NULL, gp, t + 1 < T ? gp + (size_t)D * N : NULL,
                        t + 1 < T ? delta[i + D] : 0.0f, t ? h + (i - D) * N : NULL, A + (size_t)d * N, Bm + bt * N,
                        Cm + bt * N, delta[i], u[i], dy[i], N);
          if (ddelta) ddelta[i] += ddt;
          if (du) du[i] += dx;
        }
      }
  }
  if (!dB && !dC) return;
  /* Pass 2, per row: dB_t = Σ_d gp_t Δ_t u_t (where the update was not clamped), dC_t = Σ_d dy_t h_t. */
#pragma omp parallel for schedule(static)
  for (size_t bt = 0; bt < (size_t)B * T; bt++)
    for (int d = 0; d < D; d++) {
      size_t i = bt * D + d;
      const float *gp = g + i * N, *ht = h + i * N, *Bt = Bm + bt * N;
      float dt = delta[i], x = u[i];
      if (dB) {
#pragma omp simd
        for (int n = 0; n < N; n++)
          dB[bt * N + n] += gp[n] * dt * x * within(dt * Bt[n] * x, -SCAN_UPDATE_MAX, SCAN_UPDATE_MAX);
      }
      if (dC) {
#pragma omp simd
        for (int n = 0; n < N; n++) dC[bt * N + n] += dy[i] * ht[n];
      }
    }
}
