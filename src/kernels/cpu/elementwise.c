/* Element-wise ops on flat arrays: residual add, scaling, squared norm, AdamW. */
#include <math.h>

#include "bwt/kernels.h"

#define ELEM_OMP_MIN_WORK 32768

/* y(n) += x(n). */
void bwt_add_inplace(float *y, const float *x, size_t n) {
#pragma omp parallel for schedule(static) if (n >= ELEM_OMP_MIN_WORK)
  for (size_t i = 0; i < n; i++) y[i] += x[i];
}

void bwt_scale(float *x, float s, size_t n) {
#pragma omp parallel for schedule(static) if (n >= ELEM_OMP_MIN_WORK)
  for (size_t i = 0; i < n; i++) x[i] *= s;
}

void bwt_scale_heads(float *out, const float *inp, const float *head_mask, int N, int C, int NH) {
  int hs = C / NH;
  size_t n = (size_t)N * C;
#pragma omp parallel for schedule(static) if (n >= ELEM_OMP_MIN_WORK)
  for (size_t i = 0; i < n; i++) out[i] = (head_mask ? head_mask[i % C / hs] : 1.0f) * inp[i];
}

/* Σ x(n)² in double: four interleaved partial sums combined in a fixed order, single-threaded, so
 * the result never depends on the thread count. */
double bwt_sumsq(const float *x, size_t n) {
  double acc[4] = {0};
  size_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (int j = 0; j < 4; j++) acc[j] += (double)x[i + j] * x[i + j];
  for (; i < n; i++) acc[0] += (double)x[i] * x[i];
  return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}

/* PyTorch's AdamW (torch.optim.AdamW, amsgrad off), t ≥ 1:
 *   param ← param·(1 − lr·wd)
 *   m ← β1 m + (1−β1) g,  v ← β2 v + (1−β2) g²
 *   param ← param − lr · (m / (1−β1^t)) / (sqrt(v / (1−β2^t)) + eps)
 * Moments are stored as float; the bias corrections and the step are computed in double. */
void bwt_adamw_update(float *param, const float *grad, float *m, float *v, size_t n, float lr,
                      float beta1, float beta2, float eps, float weight_decay, int t) {
  double bc1 = 1.0 - pow((double)beta1, t), bc2 = 1.0 - pow((double)beta2, t);
  double decay = 1.0 - (double)lr * weight_decay;
#pragma omp parallel for schedule(static) if (n >= ELEM_OMP_MIN_WORK)
  for (size_t i = 0; i < n; i++) {
    float g = grad[i];
    float mi = beta1 * m[i] + (1.0f - beta1) * g;
    float vi = beta2 * v[i] + (1.0f - beta2) * (g * g);
    m[i] = mi;
    v[i] = vi;
    double mhat = mi / bc1, vhat = vi / bc2;
    param[i] = (float)(param[i] * decay - lr * mhat / (sqrt(vhat) + eps));
  }
}
