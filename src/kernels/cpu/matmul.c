/* Linear layer: out = inp · weightᵀ + bias, weight stored (OC, IC) like torch.nn.Linear.
 *
 * The fast path is one SGEMM per product (OpenBLAS splits M and N across its own threads, never
 * the reduction dimension, so a fixed thread count gives fixed results). BLAS is never called from
 * inside an OpenMP region. */
#include <cblas.h>
#include <string.h>

#include "bwt/kernels.h"

/* Below this many output elements a parallel region costs more than it saves. */
#define MATMUL_OMP_MIN_WORK 16384
/* Bias gradients are summed over this many columns at a time. */
#define BIAS_BLOCK 64

/* out(N,OC) = inp(N,IC) · weight(OC,IC)ᵀ + bias(OC). */
void bwt_matmul_forward(float *out, const float *inp, const float *weight, const float *bias, int N,
                        int IC, int OC) {
  if (N <= 0 || OC <= 0) return;
  /* Seed out with the bias (or zero) so a single SGEMM with beta = 1 adds the product to it. */
#pragma omp parallel for schedule(static) if ((long)N * OC >= MATMUL_OMP_MIN_WORK)
  for (int n = 0; n < N; n++) {
    float *row = out + (size_t)n * OC;
    if (bias)
      memcpy(row, bias, sizeof(float) * (size_t)OC);
    else
      memset(row, 0, sizeof(float) * (size_t)OC);
  }
  if (IC <= 0) return; /* an empty product: out is just the bias */
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, IC, 1.0f, inp, IC, weight, IC, 1.0f,
              out, OC);
}

/* The oracle: plain loops, one dot product per output, accumulated in double. */
void bwt_matmul_forward_naive(float *out, const float *inp, const float *weight, const float *bias,
                              int N, int IC, int OC) {
  for (int n = 0; n < N; n++) {
    const float *x = inp + (size_t)n * IC;
    for (int o = 0; o < OC; o++) {
      const float *w = weight + (size_t)o * IC;
      double acc = bias ? bias[o] : 0.0;
      for (int i = 0; i < IC; i++) acc += (double)x[i] * w[i];
      out[(size_t)n * OC + o] = (float)acc;
    }
  }
}

/* dinp(N,IC) += dout(N,OC)·weight(OC,IC);  dweight(OC,IC) += doutᵀ·inp(N,IC);
 * dbias(OC) += Σ_n dout. */
void bwt_matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                         const float *inp, const float *weight, int N, int IC, int OC) {
  if (N <= 0 || OC <= 0) return;
  if (IC > 0 && dinp)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, IC, OC, 1.0f, dout, OC, weight, IC,
                1.0f, dinp, IC);
  if (IC > 0 && dweight)
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, IC, N, 1.0f, dout, OC, inp, IC, 1.0f,
                dweight, IC);
  if (dbias) {
    /* Column blocks summed row by row in double: the same order for any thread count, and each
     * row's block is read contiguously. */
    int n_blocks = (OC + BIAS_BLOCK - 1) / BIAS_BLOCK;
#pragma omp parallel for schedule(static) if ((long)N * OC >= MATMUL_OMP_MIN_WORK && n_blocks > 1)
    for (int blk = 0; blk < n_blocks; blk++) {
      int o0 = blk * BIAS_BLOCK, w = OC - o0 < BIAS_BLOCK ? OC - o0 : BIAS_BLOCK;
      double acc[BIAS_BLOCK] = {0};
      for (int n = 0; n < N; n++) {
        const float *row = dout + (size_t)n * OC + o0;
        for (int j = 0; j < w; j++) acc[j] += row[j];
      }
      for (int j = 0; j < w; j++) dbias[o0 + j] += (float)acc[j];
    }
  }
}
