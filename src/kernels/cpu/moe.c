/* Mixture-of-experts routing: top-k choice, gates, the load-balancing loss and the gated combine of
 * the experts' outputs (docs/moe.md). The router's arrays are (N,E) with E <= 64: sums run in
 * double, in row order, so results do not depend on the thread count. */
#include <math.h>

#include "bwt/kernels.h"

void bwt_moe_route_forward(float *probs, int32_t *expert, float *gate, const float *logits, int N, int E, int k) {
  bwt_softmax_forward(probs, logits, N, E);
  for (int n = 0; n < N; n++) {
    const float *r = logits + (size_t)n * E;
    int32_t *ch = expert + (size_t)n * k;
    for (int s = 0; s < k; s++) { /* strict > scanning upwards: a tie keeps the lower index */
      int best = -1;
      for (int e = 0; e < E; e++)
        if ((s == 0 || e != ch[0]) && (best < 0 || r[e] > r[best])) best = e;
      ch[s] = best;
    }
    float *g = gate + (size_t)n * k;
    if (k == 1) {
      g[0] = probs[(size_t)n * E + ch[0]];
    } else { /* softmax over the two chosen logits */
      g[0] = (float)(1.0 / (1.0 + exp((double)r[ch[1]] - r[ch[0]])));
      g[1] = 1.0f - g[0];
    }
  }
}

double bwt_moe_balance_loss(float *coef, const float *probs, const int32_t *expert, double weight, int N, int E, int k) {
  double f[64] = {0}, P[64] = {0}, loss = 0;
  for (int n = 0; n < N; n++) {
    f[expert[(size_t)n * k]] += 1.0;
    for (int e = 0; e < E; e++) P[e] += probs[(size_t)n * E + e];
  }
  for (int e = 0; e < E; e++) {
    f[e] /= N, P[e] /= N;
    loss += f[e] * P[e];
    if (coef) coef[e] = (float)(weight * E * f[e] / N);
  }
  return weight * E * loss;
}

void bwt_moe_route_backward(float *dlogits, const float *dgate, const float *coef, const float *probs,
                            const int32_t *expert, const float *gate, int N, int E, int k) {
  for (int n = 0; n < N; n++) {
    const float *p = probs + (size_t)n * E, *dg = dgate + (size_t)n * k, *g = gate + (size_t)n * k;
    const int32_t *ch = expert + (size_t)n * k;
    float *d = dlogits + (size_t)n * E;
    if (k == 1) { /* g = p_c: ∂g/∂r_j = p_c (δ_cj − p_j) */
      double a = (double)dg[0] * p[ch[0]];
      for (int e = 0; e < E; e++) d[e] -= (float)(a * p[e]);
      d[ch[0]] += (float)a;
    } else { /* g_s = softmax over the chosen: ∂L/∂r_s = g_s (dg_s − Σ_t g_t dg_t) */
      double mean = (double)g[0] * dg[0] + (double)g[1] * dg[1];
      for (int s = 0; s < 2; s++) d[ch[s]] += (float)(g[s] * (dg[s] - mean));
    }
    if (coef) { /* Σ_e coef_e p_e through the softmax: p_j (coef_j − Σ_e p_e coef_e) */
      double mean = 0;
      for (int e = 0; e < E; e++) mean += (double)p[e] * coef[e];
      for (int e = 0; e < E; e++) d[e] += (float)(p[e] * (coef[e] - mean));
    }
  }
}

void bwt_moe_combine_forward(float *out, const float *y, const float *gate, const int32_t *slot, int k, int n, int C) {
#pragma omp parallel for schedule(static) if ((long)n * C >= 16384)
  for (int i = 0; i < n; i++) { /* one expert's rows are distinct: no two iterations write one row */
    float *o = out + (size_t)(slot[i] / k) * C, g = gate[slot[i]];
    const float *yi = y + (size_t)i * C;
    for (int c = 0; c < C; c++) o[c] += g * yi[c];
  }
}

void bwt_moe_combine_backward(float *dy, float *dgate, const float *dout, const float *y, const float *gate,
                              const int32_t *slot, int k, int n, int C) {
#pragma omp parallel for schedule(static) if ((long)n * C >= 16384)
  for (int i = 0; i < n; i++) {
    const float *d = dout + (size_t)(slot[i] / k) * C, *yi = y + (size_t)i * C;
    float *dyi = dy + (size_t)i * C, g = gate[slot[i]];
    double dot = 0;
    for (int c = 0; c < C; c++) dyi[c] += g * d[c], dot += (double)d[c] * yi[c];
    dgate[slot[i]] += (float)dot;
  }
}
