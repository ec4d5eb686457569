/* SiLU, x·σ(x): Mamba's activation after its convolution. */
#include <math.h>

#include "bwt/kernels.h"
#include "core/vecmath.h"

static inline float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

void bwt_silu_forward(float *out, const float *inp, size_t n) {
#pragma omp parallel for simd schedule(static) if (n > 65536)
  for (size_t i = 0; i < n; i++) out[i] = inp[i] * sigmoid(inp[i]);
}

/* d/dx x·σ(x) = σ(x)·(1 + x·(1 − σ(x))). */
void bwt_silu_backward(float *dinp, const float *dout, const float *inp, size_t n) {
#pragma omp parallel for simd schedule(static) if (n > 65536)
  for (size_t i = 0; i < n; i++) {
    float s = sigmoid(inp[i]);
    dinp[i] += dout[i] * s * (1.0f + inp[i] * (1.0f - s));
  }
}
