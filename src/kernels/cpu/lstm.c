/* The LSTM recurrence (torch.nn.LSTM's cell, gate order i, f, g, o), time-major: row (t, b) of an
 * array (T, B, ·) is at index t·B + b, so the B rows of one step are contiguous.
 *
 *   a = x_t W_ihᵀ + b_ih + h_{t−1} W_hhᵀ + b_hh        (h_{−1} = c_{−1} = 0)
 *   i, f, o = σ(a_i, a_f, a_o),  g = tanh(a_g),  c_t = f c_{t−1} + i g,  h_t = o tanh(c_t)
 *
 * The input projection for every step is one matrix product the caller makes beforehand; these
 * kernels run the sequential part. One SGEMM per step for h_{t−1} W_hhᵀ; the cell is element-wise
 * and split over rows, so results do not depend on the thread count beyond OpenBLAS's own. */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "bwt/kernels.h"
#include "core/vecmath.h"

#define LSTM_OMP_MIN_WORK 16384

static inline float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
/* tanh through the vector expf; absolute error ~1e-7, like tanhf's. */
static inline float tanh_via_exp(float x) { return 2.0f / (1.0f + expf(-2.0f * x)) - 1.0f; }

void bwt_lstm_forward(float *h, float *c, float *gates, const float *w_hh, const float *b_hh, int T,
                      int B, int H) {
  size_t BH = (size_t)B * H, G = 4 * (size_t)H;
  for (int t = 0; t < T; t++) {
    float *a = gates + (size_t)t * B * G;
    if (t > 0)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, (int)G, H, 1.0f, h + (t - 1) * BH, H,
                  w_hh, H, 1.0f, a, (int)G);
    const float *c_prev = t > 0 ? c + (t - 1) * BH : NULL;
#pragma omp parallel for schedule(static) if (BH >= LSTM_OMP_MIN_WORK)
    for (int b = 0; b < B; b++) {
      float *ab = a + (size_t)b * G, *cb = c + t * BH + (size_t)b * H, *hb = h + t * BH + (size_t)b * H;
#pragma omp simd
      for (int j = 0; j < H; j++) {
        float ig = sigmoid(ab[j] + b_hh[j]), fg = sigmoid(ab[H + j] + b_hh[H + j]);
        float gg = tanh_via_exp(ab[2 * H + j] + b_hh[2 * H + j]), og = sigmoid(ab[3 * H + j] + b_hh[3 * H + j]);
        float cv = ig * gg + (c_prev ? fg * c_prev[(size_t)b * H + j] : 0.0f);
        ab[j] = ig, ab[H + j] = fg, ab[2 * H + j] = gg, ab[3 * H + j] = og;
        cb[j] = cv;
        hb[j] = og * tanh_via_exp(cv);
      }
    }
  }
}

void bwt_lstm_backward(float *dgates, float *dh, float *dc, const float *gates, const float *c,
                       const float *w_hh, int T, int B, int H) {
  size_t BH = (size_t)B * H, G = 4 * (size_t)H;
  memset(dc, 0, sizeof(float) * BH);
  for (int t = T - 1; t >= 0; t--) {
    const float *a = gates + (size_t)t * B * G, *c_prev = t > 0 ? c + (t - 1) * BH : NULL;
    float *da = dgates + (size_t)t * B * G;
#pragma omp parallel for schedule(static) if (BH >= LSTM_OMP_MIN_WORK)
    for (int b = 0; b < B; b++) {
      const float *ab = a + (size_t)b * G, *cb = c + t * BH + (size_t)b * H;
      const float *hb = dh + t * BH + (size_t)b * H;
      float *db = da + (size_t)b * G, *dcb = dc + (size_t)b * H;
#pragma omp simd
      for (int j = 0; j < H; j++) {
        float ig = ab[j], fg = ab[H + j], gg = ab[2 * H + j], og = ab[3 * H + j];
        float tc = tanh_via_exp(cb[j]);
        float dcv = hb[j] * og * (1.0f - tc * tc) + dcb[j]; /* dc_t, with the path through c_{t+1} */
        db[j] = dcv * gg * ig * (1.0f - ig);
        db[H + j] = (c_prev ? dcv * c_prev[(size_t)b * H + j] : 0.0f) * fg * (1.0f - fg);
        db[2 * H + j] = dcv * ig * (1.0f - gg * gg);
        db[3 * H + j] = hb[j] * tc * og * (1.0f - og);
        dcb[j] = dcv * fg; /* reaches c_{t−1} */
      }
    }
    if (t > 0) /* dh_{t−1} += da_t W_hh */
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, H, (int)G, 1.0f, da, (int)G, w_hh, H,
                  1.0f, dh + (t - 1) * BH, H);
  }
}
