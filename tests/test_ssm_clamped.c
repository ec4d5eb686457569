/* The simplified Mamba's kernels (src/kernels/cpu/ssm_clamped.c): the clamped scan against a double
 * mirror written from the repository's loop, its gradients against central differences of the
 * mirror with every clamp active somewhere and no input within the finite difference's reach of a
 * clamp's bound (checked, so a poor draw fails rather than passes by luck), the elementwise ops
 * against their formulas, and bit-identical results at 1 and 2 threads. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/kernels.h"
#include "testutil.h"

#define FD_STEP 1e-5
#define FD_TOL 1e-4
#define FD_FLOOR 1e-2
#define MARGIN 1e-2 /* every clamped quantity at least this far from its bound */

enum { B = 2, T = 12, D = 3, N = 4 };
#define NX (B * T * D)
#define NBC (B * T * N)

static double clampd(double x, double lo, double hi) { return x < lo ? lo : x > hi ? hi : x; }

typedef struct {
  double *u, *dl, *A, *Bm, *Cm; /* the inputs, (NX), (NX), (D·N), (NBC), (NBC) */
  double R[NX];                 /* the loss is Σ y ⊙ R */
  double y[NX];
  int active[3];     /* how often the decay, update and state clamps acted */
  double margin;     /* the smallest distance of a clamped quantity to its bound */
} mirror;

static double mirror_loss(mirror *m) {
  double h[D][N], L = 0;
  m->margin = INFINITY;
  memset(m->active, 0, sizeof m->active);
  for (int b = 0; b < B; b++) {
    memset(h, 0, sizeof h);
    for (int t = 0; t < T; t++)
      for (int d = 0; d < D; d++) {
        int i = (b * T + t) * D + d;
        double acc = 0;
        for (int n = 0; n < N; n++) {
          int r = (b * T + t) * N + n;
          double w = m->dl[i] * m->A[d * N + n], upd = m->dl[i] * m->Bm[r] * m->u[i];
          double pre = (t ? exp(clampd(w, -20, 0)) * h[d][n] : 0) + clampd(upd, -10, 10);
          m->active[0] += t && w < -20, m->active[1] += fabs(upd) > 10, m->active[2] += fabs(pre) > 100;
          m->margin = fmin(m->margin, fmin(fabs(w + 20), fmin(fabs(fabs(upd) - 10), fabs(fabs(pre) - 100))));
          h[d][n] = clampd(pre, -100, 100);
          acc += m->Cm[r] * h[d][n];
        }
        m->y[i] = acc;
        L += acc * m->R[i];
      }
  }
  return L;
}

static void check_grad(const char *what, mirror *m, double *x, const float *an, size_t n) {
  double worst = 0;
  for (size_t i = 0; i < n; i++) {
    double x0 = x[i];
    x[i] = x0 + FD_STEP;
    double lp = mirror_loss(m);
    x[i] = x0 - FD_STEP;
    double lm = mirror_loss(m);
    x[i] = x0;
    double num = (lp - lm) / (2 * FD_STEP), e = fabs(an[i] - num) / fmax(fabs(num), FD_FLOOR);
    if (!(e <= worst)) worst = e;
  }
  print_message("  fd %-16s max rel err %.2e (tol %.0e)\n", what, worst, FD_TOL);
  assert_true(worst < FD_TOL);
}

static double *widen(const float *x, size_t n) {
  double *y = malloc(n * sizeof *y);
  for (size_t i = 0; i < n; i++) y[i] = x[i];
  return y;
}

/* Random inputs, with channel 0 pushed into every clamp: a large steady update (clamped at 10)
 * that a slow decay lets pile up past the state's bound, and a fast-decaying state (clamped decay). */
static void make_inputs(float *u, float *dl, float *A, float *Bm, float *Cm, float *R) {
  test_fill_uniform(u, NX, -3, 3, 1);
  test_fill_uniform(dl, NX, 0.05f, 2.5f, 2);
  test_fill_uniform(A, D * N, -12, -0.01f, 3);
  test_fill_uniform(Bm, NBC, -3, 3, 4);
  test_fill_uniform(Cm, NBC, -1, 1, 5);
  test_fill_uniform(R, NX, -1, 1, 6);
  A[0] = -0.003f, A[1] = -15.0f;
  for (int bt = 0; bt < B * T; bt++) {
    u[bt * D] = 3.0f, dl[bt * D] = 1.7f + 0.05f * (float)(bt % 5);
    Bm[bt * N] = 2.9f + 0.01f * (float)(bt % 7);
  }
}

static void test_clamped_scan(void **state) {
  float u[NX], dl[NX], A[D * N], Bm[NBC], Cm[NBC], R[NX], y[NX], h[NX * N] = {0};
  make_inputs(u, dl, A, Bm, Cm, R);
  mirror m = {widen(u, NX), widen(dl, NX), widen(A, D * N), widen(Bm, NBC), widen(Cm, NBC)};
  for (int i = 0; i < NX; i++) m.R[i] = R[i];
  mirror_loss(&m);
  print_message("  clamps active: decay %d, update %d, state %d; nearest bound %.3f\n", m.active[0], m.active[1],
                m.active[2], m.margin);
  assert_true(m.active[0] > 0 && m.active[1] > 0 && m.active[2] > 0);
  assert_true(m.margin > MARGIN);

  bwt_selective_scan_clamped_forward(y, h, u, dl, A, Bm, Cm, B, T, D, N);
  double worst = 0;
  for (int i = 0; i < NX; i++) worst = fmax(worst, fabs(y[i] - m.y[i]) / fmax(fabs(m.y[i]), 1e-3));
  print_message("  fwd clamped scan max rel err %.2e (tol 1e-5)\n", worst);
  assert_true(worst < 1e-5);

  float du[NX] = {0}, ddl[NX] = {0}, dA[D * N] = {0}, dB[NBC] = {0}, dC[NBC] = {0}, g[NX * N];
  bwt_selective_scan_clamped_backward(du, ddl, dA, dB, dC, g, R, h, u, dl, A, Bm, Cm, B, T, D, N);
  check_grad("clamped du", &m, m.u, du, NX);
  check_grad("clamped ddelta", &m, m.dl, ddl, NX);
  check_grad("clamped dA", &m, m.A, dA, D * N);
  check_grad("clamped dB", &m, m.Bm, dB, NBC);
  check_grad("clamped dC", &m, m.Cm, dC, NBC);
  free(m.u), free(m.dl), free(m.A), free(m.Bm), free(m.Cm);
}

static double softplus_d(double x) { return x > 20 ? x : log1p(exp(x)); }

/* Δ = clamp(softplus(x), lo, hi), the shared decay −exp(min(A_log, max)) and the skip D·u: each
 * against its double formula and central differences, inputs on both sides of every bound. */
static void test_elementwise(void **state) {
  enum { n = 48, rows = 5 };
  const float lo = 1e-4f, hi = 3.0f, amax = 1.5f;
  float x[n], R[n], out[n], dx[n] = {0};
  for (int i = 0; i < n; i++) x[i] = -12.0f + 16.5f * (float)i / (n - 1) + 0.0371f; /* none at a kink */
  test_fill_uniform(R, n, -1, 1, 9);
  bwt_softplus_clamp_forward(out, x, lo, hi, n);
  bwt_softplus_clamp_backward(dx, R, x, lo, hi, n);
  double wf = 0, wg = 0;
  int clamped = 0;
  for (int i = 0; i < n; i++) {
    double f = clampd(softplus_d(x[i]), lo, hi), h = FD_STEP;
    double num = (clampd(softplus_d(x[i] + h), lo, hi) - clampd(softplus_d(x[i] - h), lo, hi)) / (2 * h) * R[i];
    clamped += f == lo || f == hi;
    wf = fmax(wf, fabs(out[i] - f) / fmax(f, 1e-6));
    wg = fmax(wg, fabs(dx[i] - num) / fmax(fabs(num), FD_FLOOR));
  }
  /* the shared decay: A (D', N') from A_log (N'), the gradient summed over the D' channels */
  enum { Dd = 3, Nn = 8 };
  float alog[Nn], A[Dd * Nn], dA[Dd * Nn], dlog[Nn] = {0};
  for (int k = 0; k < Nn; k++) alog[k] = -1.0f + 0.41f * (float)k; /* 1.87 > amax: clamped */
  test_fill_uniform(dA, Dd * Nn, -1, 1, 10);
  bwt_ssm_shared_decay_forward(A, alog, amax, Dd, Nn);
  bwt_ssm_shared_decay_backward(dlog, dA, alog, A, amax, Dd, Nn);
  for (int k = 0; k < Nn; k++) {
    double sum = 0, h = FD_STEP;
    for (int d = 0; d < Dd; d++) {
      double f = -exp(fmin(alog[k], amax));
      wf = fmax(wf, fabs(A[d * Nn + k] - f) / fabs(f));
      sum += dA[d * Nn + k] * (-exp(fmin(alog[k] + h, amax)) + exp(fmin(alog[k] - h, amax))) / (2 * h);
    }
    clamped += alog[k] > amax;
    wg = fmax(wg, fabs(dlog[k] - sum) / fmax(fabs(sum), FD_FLOOR));
  }
  /* the skip: out += D ⊙ u (linear: its gradients are exact sums) */
  float su[rows * Dd], sc[Dd], so[rows * Dd] = {0}, sdu[rows * Dd] = {0}, sds[Dd] = {0}, sR[rows * Dd];
  test_fill_uniform(su, rows * Dd, -2, 2, 11), test_fill_uniform(sc, Dd, -2, 2, 12), test_fill_uniform(sR, rows * Dd, -1, 1, 13);
  bwt_ssm_skip_forward(so, su, sc, rows, Dd);
  bwt_ssm_skip_backward(sdu, sds, sR, su, sc, rows, Dd);
  for (int d = 0; d < Dd; d++) {
    double s = 0;
    for (int r = 0; r < rows; r++) {
      int i = r * Dd + d;
      wf = fmax(wf, fabs(so[i] - (double)sc[d] * su[i]) / fmax(fabs((double)sc[d] * su[i]), 1e-3));
      wg = fmax(wg, fabs(sdu[i] - (double)sc[d] * sR[i]) / fmax(fabs((double)sc[d] * sR[i]), FD_FLOOR));
      s += (double)sR[i] * su[i];
    }
    wg = fmax(wg, fabs(sds[d] - s) / fmax(fabs(s), FD_FLOOR));
  }
  print_message("  softplus clamp / shared decay / skip: %d clamped inputs, fwd %.2e, fd %.2e\n", clamped, wf, wg);
  assert_true(clamped >= 3);
  assert_true(wf < 1e-5);
  assert_true(wg < FD_TOL);
}

/* A larger problem at 1 and at 2 threads: outputs and gradients bit for bit the same. */
static void test_thread_count_invariance(void **state) {
  enum { BB = 3, TT = 29, DD = 24, NN = 16 };
  size_t nx = (size_t)BB * TT * DD, nh = nx * NN, nbc = (size_t)BB * TT * NN;
  float *u = malloc(nx * 4), *dl = malloc(nx * 4), *A = malloc(DD * NN * 4), *Bm = malloc(nbc * 4),
        *Cm = malloc(nbc * 4), *dy = malloc(nx * 4);
  test_fill_uniform(u, nx, -3, 3, 1), test_fill_uniform(dl, nx, 0.05f, 3, 2), test_fill_uniform(A, DD * NN, -12, -0.01f, 3);
  test_fill_uniform(Bm, nbc, -3, 3, 4), test_fill_uniform(Cm, nbc, -1, 1, 5), test_fill_uniform(dy, nx, -1, 1, 6);
  const size_t sizes[7] = {nx, nh, nx, nx, DD * NN, nbc, nbc};
  float *res[2][7];
  for (int r = 0; r < 2; r++) {
    omp_set_num_threads(r + 1);
    for (int i = 0; i < 7; i++) res[r][i] = calloc(sizes[i], sizeof(float));
    float *g = calloc(nh, sizeof(float)), **o = res[r];
    bwt_selective_scan_clamped_forward(o[0], o[1], u, dl, A, Bm, Cm, BB, TT, DD, NN);
    bwt_selective_scan_clamped_backward(o[2], o[3], o[4], o[5], o[6], g, dy, o[1], u, dl, A, Bm, Cm, BB, TT, DD, NN);
    free(g);
  }
  for (int i = 0; i < 7; i++) {
    assert_memory_equal(res[0][i], res[1][i], sizes[i] * sizeof(float));
    free(res[0][i]), free(res[1][i]);
  }
  omp_set_num_threads(2);
  free(u), free(dl), free(A), free(Bm), free(Cm), free(dy);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_clamped_scan),
      cmocka_unit_test(test_elementwise),
      cmocka_unit_test(test_thread_count_invariance),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
