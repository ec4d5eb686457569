/* The language-model kernels (kernels.h, "Language-model ops") against oracles:
 *  - RoPE against a double-precision rotation written from the formula, its frequency rules
 *    against hand-derived values, its backward as the exact transpose (<R x, y> = <x, Rᵀ y>);
 *  - grouped-query attention (row and blocked versions) against its double oracle, against the existing multi-head attention
 *    with key/value heads repeated, and a cached step against the last rows of a whole sequence;
 *  - SwiGLU and tanh-GELU against double mirrors, their backwards against central differences;
 *  - RMSNorm with eps against the engine's RMSNorm (eps 1e-5); LayerNorm with eps likewise against
 *    the engine's LayerNorm, and with another eps against the formula;
 *  - the (in, out) linear layer (GPT-2's Conv1D) against bwt_matmul_forward on the transposed weight. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/kernels.h"
#include "testutil.h"

#define PI 3.14159265358979323846

static float *frand(size_t n, float lo, float hi, uint64_t seed) {
  float *x = calloc(n ? n : 1, sizeof(float));
  assert_non_null(x);
  test_fill_uniform(x, n, lo, hi, seed);
  return x;
}
static float *fzeros(size_t n) {
  float *x = calloc(n ? n : 1, sizeof(float));
  assert_non_null(x);
  return x;
}
static double max_abs_diff(const float *a, const float *b, size_t n) {
  double e = 0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - b[i]);
    if (!(d <= e)) e = d;
  }
  return e;
}

/* ---- RoPE ---------------------------------------------------------------------------------- */

static void test_rope_forward(void **state) {
  enum { N = 5, NH = 3, HS = 10, R = 6 };
  int32_t pos[N] = {0, 1, 7, 100, 5000};
  double inv[R / 2];
  bwt_rope_inv_freq(inv, R, 500000.0, NULL);
  for (int i = 0; i < R / 2; i++) assert_true(fabs(inv[i] - pow(500000.0, -2.0 * i / R)) < 1e-15);
  float *x = frand(N * NH * HS, -1, 1, 1), *y = fzeros(N * NH * HS);
  bwt_rope_forward(y, x, inv, pos, N, NH, HS, R);
  double worst = 0;
  for (int n = 0; n < N; n++)
    for (int h = 0; h < NH; h++) {
      const float *xh = x + (n * NH + h) * HS, *yh = y + (n * NH + h) * HS;
      for (int i = 0; i < HS; i++) {
        double want = xh[i]; /* channels past R pass */
        if (i < R) {
          int p = i < R / 2 ? i : i - R / 2;
          double a = pos[n] * pow(500000.0, -2.0 * p / R);
          want = i < R / 2 ? xh[i] * cos(a) - xh[i + R / 2] * sin(a) : xh[i] * cos(a) + xh[i - R / 2] * sin(a);
        }
        worst = fmax(worst, fabs(yh[i] - want));
      }
    }
  print_message("  rope vs double rotation: max abs err %.2e (tol 1e-6)\n", worst);
  assert_true(worst < 1e-6);
  /* In place gives the same. */
  bwt_rope_forward(x, x, inv, pos, N, NH, HS, R);
  assert_true(max_abs_diff(x, y, N * NH * HS) == 0);
  free(x);
  free(y);
}

static void test_rope_backward_is_transpose(void **state) {
  enum { N = 4, NH = 2, HS = 8, R = 8 };
  int32_t pos[N] = {3, 0, 11, 2};
  double inv[R / 2];
  bwt_rope_inv_freq(inv, R, 10000.0, NULL);
  float *x = frand(N * NH * HS, -1, 1, 2), *g = frand(N * NH * HS, -1, 1, 3);
  float *rx = fzeros(N * NH * HS), *rtg = frand(N * NH * HS, 0.5f, 0.5f, 4); /* starts at 0.5 */
  bwt_rope_forward(rx, x, inv, pos, N, NH, HS, R);
  bwt_rope_backward(rtg, g, inv, pos, N, NH, HS, R);
  double lhs = 0, rhs = 0;
  for (int i = 0; i < N * NH * HS; i++) {
    lhs += (double)rx[i] * g[i];
    rhs += (double)x[i] * (rtg[i] - 0.5f); /* the backward accumulated onto 0.5 */
  }
  print_message("  <Rx,g> = %.9f, <x,R^T g> = %.9f\n", lhs, rhs);
  assert_true(fabs(lhs - rhs) < 1e-5);
  free(x);
  free(g);
  free(rx);
  free(rtg);
}

static void test_rope_scaling_rules(void **state) {
  enum { R = 64 };
  double base[R / 2], lin[R / 2], l3[R / 2];
  bwt_rope_inv_freq(base, R, 500000.0, NULL);
  bwt_rope_scaling linear = {BWT_ROPE_LINEAR, 4.0, 0, 0, 0};
  bwt_rope_inv_freq(lin, R, 500000.0, &linear);
  /* Llama 3.1's published values. */
  bwt_rope_scaling llama3 = {BWT_ROPE_LLAMA3, 8.0, 1.0, 4.0, 8192};
  bwt_rope_inv_freq(l3, R, 500000.0, &llama3);
  int kept = 0, stretched = 0, blended = 0;
  for (int i = 0; i < R / 2; i++) {
    assert_true(fabs(lin[i] - base[i] / 4) < 1e-15);
    double wavelen = 2 * PI / base[i];
    if (wavelen < 8192 / 4.0) {
      assert_true(l3[i] == base[i]);
      kept++;
    } else if (wavelen > 8192 / 1.0) {
      assert_true(fabs(l3[i] - base[i] / 8) < 1e-18);
      stretched++;
    } else {
      double s = (8192 / wavelen - 1.0) / (4.0 - 1.0);
      assert_true(s >= 0 && s <= 1);
      assert_true(fabs(l3[i] - ((1 - s) * base[i] / 8 + s * base[i])) < 1e-15);
      assert_true(l3[i] < base[i] && l3[i] > base[i] / 8);
      blended++;
    }
  }
  print_message("  llama3 rule: %d kept, %d blended, %d stretched of %d\n", kept, blended, stretched, R / 2);
  assert_true(kept > 0 && stretched > 0 && blended > 0);
}

/* ---- grouped-query attention --------------------------------------------------------------- */

static void test_gqa_fast_vs_naive(void **state) {
  enum { B = 2, T = 9, NH = 6, NKV = 2, HS = 5 };
  float *q = frand(B * T * NH * HS, -2, 2, 5), *k = frand(B * T * NKV * HS, -2, 2, 6);
  float *v = frand(B * T * NKV * HS, -1, 1, 7);
  float *o1 = fzeros(B * T * NH * HS), *o2 = fzeros(B * T * NH * HS);
  float *a1 = fzeros(B * NH * T * T), *a2 = fzeros(B * NH * T * T);
  float *s1 = fzeros(B * NH * T * T), *s2 = fzeros(B * NH * T * T);
  int windows[] = {0, 1, 3, T};
  for (int w = 0; w < 4; w++) {
    float scale = 1.0f / sqrtf(HS);
    assert_int_equal(bwt_gqa_attention_forward(o1, a1, s1, q, k, v, B, T, T, NH, NKV, HS, windows[w], scale), 0);
    bwt_gqa_attention_forward_naive(o2, a2, s2, q, k, v, B, T, T, NH, NKV, HS, windows[w], scale);
    double eo = max_abs_diff(o1, o2, B * T * NH * HS), ea = max_abs_diff(a1, a2, B * NH * T * T);
    double es = 0;
    for (int i = 0; i < B * NH * T * T; i++) {
      if (isinf(s2[i])) {
        assert_true(isinf(s1[i]) && s1[i] < 0 && a1[i] == 0);
      } else {
        es = fmax(es, fabs(s1[i] - s2[i]));
      }
    }
    print_message("  gqa window %d: out %.2e, att %.2e, scores %.2e (tol 1e-5)\n", windows[w], eo, ea, es);
    assert_true(eo < 1e-5 && ea < 1e-5 && es < 1e-5);
    /* The window: query t sees exactly min(t + 1, window) keys. */
    for (int h = 0; h < NH; h++)
      for (int t = 0; t < T; t++) {
        int seen = 0;
        for (int s = 0; s < T; s++) seen += a1[(h * T + t) * T + s] > 0;
        int want = windows[w] > 0 && windows[w] < t + 1 ? windows[w] : t + 1;
        assert_int_equal(seen, want);
      }
  }
  free(q); free(k); free(v); free(o1); free(o2); free(a1); free(a2); free(s1); free(s2);
}

/* Prompts (nq >= 32 queries) take the blocked version (sgemm per block of 64 queries of a head):
 * against the oracle over several blocks and a partial one, with and without grouping, with
 * windows shorter and longer than a block, for a whole sequence and for the last nq of T. */
static void test_gqa_blocked_vs_naive(void **state) {
  enum { B = 2, T = 150, NH = 4, HS = 16 };
  int nkvs[] = {2, 4}, windows[] = {0, 5, 70, T}, nqs[] = {T, 100, 32};
  size_t qn = (size_t)B * T * NH * HS, an = (size_t)B * NH * T * T;
  float *q = frand(qn, -2, 2, 21), *k = frand(qn, -2, 2, 22), *v = frand(qn, -1, 1, 23);
  float *o1 = fzeros(qn), *o2 = fzeros(qn), *a1 = fzeros(an), *a2 = fzeros(an), *s1 = fzeros(an), *s2 = fzeros(an);
  for (int g = 0; g < 2; g++)
    for (int w = 0; w < 4; w++)
      for (int n = 0; n < 3; n++) {
        int NKV = nkvs[g], nq = nqs[n];
        float scale = 1.0f / sqrtf(HS);
        memset(a1, 0x7f, an * sizeof(float)); /* every att and scores entry must be written */
        memset(s1, 0x7f, an * sizeof(float));
        assert_int_equal(bwt_gqa_attention_forward(o1, a1, s1, q, k, v, B, T, nq, NH, NKV, HS, windows[w], scale), 0);
        bwt_gqa_attention_forward_naive(o2, a2, s2, q, k, v, B, T, nq, NH, NKV, HS, windows[w], scale);
        size_t on = (size_t)B * nq * NH * HS, am = (size_t)B * NH * nq * T;
        double eo = max_abs_diff(o1, o2, on), ea = max_abs_diff(a1, a2, am), es = 0;
        for (size_t i = 0; i < am; i++) {
          if (isinf(s2[i])) assert_true(isinf(s1[i]) && s1[i] < 0 && a1[i] == 0);
          else es = fmax(es, fabs(s1[i] - s2[i]));
        }
        if (w == 1 || n == 0)
          print_message("  gqa blocked NKV %d window %d nq %d: out %.2e, att %.2e, scores %.2e (tol 1e-5)\n", NKV,
                        windows[w], nq, eo, ea, es);
        assert_true(eo < 1e-5 && ea < 1e-5 && es < 1e-5);
      }
  free(q); free(k); free(v); free(o1); free(o2); free(a1); free(a2); free(s1); free(s2);
}

/* With every key/value head repeated for its group, GQA is the engine's multi-head attention. */
static void test_gqa_vs_multihead(void **state) {
  enum { B = 2, T = 7, NH = 4, NKV = 2, HS = 6, C = NH * HS };
  float *q = frand(B * T * C, -2, 2, 8), *k = frand(B * T * NKV * HS, -2, 2, 9);
  float *v = frand(B * T * NKV * HS, -1, 1, 10);
  float *kr = fzeros(B * T * C), *vr = fzeros(B * T * C);
  for (int bt = 0; bt < B * T; bt++)
    for (int h = 0; h < NH; h++)
      for (int i = 0; i < HS; i++) {
        kr[bt * C + h * HS + i] = k[(bt * NKV + h / (NH / NKV)) * HS + i];
        vr[bt * C + h * HS + i] = v[(bt * NKV + h / (NH / NKV)) * HS + i];
      }
  float *o1 = fzeros(B * T * C), *o2 = fzeros(B * T * C);
  float *a1 = fzeros(B * NH * T * T), *a2 = fzeros(B * NH * T * T);
  assert_int_equal(bwt_gqa_attention_forward(o1, a1, NULL, q, k, v, B, T, T, NH, NKV, HS, 0, 1.0f / sqrtf(HS)), 0);
  bwt_attention_forward_naive(o2, a2, q, kr, vr, NULL, B, T, C, NH);
  double eo = max_abs_diff(o1, o2, B * T * C), ea = max_abs_diff(a1, a2, B * NH * T * T);
  print_message("  gqa vs repeated multi-head: out %.2e, att %.2e (tol 1e-5)\n", eo, ea);
  assert_true(eo < 1e-5 && ea < 1e-5);
  free(q); free(k); free(v); free(kr); free(vr); free(o1); free(o2); free(a1); free(a2);
}

/* The last nq queries over a cache equal the last nq rows of the whole sequence, bit for bit. */
static void test_gqa_cached_rows(void **state) {
  enum { T = 8, NQ = 3, NH = 4, NKV = 1, HS = 4 };
  float *q = frand(T * NH * HS, -2, 2, 11), *k = frand(T * NKV * HS, -2, 2, 12);
  float *v = frand(T * NKV * HS, -1, 1, 13);
  float *o = fzeros(T * NH * HS), *a = fzeros(NH * T * T), *oc = fzeros(NQ * NH * HS), *ac = fzeros(NH * NQ * T);
  for (int window = 0; window <= 2; window += 2) {
    assert_int_equal(bwt_gqa_attention_forward(o, a, NULL, q, k, v, 1, T, T, NH, NKV, HS, window, 0.5f), 0);
    assert_int_equal(bwt_gqa_attention_forward(oc, ac, NULL, q + (T - NQ) * NH * HS, k, v, 1, T, NQ, NH, NKV, HS, window, 0.5f), 0);
    assert_true(max_abs_diff(oc, o + (T - NQ) * NH * HS, NQ * NH * HS) == 0);
    for (int h = 0; h < NH; h++)
      assert_true(max_abs_diff(ac + h * NQ * T, a + (h * T + T - NQ) * T, NQ * T) == 0);
  }
  assert_int_equal(bwt_gqa_attention_forward(o, a, NULL, q, k, v, 1, T, T, 3, 2, HS, 0, 1.0f), BWT_STATUS_ARG);
  assert_int_equal(bwt_gqa_attention_forward(o, a, NULL, q, k, v, 1, T, T + 1, NH, NKV, HS, 0, 1.0f), BWT_STATUS_ARG);
  free(q); free(k); free(v); free(o); free(a); free(oc); free(ac);
}

/* ---- pointwise ------------------------------------------------------------------------------ */

static double silu_d(double g) { return g / (1 + exp(-g)); }
static double gelu_tanh_d(double x) { return 0.5 * x * (1 + tanh(sqrt(2 / PI) * (x + 0.044715 * x * x * x))); }

static void test_swiglu(void **state) {
  enum { N = 257 };
  float *g = frand(N, -6, 6, 14), *u = frand(N, -2, 2, 15), *d = frand(N, -1, 1, 16), *o = fzeros(N);
  float *dg = fzeros(N), *du = fzeros(N);
  bwt_swiglu_forward(o, g, u, N);
  bwt_swiglu_backward(dg, du, d, g, u, N);
  double ef = 0, eg = 0, eu = 0, h = 1e-5;
  for (int i = 0; i < N; i++) {
    ef = fmax(ef, fabs(o[i] - silu_d(g[i]) * u[i]));
    double fdg = (silu_d(g[i] + h) - silu_d(g[i] - h)) / (2 * h) * u[i] * d[i];
    eg = fmax(eg, fabs(dg[i] - fdg) / fmax(fabs(fdg), 1e-2));
    eu = fmax(eu, fabs(du[i] - silu_d(g[i]) * d[i]) / fmax(fabs(silu_d(g[i]) * d[i]), 1e-2));
  }
  print_message("  swiglu: forward %.2e abs, dgate %.2e rel, dup %.2e rel (tol 1e-5, 1e-4, 1e-5)\n", ef, eg, eu);
  assert_true(ef < 1e-5 && eg < 1e-4 && eu < 1e-5);
  free(g); free(u); free(d); free(o); free(dg); free(du);
}

static void test_gelu_tanh(void **state) {
  enum { N = 301 };
  float *x = frand(N, -6, 6, 17), *d = frand(N, -1, 1, 18), *o = fzeros(N), *dx = fzeros(N);
  bwt_gelu_tanh_forward(o, x, N);
  bwt_gelu_tanh_backward(dx, d, x, N);
  double ef = 0, eb = 0, h = 1e-5;
  for (int i = 0; i < N; i++) {
    ef = fmax(ef, fabs(o[i] - gelu_tanh_d(x[i])));
    double fd = (gelu_tanh_d(x[i] + h) - gelu_tanh_d(x[i] - h)) / (2 * h) * d[i];
    eb = fmax(eb, fabs(dx[i] - fd) / fmax(fabs(fd), 1e-2));
  }
  print_message("  gelu_tanh: forward %.2e abs, backward %.2e rel (tol 1e-5, 1e-4)\n", ef, eb);
  assert_true(ef < 1e-5 && eb < 1e-4);
  free(x); free(d); free(o); free(dx);
}

static void test_rmsnorm_eps(void **state) {
  enum { N = 6, C = 33 };
  float *x = frand(N * C, -3, 3, 19), *w = frand(C, 0.5f, 1.5f, 20);
  float *o1 = fzeros(N * C), *o2 = fzeros(N * C), *r1 = fzeros(N), *r2 = fzeros(N), *o3 = fzeros(N * C);
  bwt_rmsnorm_eps_forward(o1, r1, x, w, 1e-5f, N, C);
  bwt_rmsnorm_forward(o2, r2, x, w, N, C);
  assert_true(max_abs_diff(o1, o2, N * C) == 0 && max_abs_diff(r1, r2, N) == 0);
  bwt_rmsnorm_eps_forward(o3, NULL, x, NULL, 1e-5f, N, C);
  for (int i = 0; i < N * C; i++) assert_true(o3[i] == x[i] * r1[i / C]);
  /* A large eps changes the result as the formula says. */
  bwt_rmsnorm_eps_forward(o1, r1, x, w, 10.0f, N, C);
  double ss = 0;
  for (int c = 0; c < C; c++) ss += (double)x[c] * x[c];
  assert_true(fabs(r1[0] - 1 / sqrt(ss / C + 10)) < 1e-6);
  free(x); free(w); free(o1); free(o2); free(r1); free(r2); free(o3);
}

static void test_layernorm_eps(void **state) {
  enum { N = 6, C = 33 };
  float *x = frand(N * C, -3, 3, 21), *w = frand(C, 0.5f, 1.5f, 22), *b = frand(C, -0.5f, 0.5f, 23);
  float *o1 = fzeros(N * C), *o2 = fzeros(N * C), *mean = fzeros(N), *rstd = fzeros(N), *o3 = fzeros(N * C);
  bwt_layernorm_eps_forward(o1, x, w, b, 1e-5f, N, C);
  bwt_layernorm_forward(o2, mean, rstd, x, w, b, N, C);
  assert_true(max_abs_diff(o1, o2, N * C) == 0);
  bwt_layernorm_eps_forward(o3, x, NULL, NULL, 1e-5f, N, C);
  for (int i = 0; i < N * C; i++) assert_true(o3[i] == (x[i] - mean[i / C]) * rstd[i / C]);
  bwt_layernorm_eps_forward(o1, x, w, NULL, 10.0f, N, C); /* no bias, eps 10 */
  double worst = 0;
  for (int n = 0; n < N; n++) {
    double mu = 0, var = 0;
    for (int c = 0; c < C; c++) mu += x[n * C + c] / (double)C;
    for (int c = 0; c < C; c++) var += (x[n * C + c] - mu) * (x[n * C + c] - mu) / C;
    for (int c = 0; c < C; c++) worst = fmax(worst, fabs(o1[n * C + c] - (x[n * C + c] - mu) / sqrt(var + 10) * w[c]));
  }
  assert_true(worst < 1e-6);
  free(x); free(w); free(b); free(o1); free(o2); free(mean); free(rstd); free(o3);
}

static void test_matmul_in_out(void **state) {
  enum { N = 7, IC = 19, OC = 45 };
  float *x = frand(N * IC, -1, 1, 24), *w_io = frand(IC * OC, -1, 1, 25), *b = frand(OC, -1, 1, 26);
  float *w_oi = fzeros(IC * OC), *o1 = fzeros(N * OC), *o2 = fzeros(N * OC);
  bwt_transpose(w_oi, w_io, IC, OC, 1);
  bwt_matmul_in_out_forward(o1, x, w_io, b, N, IC, OC);
  bwt_matmul_forward_naive(o2, x, w_oi, b, N, IC, OC);
  double e = max_abs_diff(o1, o2, N * OC);
  bwt_matmul_in_out_forward(o1, x, w_io, NULL, N, IC, OC);
  bwt_matmul_forward_naive(o2, x, w_oi, NULL, N, IC, OC);
  e = fmax(e, max_abs_diff(o1, o2, N * OC));
  print_message("  matmul (in, out): %.2e against the naive (out, in) product (tol 1e-5)\n", e);
  assert_true(e < 1e-5);
  free(x); free(w_io); free(b); free(w_oi); free(o1); free(o2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rope_forward),
      cmocka_unit_test(test_rope_backward_is_transpose),
      cmocka_unit_test(test_rope_scaling_rules),
      cmocka_unit_test(test_gqa_fast_vs_naive),
      cmocka_unit_test(test_gqa_blocked_vs_naive),
      cmocka_unit_test(test_gqa_vs_multihead),
      cmocka_unit_test(test_gqa_cached_rows),
      cmocka_unit_test(test_swiglu),
      cmocka_unit_test(test_gelu_tanh),
      cmocka_unit_test(test_rmsnorm_eps),
      cmocka_unit_test(test_layernorm_eps),
      cmocka_unit_test(test_matmul_in_out),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
