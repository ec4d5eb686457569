/* The language models' pointwise ops: the SiLU-gated MLP activation (Llama, Mistral), GELU in its
 * tanh form (GPT-2, NeoX, Phi), and RMSNorm with the model's own eps. */
#include <math.h>

#include "bwt/kernels.h"
#include "core/vecmath.h"

#define LM_OMP_MIN_WORK 16384
#define SQRT_2_OVER_PI 0.79788456080286535588f
#define GELU_CUBIC 0.044715f

/* out = silu(gate) · up, silu(g) = g σ(g); out may alias either input. */
void bwt_swiglu_forward(float *out, const float *gate, const float *up, size_t n) {
#pragma omp parallel for simd schedule(static) if (n >= LM_OMP_MIN_WORK)
  for (size_t i = 0; i < n; i++) {
    float g = gate[i];
    out[i] = g / (1.0f + expf(-g)) * up[i];
  }
}

/* silu'(g) = σ(g) (1 + g (1 − σ(g))). */
void bwt_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
                         const float *up, size_t n) {
#pragma omp parallel for simd schedule(static) if (n >= LM_OMP_MIN_WORK)
  for (size_t i = 0; i < n; i++) {
    float g = gate[i], sig = 1.0f / (1.0f + expf(-g));
    if (dgate) dgate[i] += dout[i] * up[i] * sig * (1.0f + g * (1.0f - sig));
    if (dup) dup[i] += dout[i] * g * sig;
  }
}

/* gelu_tanh(x) = 0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³))). */
void bwt_gelu_tanh_forward(float *out, const float *inp, size_t n) {
#pragma omp parallel for schedule(static) if (n >= LM_OMP_MIN_WORK)
  for (size_t i = 0; i < n; i++) {
    float x = inp[i];
    out[i] = 0.5f * x * (1.0f + tanhf(SQRT_2_OVER_PI * (x + GELU_CUBIC * x * x * x)));
  }
}

/* With u = √(2/π)(x + 0.044715 x³): d/dx = 0.5 (1 + tanh u) + 0.5 x (1 − tanh² u) u'. */
void bwt_gelu_tanh_backward(float *dinp, const float *dout, const float *inp, size_t n) {
#pragma omp parallel for schedule(static) if (n >= LM_OMP_MIN_WORK)
  for (size_t i = 0; i < n; i++) {
    float x = inp[i], th = tanhf(SQRT_2_OVER_PI * (x + GELU_CUBIC * x * x * x));
    float du = SQRT_2_OVER_PI * (1.0f + 3.0f * GELU_CUBIC * x * x);
    dinp[i] += dout[i] * (0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * du);
  }
}

/* As bwt_rmsnorm_forward (mean of squares in double), with eps given and weight optional. */
void bwt_rmsnorm_eps_forward(float *out, float *rstd, const float *inp, const float *weight,
                             float eps, int N, int C) {
#pragma omp parallel for schedule(static) if ((long)N * C >= LM_OMP_MIN_WORK)
  for (int n = 0; n < N; n++) {
    const float *x = inp + (size_t)n * C;
    float *o = out + (size_t)n * C;
    double ss = 0.0;
    for (int c = 0; c < C; c++) ss += (double)x[c] * x[c];
    float r = (float)(1.0 / sqrt(ss / C + eps));
    for (int c = 0; c < C; c++) o[c] = weight ? x[c] * r * weight[c] : x[c] * r;
    if (rstd) rstd[n] = r;
  }
}
