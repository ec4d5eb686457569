/* Row softmax and the cross-entropy loss against hard or soft targets. */
#include <math.h>

#include "bwt/kernels.h"
#include "core/vecmath.h"

#define SOFTMAX_OMP_MIN_WORK 16384

/* probs(N,K) = softmax(logits(N,K)) row by row; the row max is subtracted first, so logits of any
 * finite size are safe. NaN in a row makes that row NaN. */
void bwt_softmax_forward(float *probs, const float *logits, int N, int K) {
#pragma omp parallel for schedule(static) if ((long)N * K >= SOFTMAX_OMP_MIN_WORK)
  for (int n = 0; n < N; n++) {
    const float *x = logits + (size_t)n * K;
    float *p = probs + (size_t)n * K;
    float mx = -INFINITY;
    for (int j = 0; j < K; j++)
      if (!(x[j] <= mx)) mx = x[j]; /* a NaN logit becomes the max and poisons the row */
#pragma omp simd
    for (int j = 0; j < K; j++) p[j] = expf(x[j] - mx);
    double sum = 0.0;
    for (int j = 0; j < K; j++) sum += p[j];
    float inv = (float)(1.0 / sum);
    for (int j = 0; j < K; j++) p[j] *= inv;
  }
}

/* Mean over N rows of −log p[target] (hard) or −Σ_k soft[k] log p[k] (soft; 0·log 0 = 0), with
 * log p = logit − logsumexp(logits) in double: finite for any finite logits, where −log of a float
 * probability that underflowed to 0 would be infinite (logit gaps beyond 87 do occur, e.g. under
 * PyTorch's N(0, 1) embeddings with a tied head). Summed in row order. An out-of-range target gives
 * NaN so the caller's NaN check reports it instead of reading out of bounds. */
double bwt_xent_loss(const float *logits, const int32_t *targets, const double *soft, int N, int K) {
  double total = 0.0;
  for (int n = 0; n < N; n++) {
    const float *x = logits + (size_t)n * K;
    double mx = -INFINITY, z = 0.0;
    for (int j = 0; j < K; j++)
      if (!((double)x[j] <= mx)) mx = x[j]; /* a NaN logit poisons the row */
    for (int j = 0; j < K; j++) z += exp((double)x[j] - mx);
    double lse = mx + log(z);
    if (soft) {
      const double *y = soft + (size_t)n * K;
      for (int j = 0; j < K; j++)
        if (y[j] != 0.0) total -= y[j] * ((double)x[j] - lse);
    } else {
      int32_t c = targets[n];
      if (c < 0 || c >= K) return NAN;
      total -= (double)x[c] - lse;
    }
  }
  return N > 0 ? total / N : 0.0;
}

/* dlogits(N,K) += scale · (probs − y). An out-of-range hard target adds no one-hot (the loss has
 * already reported it as NaN). */
void bwt_xent_backward(float *dlogits, const float *probs, const int32_t *targets,
                       const double *soft, float scale, int N, int K) {
#pragma omp parallel for schedule(static) if ((long)N * K >= SOFTMAX_OMP_MIN_WORK)
  for (int n = 0; n < N; n++) {
    const float *p = probs + (size_t)n * K;
    float *d = dlogits + (size_t)n * K;
    int32_t c = soft ? -1 : targets[n];
    for (int j = 0; j < K; j++) {
      double y = soft ? soft[(size_t)n * K + j] : (double)(j == c);
      d[j] += (float)(scale * ((double)p[j] - y));
    }
  }
}
