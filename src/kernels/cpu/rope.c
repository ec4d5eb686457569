/* Rotary position embeddings, rotate-half pairing (GPT-NeoX, Llama and Mistral in Hugging Face
 * layout): within each head, channel i pairs with channel i + R/2 for i < R/2, and the pair turns
 * by pos·inv_freq[i]. Channels from R on pass through unchanged (partial rotary, NeoX and Phi).
 *
 * Angles, cosines and sines are taken in double and rounded once: a token at position 10⁵ still
 * gets its angle to float precision. */
#include <math.h>

#include "bwt/kernels.h"

#define ROPE_OMP_MIN_WORK 16384
#define ROPE_PI 3.14159265358979323846

/* Llama 3's rule (Hugging Face's "llama3" rope_type): wavelengths longer than
 * original_max_pos / low_freq_factor are stretched by factor, those shorter than
 * original_max_pos / high_freq_factor kept, and the band between blended linearly in
 * original_max_pos / wavelength. */
static double llama3_freq(double f, const bwt_rope_scaling *s) {
  double wavelen = 2 * ROPE_PI / f, old = s->original_max_pos;
  if (wavelen < old / s->high_freq_factor) return f;
  if (wavelen > old / s->low_freq_factor) return f / s->factor;
  double smooth = (old / wavelen - s->low_freq_factor) / (s->high_freq_factor - s->low_freq_factor);
  return (1 - smooth) * f / s->factor + smooth * f;
}

void bwt_rope_inv_freq(double *inv_freq, int R, double theta, const bwt_rope_scaling *scaling) {
  for (int i = 0; i < R / 2; i++) {
    double f = 1.0 / pow(theta, (double)(2 * i) / R);
    if (scaling && scaling->type == BWT_ROPE_LINEAR) f /= scaling->factor;
    if (scaling && scaling->type == BWT_ROPE_LLAMA3) f = llama3_freq(f, scaling);
    inv_freq[i] = f;
  }
}

#define ROPE_PAIRS 128 /* pairs whose cosines and sines are taken at once, per position */

/* out = rotation of inp by sign·angle (sign −1: the transpose, for the backward); accumulate adds
 * into out instead of writing it. A position's cosines and sines are taken once (in pieces of
 * ROPE_PAIRS pairs) and serve all its heads; the pair loop is vectorised. */
static void rotate(float *out, const float *inp, const double *inv_freq, const int32_t *pos, int N,
                   int NH, int hs, int R, double sign, int accumulate) {
  int half = R / 2;
#pragma omp parallel for schedule(static) if ((long)N * NH * hs >= ROPE_OMP_MIN_WORK)
  for (int n = 0; n < N; n++) {
    float cs[ROPE_PAIRS], sn[ROPE_PAIRS];
    for (int i0 = 0; i0 < half; i0 += ROPE_PAIRS) {
      int np = half - i0 < ROPE_PAIRS ? half - i0 : ROPE_PAIRS;
      for (int i = 0; i < np; i++) {
        double angle = sign * pos[n] * inv_freq[i0 + i];
        cs[i] = (float)cos(angle);
        sn[i] = (float)sin(angle);
      }
      for (int h = 0; h < NH; h++) {
        size_t base = ((size_t)n * NH + h) * hs + (size_t)i0;
        const float *x = inp + base;
        float *o = out + base;
        if (accumulate) {
#pragma omp simd
          for (int i = 0; i < np; i++) {
            float a = x[i], b = x[i + half];
            o[i] += a * cs[i] - b * sn[i];
            o[i + half] += b * cs[i] + a * sn[i];
          }
        } else {
#pragma omp simd
          for (int i = 0; i < np; i++) {
            float a = x[i], b = x[i + half];
            o[i] = a * cs[i] - b * sn[i];
            o[i + half] = b * cs[i] + a * sn[i];
          }
        }
      }
    }
    for (int h = 0; h < NH; h++) {
      size_t base = ((size_t)n * NH + h) * hs;
      for (int i = R; i < hs; i++) out[base + i] = accumulate ? out[base + i] + inp[base + i] : inp[base + i];
    }
  }
}

void bwt_rope_forward(float *out, const float *inp, const double *inv_freq, const int32_t *pos,
                      int N, int NH, int hs, int R) {
  rotate(out, inp, inv_freq, pos, N, NH, hs, R, 1.0, 0);
}

/* A rotation's transpose is the rotation by the opposite angle. */
void bwt_rope_backward(float *dinp, const float *dout, const double *inv_freq, const int32_t *pos,
                       int N, int NH, int hs, int R) {
  rotate(dinp, dout, inv_freq, pos, N, NH, hs, R, -1.0, 1);
}
