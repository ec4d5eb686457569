/* The other training objectives on a softmax readout (bwt train --loss): the squared error of the
 * predicted distribution, and REINFORCE on sampled answers. Cross-entropy is softmax_xent.c's. */
#include <math.h>

#include "bwt/kernels.h"
#include "bwt/rng.h"

#define LOSS_OMP_MIN_WORK 16384

/* The target of row n as a distribution: soft's row, or the one-hot of targets[n] (-1: none). */
static double target_at(const int32_t *targets, const double *soft, int n, int K, int k) {
  return soft ? soft[(size_t)n * K + k] : (double)(targets[n] == k);
}

double bwt_mse_loss(const float *probs, const int32_t *targets, const double *soft, int N, int K) {
  double total = 0.0;
  for (int n = 0; n < N; n++) {
    if (!soft && (targets[n] < 0 || targets[n] >= K)) return NAN;
    for (int k = 0; k < K; k++) {
      double e = (double)probs[(size_t)n * K + k] - target_at(targets, soft, n, K, k);
      total += e * e;
    }
  }
  return N > 0 ? total / N : 0.0;
}

/* With g_k = 2(p_k − y_k), the softmax Jacobian gives ∂/∂z_j = p_j (g_j − Σ_k p_k g_k). */
void bwt_mse_backward(float *dlogits, const float *probs, const int32_t *targets, const double *soft, float scale, int N, int K) {
#pragma omp parallel for schedule(static) if ((long)N * K >= LOSS_OMP_MIN_WORK)
  for (int n = 0; n < N; n++) {
    const float *p = probs + (size_t)n * K;
    double pg = 0.0;
    for (int k = 0; k < K; k++) pg += (double)p[k] * 2.0 * ((double)p[k] - target_at(targets, soft, n, K, k));
    for (int j = 0; j < K; j++) {
      double g = 2.0 * ((double)p[j] - target_at(targets, soft, n, K, j));
      dlogits[(size_t)n * K + j] += (float)(scale * (double)p[j] * (g - pg));
    }
  }
}

void bwt_sample_rows(int32_t *out, const float *probs, int N, int K, uint64_t seed, uint64_t first_row) {
  for (int n = 0; n < N; n++) {
    bwt_rng rng;
    bwt_rng_seed(&rng, seed, first_row + (uint64_t)n);
    double u = bwt_rng_uniform(&rng), c = 0.0;
    const float *p = probs + (size_t)n * K;
    int k = 0;
    while (k < K - 1 && (c += p[k]) <= u) k++; /* the last class takes what rounding leaves */
    out[n] = k;
  }
}

void bwt_pg_rewards(double *reward, double *expected, const float *probs, const int32_t *actions, const int32_t *targets,
                    const double *soft, int N, int K) {
  for (int n = 0; n < N; n++) {
    const float *p = probs + (size_t)n * K;
    reward[n] = target_at(targets, soft, n, K, actions[n]);
    double e = 0.0;
    for (int k = 0; k < K; k++) e += (double)p[k] * target_at(targets, soft, n, K, k);
    expected[n] = e;
  }
}

/* The surrogate −weight_n · log p_n[a_n] has ∂/∂z_j = weight_n (p_j − [j = a_n]). */
void bwt_pg_backward(float *dlogits, const float *probs, const int32_t *actions, const double *weights, float scale, int N, int K) {
#pragma omp parallel for schedule(static) if ((long)N * K >= LOSS_OMP_MIN_WORK)
  for (int n = 0; n < N; n++) {
    if (weights[n] == 0.0) continue;
    for (int j = 0; j < K; j++)
      dlogits[(size_t)n * K + j] += (float)(scale * weights[n] * ((double)probs[(size_t)n * K + j] - (double)(j == actions[n])));
  }
}
