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
