/* GELU, exact erf form: gelu(x) = x Φ(x) = 0.5 x (1 + erf(x/√2)), gelu'(x) = Φ(x) + x φ(x). */
#include "bwt/kernels.h"
#include "core/vecmath.h"

#define GELU_OMP_MIN_WORK 16384
#define INV_SQRT2 0.70710678118654752440f
#define INV_SQRT_2PI 0.39894228040143267794f

/* out(n) = gelu(inp(n)); out may alias inp. */
void bwt_gelu_forward(float *out, const float *inp, size_t n) {
#pragma omp parallel for simd schedule(static) if (n >= GELU_OMP_MIN_WORK)
  for (size_t i = 0; i < n; i++) {
    float x = inp[i];
    out[i] = 0.5f * x * (1.0f + erff(x * INV_SQRT2));
  }
}

/* dinp(n) += dout · gelu'(inp). */
void bwt_gelu_backward(float *dinp, const float *dout, const float *inp, size_t n) {
#pragma omp parallel for simd schedule(static) if (n >= GELU_OMP_MIN_WORK)
  for (size_t i = 0; i < n; i++) {
    float x = inp[i];
    float cdf = 0.5f * (1.0f + erff(x * INV_SQRT2));
    float pdf = INV_SQRT_2PI * expf(-0.5f * x * x);
    dinp[i] += dout[i] * (cdf + x * pdf);
  }
}
