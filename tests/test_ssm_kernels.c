/* Mamba's kernels (src/kernels/cpu/ssm.c, silu.c): forward against a double-precision mirror
 * written from the equations, every gradient against central differences of that mirror, and
 * bit-identical results at 1 and 2 threads (the kernels split work only over unsummed indices). */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/kernels.h"
#include "testutil.h"

#define FD_STEP 1e-4
#define FD_TOL 1e-4 /* float analytic gradient vs double central differences (as test_kernels) */
#define FD_FLOOR 1e-2 /* absolute floor of the relative error */

enum { B = 2, T = 6, D = 3, K = 4, N = 5 };

static float *frand(size_t n, float lo, float hi, uint64_t seed) {
  float *x = malloc(n * sizeof *x);
  test_fill_uniform(x, n, lo, hi, seed);
  return x;
}
static float *fzeros(size_t n) { return calloc(n, sizeof(float)); }
static double *widen(const float *x, size_t n) {
  double *y = malloc(n * sizeof *y);
  for (size_t i = 0; i < n; i++) y[i] = x[i];
  return y;
}

/* ---- double mirrors, straight from the equations ------------------------------------------ */

static void ref_conv(double *out, const double *x, const double *w, const double *bias) {
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++)
      for (int d = 0; d < D; d++) {
        double s = bias[d];
        for (int k = 0; k < K; k++) {
          int src = t - (K - 1) + k;
          if (src >= 0) s += w[d * K + k] * x[(b * T + src) * D + d];
        }
        out[(b * T + t) * D + d] = s;
      }
}

static void ref_scan(double *y, const double *u, const double *dl, const double *A, const double *Bm,
                     const double *Cm, const double *Ds) {
  double h[D][N];
  for (int b = 0; b < B; b++) {
    memset(h, 0, sizeof h);
    for (int t = 0; t < T; t++)
      for (int d = 0; d < D; d++) {
        int i = (b * T + t) * D + d;
        double acc = Ds[d] * u[i];
        for (int n = 0; n < N; n++) {
          h[d][n] = exp(dl[i] * A[d * N + n]) * h[d][n] + dl[i] * Bm[(b * T + t) * N + n] * u[i];
          acc += Cm[(b * T + t) * N + n] * h[d][n];
        }
        y[i] = acc;
      }
  }
}

/* One op's double inputs and its loss Σ out ⊙ R. */
typedef struct {
  int scan; /* 0: conv1d (x = inp, weight, bias); 1: scan (x = u, delta, A, Bm, Cm, Dskip) */
  double *x[6], *out, *R;
  size_t nout;
} fd_ctx;

static double fd_loss(fd_ctx *c) {
  if (c->scan) ref_scan(c->out, c->x[0], c->x[1], c->x[2], c->x[3], c->x[4], c->x[5]);
  else ref_conv(c->out, c->x[0], c->x[1], c->x[2]);
  double L = 0;
  for (size_t i = 0; i < c->nout; i++) L += c->out[i] * c->R[i];
  return L;
}

static void check_grad(const char *what, fd_ctx *c, double *x, const float *an, size_t n) {
  double worst = 0;
  for (size_t i = 0; i < n; i++) {
    double x0 = x[i];
    x[i] = x0 + FD_STEP;
    double lp = fd_loss(c);
    x[i] = x0 - FD_STEP;
    double lm = fd_loss(c);
    x[i] = x0;
    double num = (lp - lm) / (2 * FD_STEP), e = fabs(an[i] - num) / fmax(fabs(num), FD_FLOOR);
    if (!(e <= worst)) worst = e;
  }
  print_message("  fd %-14s max rel err %.2e (tol %.0e)\n", what, worst, FD_TOL);
  assert_true(worst < FD_TOL);
}

static void check_forward(const char *what, fd_ctx *c, const float *out) {
  fd_loss(c);
  double worst = 0;
  for (size_t i = 0; i < c->nout; i++) worst = fmax(worst, fabs(out[i] - c->out[i]) / fmax(fabs(c->out[i]), 1e-3));
  print_message("  fwd %-13s max rel err %.2e (tol 1e-5)\n", what, worst);
  assert_true(worst < 1e-5);
}

static void free_ctx(fd_ctx *c) {
  for (int i = 0; i < 6; i++) free(c->x[i]);
  free(c->out);
  free(c->R);
}

/* ---- tests --------------------------------------------------------------------------------- */

static void test_conv1d(void **state) {
  float *x = frand(B * T * D, -1, 1, 1), *w = frand(D * K, -1, 1, 2), *bias = frand(D, -1, 1, 3);
  float *R = frand(B * T * D, -1, 1, 4), *out = fzeros(B * T * D);
  fd_ctx c = {.out = calloc(B * T * D, sizeof(double)), .R = widen(R, B * T * D), .nout = B * T * D,
              .x = {widen(x, B * T * D), widen(w, D * K), widen(bias, D)}};
  bwt_conv1d_causal_forward(out, x, w, bias, B, T, D, K);
  check_forward("conv1d", &c, out);
  /* Causality: the first output sees only the first input (tap K−1). */
  assert_float_equal(out[0], bias[0] + w[K - 1] * x[0], 1e-6);
  float *dx = fzeros(B * T * D), *dw = fzeros(D * K), *db = fzeros(D);
  bwt_conv1d_causal_backward(dx, dw, db, R, x, w, B, T, D, K);
  check_grad("conv1d dinp", &c, c.x[0], dx, B * T * D);
  check_grad("conv1d dweight", &c, c.x[1], dw, D * K);
  check_grad("conv1d dbias", &c, c.x[2], db, D);
  free_ctx(&c);
  free(x), free(w), free(bias), free(R), free(out), free(dx), free(dw), free(db);
}

static void test_softplus(void **state) {
  const float x[] = {-30, -2, -0.5f, 0, 0.5f, 3, 19.9f, 20.1f, 60};
  enum { n = sizeof x / sizeof x[0] };
  float y[n], dx[n] = {0}, ones[n];
  for (int i = 0; i < n; i++) ones[i] = 1;
  bwt_softplus_forward(y, x, n);
  bwt_softplus_backward(dx, ones, x, n);
  for (int i = 0; i < n; i++) {
    double ref = x[i] > 20 ? x[i] : log1p(exp((double)x[i])), dref = 1 / (1 + exp(-(double)x[i]));
    assert_true(isfinite(y[i]));
    assert_float_equal(y[i], ref, 1e-6 * fmax(1, fabs(ref)));
    assert_float_equal(dx[i], dref, 1e-6);
  }
}

/* Scan inputs in the ranges a Mamba block produces: Δ > 0 from softplus, A < 0 (−exp(A_log)). */
static void scan_inputs(float **u, float **dl, float **A, float **Bm, float **Cm, float **Ds, uint64_t seed) {
  *u = frand(B * T * D, -1, 1, seed);
  *dl = frand(B * T * D, 0.05f, 1.0f, seed + 1);
  *A = frand(D * N, -2.0f, -0.1f, seed + 2);
  *Bm = frand(B * T * N, -1, 1, seed + 3);
  *Cm = frand(B * T * N, -1, 1, seed + 4);
  *Ds = frand(D, -1, 1, seed + 5);
}

static void test_selective_scan(void **state) {
  float *u, *dl, *A, *Bm, *Cm, *Ds;
  scan_inputs(&u, &dl, &A, &Bm, &Cm, &Ds, 10);
  float *R = frand(B * T * D, -1, 1, 20), *y = fzeros(B * T * D), *h = fzeros(B * T * D * N);
  fd_ctx c = {.scan = 1, .out = calloc(B * T * D, sizeof(double)), .R = widen(R, B * T * D), .nout = B * T * D,
              .x = {widen(u, B * T * D), widen(dl, B * T * D), widen(A, D * N), widen(Bm, B * T * N),
                    widen(Cm, B * T * N), widen(Ds, D)}};
  bwt_selective_scan_forward(y, h, u, dl, A, Bm, Cm, Ds, B, T, D, N);
  check_forward("scan", &c, y);
  float *du = fzeros(B * T * D), *ddl = fzeros(B * T * D), *dA = fzeros(D * N), *dB = fzeros(B * T * N),
        *dC = fzeros(B * T * N), *dD = fzeros(D), *g = fzeros(B * T * D * N);
  bwt_selective_scan_backward(du, ddl, dA, dB, dC, dD, g, R, h, u, dl, A, Bm, Cm, Ds, B, T, D, N);
  check_grad("scan du", &c, c.x[0], du, B * T * D);
  check_grad("scan ddelta", &c, c.x[1], ddl, B * T * D);
  check_grad("scan dA", &c, c.x[2], dA, D * N);
  check_grad("scan dB", &c, c.x[3], dB, B * T * N);
  check_grad("scan dC", &c, c.x[4], dC, B * T * N);
  check_grad("scan dD", &c, c.x[5], dD, D);
  free_ctx(&c);
  float *all[] = {u, dl, A, Bm, Cm, Ds, R, y, h, du, ddl, dA, dB, dC, dD, g};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
}

/* SiLU, the gate and the decay rates, each against its double formula and central differences of
 * it (elementwise ops: one input at a time). */
static double silu_d(double x) { return x / (1 + exp(-x)); }

static void test_silu_gate_decay(void **state) {
  enum { n = 64 };
  float *x = frand(n, -6, 6, 30), *z = frand(n, -6, 6, 31), *R = frand(n, -1, 1, 32);
  float out[n], gate[n], A[n], dx[n] = {0}, dy[n] = {0}, dz[n] = {0}, dlog[n] = {0};
  bwt_silu_forward(out, x, n);
  bwt_silu_backward(dx, R, x, n);
  bwt_swiglu_forward(gate, z, x, n); /* x · SiLU(z), Mamba's gate */
  bwt_swiglu_backward(dz, dy, R, z, x, n);
  bwt_ssm_decay_forward(A, x, n);
  bwt_ssm_decay_backward(dlog, R, A, n);
  double worst_f = 0, worst_g = 0;
  for (int i = 0; i < n; i++) {
    double xi = x[i], zi = z[i], h = FD_STEP;
    double f[3] = {silu_d(xi), xi * silu_d(zi), -exp(xi)};
    const float *got[3] = {out, gate, A};
    for (int k = 0; k < 3; k++) worst_f = fmax(worst_f, fabs(got[k][i] - f[k]) / fmax(fabs(f[k]), 1e-3));
    double num[4] = {(silu_d(xi + h) - silu_d(xi - h)) / (2 * h) * R[i], silu_d(zi) * R[i],
                     xi * (silu_d(zi + h) - silu_d(zi - h)) / (2 * h) * R[i],
                     -(exp(xi + h) - exp(xi - h)) / (2 * h) * R[i]};
    const float an[4] = {dx[i], dy[i], dz[i], dlog[i]};
    for (int k = 0; k < 4; k++) worst_g = fmax(worst_g, fabs(an[k] - num[k]) / fmax(fabs(num[k]), FD_FLOOR));
  }
  print_message("  silu/gate/decay: fwd max rel err %.2e, fd max rel err %.2e\n", worst_f, worst_g);
  assert_true(worst_f < 1e-5);
  assert_true(worst_g < FD_TOL);
  free(x), free(z), free(R);
}

/* A larger problem at 1 and at 2 threads: every output and gradient bit for bit the same. */
static void test_thread_count_invariance(void **state) {
  enum { BB = 4, TT = 33, DD = 40, NN = 16 };
  size_t nx = (size_t)BB * TT * DD, nh = nx * NN, nbc = (size_t)BB * TT * NN;
  float *u = frand(nx, -1, 1, 1), *dl = frand(nx, 0.05f, 1, 2), *A = frand(DD * NN, -2, -0.1f, 3);
  float *Bm = frand(nbc, -1, 1, 4), *Cm = frand(nbc, -1, 1, 5), *Ds = frand(DD, -1, 1, 6), *dy = frand(nx, -1, 1, 7);
  float *w = frand(DD * K, -1, 1, 8), *bias = frand(DD, -1, 1, 9);
  float *res[2][10];
  for (int r = 0; r < 2; r++) {
    omp_set_num_threads(r + 1);
    float **o = res[r];
    o[0] = fzeros(nx), o[1] = fzeros(nh), o[2] = fzeros(nx), o[3] = fzeros(nx), o[4] = fzeros(DD * NN);
    o[5] = fzeros(nbc), o[6] = fzeros(nbc), o[7] = fzeros(DD), o[8] = fzeros(nx), o[9] = fzeros(DD * K);
    float *g = fzeros(nh), *dbias = fzeros(DD);
    bwt_selective_scan_forward(o[0], o[1], u, dl, A, Bm, Cm, Ds, BB, TT, DD, NN);
    bwt_selective_scan_backward(o[2], o[3], o[4], o[5], o[6], o[7], g, dy, o[1], u, dl, A, Bm, Cm, Ds, BB, TT, DD, NN);
    bwt_conv1d_causal_backward(o[8], o[9], dbias, dy, u, w, BB, TT, DD, K);
    free(g), free(dbias);
  }
  const size_t sizes[10] = {nx, nh, nx, nx, DD * NN, nbc, nbc, DD, nx, DD * K};
  for (int i = 0; i < 10; i++) {
    assert_memory_equal(res[0][i], res[1][i], sizes[i] * sizeof(float));
    free(res[0][i]), free(res[1][i]);
  }
  omp_set_num_threads(2);
  float *all[] = {u, dl, A, Bm, Cm, Ds, dy, w, bias};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_conv1d),
      cmocka_unit_test(test_softplus),
      cmocka_unit_test(test_selective_scan),
      cmocka_unit_test(test_silu_gate_decay),
      cmocka_unit_test(test_thread_count_invariance),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
