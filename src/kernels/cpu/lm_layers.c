/* Two more language-model ops: LayerNorm with the model's own eps (GPT-2, GPT-NeoX, Phi), and the
 * linear layer of weights stored (in, out), as GPT-2's Conv1D keeps them: used in place from the
 * mapped file, no transposed copy. */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "bwt/kernels.h"

#define LAYERS_OMP_MIN_WORK 16384

/* As bwt_layernorm_forward (mean and variance in double), with eps given; weight NULL: neither
 * weight nor bias, the normalised input alone (TransformerLens's hook_normalized). */
void bwt_layernorm_eps_forward(float *out, const float *inp, const float *weight, const float *bias,
                               float eps, int N, int C) {
#pragma omp parallel for schedule(static) if ((long)N * C >= LAYERS_OMP_MIN_WORK)
  for (int n = 0; n < N; n++) {
    const float *x = inp + (size_t)n * C;
    float *o = out + (size_t)n * C;
    double s = 0.0;
    for (int c = 0; c < C; c++) s += x[c];
    double mu = s / C, var = 0.0;
    for (int c = 0; c < C; c++) var += ((double)x[c] - mu) * ((double)x[c] - mu);
    float m = (float)mu, r = (float)(1.0 / sqrt(var / C + eps));
    for (int c = 0; c < C; c++) {
      float v = (x[c] - m) * r;
      o[c] = weight ? v * weight[c] + (bias ? bias[c] : 0.0f) : v;
    }
  }
}

/* out(N,OC) = inp(N,IC) · weight(IC,OC) + bias(OC): one SGEMM, no transpose of the weight. */
void bwt_matmul_in_out_forward(float *out, const float *inp, const float *weight, const float *bias,
                               int N, int IC, int OC) {
  if (N <= 0 || OC <= 0) return;
#pragma omp parallel for schedule(static) if ((long)N * OC >= LAYERS_OMP_MIN_WORK)
  for (int n = 0; n < N; n++) {
    float *row = out + (size_t)n * OC;
    if (bias)
      memcpy(row, bias, sizeof(float) * (size_t)OC);
    else
      memset(row, 0, sizeof(float) * (size_t)OC);
  }
  if (IC <= 0) return;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, OC, IC, 1.0f, inp, IC, weight, OC, 1.0f,
              out, OC);
}

/* The saved statistics bwt_layernorm_backward reads, recomputed as the forward makes them. */
void bwt_layernorm_eps_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                                const float *weight, float eps, float *mean, float *rstd, int N, int C) {
  for (int n = 0; n < N; n++) {
    const float *x = inp + (size_t)n * C;
    double s = 0.0;
    for (int c = 0; c < C; c++) s += x[c];
    double mu = s / C, var = 0.0;
    for (int c = 0; c < C; c++) var += ((double)x[c] - mu) * ((double)x[c] - mu);
    mean[n] = (float)mu;
    rstd[n] = (float)(1.0 / sqrt(var / C + eps));
  }
  bwt_layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C);
}

/* dinp(N,IC) += dout(N,OC)·weight(IC,OC)ᵀ;  dweight(IC,OC) += inpᵀ·dout;  dbias(OC) += Σ_n dout. */
void bwt_matmul_in_out_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                                const float *weight, int N, int IC, int OC) {
  if (N <= 0 || OC <= 0 || IC <= 0) return;
  if (dinp)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, IC, OC, 1.0f, dout, OC, weight, OC, 1.0f, dinp, IC);
  if (dweight)
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, IC, OC, N, 1.0f, inp, IC, dout, OC, 1.0f, dweight, OC);
  if (dbias)
    for (int o = 0; o < OC; o++) {
      double acc = 0.0;
      for (int n = 0; n < N; n++) acc += dout[(size_t)n * OC + o];
      dbias[o] += (float)acc;
    }
}
