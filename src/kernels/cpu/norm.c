/* RMSNorm and LayerNorm over the last dimension (C), eps 1e-5.
 *
 * Row statistics are accumulated in double and saved as float; the backward reuses exactly the
 * saved rstd/mean. Input gradients are parallel over rows (each row is independent); weight and
 * bias gradients are reductions over rows, so they are split by channel block instead and every
 * block sums the rows in order: bit-identical results for any thread count. */
#include <math.h>

#include "bwt/kernels.h"

#define NORM_EPS 1e-5
#define NORM_OMP_MIN_WORK 16384
#define NORM_CHANNEL_BLOCK 16

/* out(N,C) = inp(N,C) · rstd · weight(C); rstd(N) = 1/sqrt(mean(inp²) + eps). */
void bwt_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int N,
                         int C) {
#pragma omp parallel for schedule(static) if ((long)N * C >= NORM_OMP_MIN_WORK)
  for (int n = 0; n < N; n++) {
    const float *x = inp + (size_t)n * C;
    float *o = out + (size_t)n * C;
    double ss = 0.0;
    for (int c = 0; c < C; c++) ss += (double)x[c] * x[c];
    float r = (float)(1.0 / sqrt(ss / C + NORM_EPS));
    for (int c = 0; c < C; c++) o[c] = x[c] * r * weight[c];
    rstd[n] = r;
  }
}

/* With out_i = x_i r w_i and r = (mean(x²)+eps)^-1/2:
 *   dx_i = r w_i g_i − r³ x_i · (Σ_j g_j w_j x_j) / C,   dw_i = Σ_rows g_i x_i r. */
void bwt_rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                          const float *weight, const float *rstd, int N, int C) {
  int parallel = (long)N * C >= NORM_OMP_MIN_WORK;
  if (dinp) {
#pragma omp parallel for schedule(static) if (parallel)
    for (int n = 0; n < N; n++) {
      const float *x = inp + (size_t)n * C, *g = dout + (size_t)n * C;
      float *dx = dinp + (size_t)n * C;
      float r = rstd[n];
      double dot = 0.0;
      for (int c = 0; c < C; c++) dot += (double)g[c] * weight[c] * x[c];
      float coef = (float)((double)r * r * r * dot / C);
      for (int c = 0; c < C; c++) dx[c] += r * weight[c] * g[c] - coef * x[c];
    }
  }
  if (dweight) {
    int nblocks = (C + NORM_CHANNEL_BLOCK - 1) / NORM_CHANNEL_BLOCK;
#pragma omp parallel for schedule(static) if (parallel)
    for (int blk = 0; blk < nblocks; blk++) {
      int c0 = blk * NORM_CHANNEL_BLOCK;
      int nc = C - c0 < NORM_CHANNEL_BLOCK ? C - c0 : NORM_CHANNEL_BLOCK;
      double acc[NORM_CHANNEL_BLOCK] = {0};
      for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C + c0, *g = dout + (size_t)n * C + c0;
        float r = rstd[n];
        for (int j = 0; j < nc; j++) acc[j] += (double)g[j] * (x[j] * r);
      }
      for (int j = 0; j < nc; j++) dweight[c0 + j] += (float)acc[j];
    }
  }
}

/* out(N,C) = (inp − mean) · rstd · weight(C) + bias(C); mean(N), rstd(N) saved. */
void bwt_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                           const float *weight, const float *bias, int N, int C) {
#pragma omp parallel for schedule(static) if ((long)N * C >= NORM_OMP_MIN_WORK)
  for (int n = 0; n < N; n++) {
    const float *x = inp + (size_t)n * C;
    float *o = out + (size_t)n * C;
    double s = 0.0;
    for (int c = 0; c < C; c++) s += x[c];
    double mu = s / C, var = 0.0;
    for (int c = 0; c < C; c++) var += ((double)x[c] - mu) * ((double)x[c] - mu);
    float m = (float)mu, r = (float)(1.0 / sqrt(var / C + NORM_EPS));
    for (int c = 0; c < C; c++) o[c] = (x[c] - m) * r * weight[c] + bias[c];
    mean[n] = m;
    rstd[n] = r;
  }
}

/* With n_i = (x_i − mean) r and dn_i = g_i w_i:
 *   dx_i = r (dn_i − mean(dn) − n_i · mean(dn ⊙ n)),
 *   dw_i = Σ_rows g_i n_i,   db_i = Σ_rows g_i. */
void bwt_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                            const float *inp, const float *weight, const float *mean,
                            const float *rstd, int N, int C) {
  int parallel = (long)N * C >= NORM_OMP_MIN_WORK;
  if (dinp) {
#pragma omp parallel for schedule(static) if (parallel)
    for (int n = 0; n < N; n++) {
      const float *x = inp + (size_t)n * C, *g = dout + (size_t)n * C;
      float *dx = dinp + (size_t)n * C;
      float m = mean[n], r = rstd[n];
      double sdn = 0.0, sdnn = 0.0;
      for (int c = 0; c < C; c++) {
        float dn = g[c] * weight[c];
        sdn += dn;
        sdnn += (double)dn * ((x[c] - m) * r);
      }
      float mdn = (float)(sdn / C), mdnn = (float)(sdnn / C);
      for (int c = 0; c < C; c++) {
        float nrm = (x[c] - m) * r;
        dx[c] += r * (g[c] * weight[c] - mdn - nrm * mdnn);
      }
    }
  }
  if (dweight || dbias) {
    int nblocks = (C + NORM_CHANNEL_BLOCK - 1) / NORM_CHANNEL_BLOCK;
#pragma omp parallel for schedule(static) if (parallel)
    for (int blk = 0; blk < nblocks; blk++) {
      int c0 = blk * NORM_CHANNEL_BLOCK;
      int nc = C - c0 < NORM_CHANNEL_BLOCK ? C - c0 : NORM_CHANNEL_BLOCK;
      double accw[NORM_CHANNEL_BLOCK] = {0}, accb[NORM_CHANNEL_BLOCK] = {0};
      for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C + c0, *g = dout + (size_t)n * C + c0;
        float m = mean[n], r = rstd[n];
        for (int j = 0; j < nc; j++) {
          accw[j] += (double)g[j] * ((x[j] - m) * r);
          accb[j] += g[j];
        }
      }
      for (int j = 0; j < nc; j++) {
        if (dweight) dweight[c0 + j] += (float)accw[j];
        if (dbias) dbias[c0 + j] += (float)accb[j];
      }
    }
  }
}
