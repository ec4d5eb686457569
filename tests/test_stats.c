/* Statistics for the geometry diagnostics: PCA on data whose sample covariance is exactly known,
 * correlations against hand-computed values, cosine structure of orthonormal, equal and Gaussian
 * rows, ridge probes on linear and on independent targets, and every refusal. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/lab/stats.h"
#include "testutil.h"

/* splitmix64 and Box–Muller: a fixed-seed Gaussian stream independent of the library's RNG. */
static uint64_t sm_next(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
static double sm_uniform(uint64_t *s) { return ((sm_next(s) >> 11) + 0.5) * 0x1.0p-53; } /* (0,1) */
static double sm_gauss(uint64_t *s) {
  double u = sm_uniform(s), v = sm_uniform(s);
  return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

/* x_t = offset + a_t·w1 + b_t·w2 in d = 8 with integer entries, so the float rows are exact.
 * a, b are period-8 triangle waves: zero mean, Σab = 0, Σa² = Σb² = 12 per period, so the sample
 * covariance is (n/8·12/(n−1))·(w1w1ᵀ + w2w2ᵀ) exactly, with eigenvalues ∝ |w1|² = 29, |w2|² = 7. */
static const int tri_a[8] = {2, 1, 0, -1, -2, -1, 0, 1}, tri_b[8] = {0, 1, 2, 1, 0, -1, -2, -1};
static const double w1[8] = {4, 2, -2, 1, 0, 0, 0, 2}, w2[8] = {1, -1, 1, 0, 0, 2, 0, 0};
static const double offset[8] = {5, -3, 0, 7, 1, -2, 4, 0};

static void test_pca_known_spectrum(void **state) {
  enum { N = 2000, D = 8, LD = 11 }; /* LD > D: the padding holds NaN, which must never be read */
  float *X = malloc(sizeof(float) * N * LD);
  assert_non_null(X);
  for (int t = 0; t < N; t++)
    for (int j = 0; j < LD; j++)
      X[t * LD + j] = j < D ? (float)(offset[j] + tri_a[t % 8] * w1[j] + tri_b[t % 8] * w2[j]) : NAN;
  bwt_pca p;
  assert_int_equal(bwt_pca_compute(&p, X, N, D, LD, 3), BWT_STATUS_OK);
  assert_int_equal(p.n, N), assert_int_equal(p.d, D), assert_int_equal(p.k, 3);
  print_message("  pca: pc1 %.15f (29/36 = %.15f) pc12 %.15f dims90 %d PR %.12f (1296/890 = %.12f)\n",
                p.pc1, 29.0 / 36, p.pc12, p.dims90, p.participation_ratio, 1296.0 / 890);
  assert_float_equal(p.pc1, 29.0 / 36, 1e-9);
  assert_float_equal(p.pc12, 1.0, 1e-9);
  assert_float_equal(p.explained[1], 7.0 / 36, 1e-9);
  double total = 0;
  for (int j = 0; j < D; j++) {
    total += p.explained[j];
    assert_true(p.explained[j] >= 0);
    if (j > 0) assert_true(p.explained[j] <= p.explained[j - 1]);
  }
  assert_float_equal(total, 1.0, 1e-12);
  assert_int_equal(p.dims90, 2); /* 29/36 = 0.806 < 0.9 */
  assert_float_equal(p.participation_ratio, 1296.0 / 890, 1e-9);

  /* The largest entries of w1 (4) and w2 (2) are positive and unique, so the signs are fixed. */
  double n1 = sqrt(29.0), n2 = sqrt(7.0), worst_c = 0, worst_s = 0;
  for (int j = 0; j < D; j++) {
    worst_c = fmax(worst_c, fabs(p.components[j] - w1[j] / n1));
    worst_c = fmax(worst_c, fabs(p.components[D + j] - w2[j] / n2));
  }
  for (int t = 0; t < N; t++) {
    worst_s = fmax(worst_s, fabs(p.scores[t * 3 + 0] - tri_a[t % 8] * n1));
    worst_s = fmax(worst_s, fabs(p.scores[t * 3 + 1] - tri_b[t % 8] * n2));
  }
  double unit = 0; /* PC3 lies in the null space: unit length, orthogonal to w1, w2 */
  double o1 = 0, o2 = 0;
  for (int j = 0; j < D; j++) {
    double c = p.components[2 * D + j];
    unit += c * c, o1 += c * w1[j], o2 += c * w2[j];
  }
  print_message("  pca: max |component − u| %.1e, max |score − a·s| %.1e (tol 1e-9)\n", worst_c, worst_s);
  assert_true(worst_c < 1e-9);
  assert_true(worst_s < 1e-9);
  assert_float_equal(unit, 1.0, 1e-12);
  assert_true(fabs(o1) < 1e-9 && fabs(o2) < 1e-9);
  bwt_pca_free(&p);
  bwt_pca_free(&p); /* idempotent */
  assert_null(p.explained);

  /* k beyond d is clamped; k = 0 keeps only the spectrum. */
  assert_int_equal(bwt_pca_compute(&p, X, N, D, LD, 50), BWT_STATUS_OK);
  assert_int_equal(p.k, D);
  bwt_pca_free(&p);
  assert_int_equal(bwt_pca_compute(&p, X, N, D, LD, 0), BWT_STATUS_OK);
  assert_int_equal(p.k, 0);
  assert_float_equal(p.pc1, 29.0 / 36, 1e-9);
  bwt_pca_free(&p);
  free(X);
}

static void test_pca_rejects(void **state) {
  float X[4 * 3] = {1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3};
  bwt_pca p = {0};
  bwt_pca_free(&p); /* safe on a zeroed struct */
  assert_int_equal(bwt_pca_compute(&p, X, 1, 3, 3, 2), BWT_STATUS_ARG);
  assert_non_null(strstr(bwt_last_error(), "n >= 2"));
  assert_int_equal(bwt_pca_compute(&p, X, 4, 3, 2, 2), BWT_STATUS_ARG);
  assert_non_null(strstr(bwt_last_error(), "ld"));
  assert_int_equal(bwt_pca_compute(&p, X, 4, 3, 3, -1), BWT_STATUS_ARG);
  assert_int_equal(bwt_pca_compute(&p, NULL, 4, 3, 3, 2), BWT_STATUS_ARG);
  assert_int_equal(bwt_pca_compute(&p, X, 4, 3, 3, 2), BWT_STATUS_NUMERIC); /* identical rows */
  assert_non_null(strstr(bwt_last_error(), "zero variance"));
  assert_null(p.explained), assert_null(p.components), assert_null(p.scores);
  X[7] = NAN;
  assert_int_equal(bwt_pca_compute(&p, X, 4, 3, 3, 2), BWT_STATUS_NUMERIC);
  assert_non_null(strstr(bwt_last_error(), "X[2][1] is not finite"));
  X[7] = INFINITY;
  assert_int_equal(bwt_pca_compute(&p, X, 4, 3, 3, 2), BWT_STATUS_NUMERIC);
  bwt_pca_free(&p);
}

static void test_pearson_spearman(void **state) {
  double x[20], y[20], z[20];
  for (int i = 0; i < 20; i++) x[i] = i + 1, y[i] = 3 * x[i] - 7, z[i] = -0.5 * x[i] + 2;
  assert_float_equal(bwt_pearson(x, y, 20), 1.0, 1e-15);
  assert_float_equal(bwt_pearson(x, z, 20), -1.0, 1e-15);

  /* Sxy = 6, Sxx = 10, Syy = 6 by hand: r = 6/√60. */
  const double hx[5] = {1, 2, 3, 4, 5}, hy[5] = {2, 4, 5, 4, 5};
  double r = bwt_pearson(hx, hy, 5);
  print_message("  pearson hand example %.15f (6/sqrt(60) = %.15f)\n", r, 6 / sqrt(60.0));
  assert_float_equal(r, 6 / sqrt(60.0), 1e-14);

  /* y = x³ is monotone: Spearman is exactly 1 while Pearson is not. */
  for (int i = 0; i < 20; i++) y[i] = x[i] * x[i] * x[i], z[i] = -y[i];
  double rp = bwt_pearson(x, y, 20), rs = bwt_spearman(x, y, 20);
  print_message("  y = x^3 on 1..20: pearson %.6f spearman %.15f\n", rp, rs);
  assert_true(rp < 0.95);
  assert_float_equal(rs, 1.0, 1e-15);
  assert_float_equal(bwt_spearman(x, z, 20), -1.0, 1e-15);

  /* Average ranks rx = (1, 2.5, 2.5, 4, 5), ry = (1, 4, 2.5, 2.5, 5): ρ = 7.25 / 9.5. */
  const double tx[5] = {1, 2, 2, 3, 4}, ty[5] = {1, 3, 2, 2, 5};
  double rt = bwt_spearman(tx, ty, 5);
  print_message("  spearman with ties %.15f (7.25/9.5 = %.15f)\n", rt, 7.25 / 9.5);
  assert_float_equal(rt, 7.25 / 9.5, 1e-14);
  const double ux[5] = {4, 2, 3, 2, 1}, uy[5] = {5, 2, 2, 3, 1}; /* same pairs, shuffled */
  assert_float_equal(bwt_spearman(ux, uy, 5), 7.25 / 9.5, 1e-14);

  const double flat[5] = {2, 2, 2, 2, 2};
  assert_true(isnan(bwt_pearson(hx, flat, 5)));
  assert_true(isnan(bwt_pearson(flat, hx, 5)));
  assert_true(isnan(bwt_spearman(hx, flat, 5)));
  assert_true(isnan(bwt_pearson(hx, hy, 1)));
  assert_true(isnan(bwt_spearman(hx, hy, 1)));
}

static int parity(int v) {
  int p = 0;
  for (; v; v >>= 1) p ^= v & 1;
  return p;
}

static void test_cosine_structure(void **state) {
  enum { D = 8, LD = 11 };
  float I[D * D] = {0};
  for (int i = 0; i < D; i++) I[i * D + i] = 1;
  double C[D * D];
  bwt_cosine_matrix(C, I, D, D, D);
  for (int i = 0; i < D * D; i++) assert_float_equal(C[i], (i % (D + 1)) == 0, 1e-15);
  assert_float_equal(bwt_mean_abs_offdiag_cos(I, D, D, D), 0.0, 1e-15);

  /* A rotated orthonormal set: Sylvester-Hadamard rows / √8 stored with stride LD; the padding is
   * NaN so a wrong stride shows. */
  float H[D * LD];
  for (int i = 0; i < D; i++)
    for (int j = 0; j < LD; j++)
      H[i * LD + j] = j < D ? (parity(i & j) ? -1.0f : 1.0f) / sqrtf(8.0f) : NAN;
  bwt_cosine_matrix(C, H, D, D, LD);
  double worst = 0;
  for (int i = 0; i < D; i++)
    for (int j = 0; j < D; j++) worst = fmax(worst, fabs(C[i * D + j] - (i == j)));
  double mh = bwt_mean_abs_offdiag_cos(H, D, D, LD);
  print_message("  hadamard rows (ld %d): max |C − I| %.1e, mean |offdiag cos| %.1e (tol 1e-12)\n",
                LD, worst, mh);
  assert_true(worst < 1e-12);
  assert_true(mh < 1e-12);

  /* Equal rows → 1; a negated row → −1 with |cos| 1; a zero row → 0 (1 with itself). */
  float E[4 * 3] = {1, -2, 3, 1, -2, 3, -1, 2, -3, 0, 0, 0};
  double CE[16];
  bwt_cosine_matrix(CE, E, 3, 3, 3);
  assert_float_equal(CE[1], 1.0, 1e-12), assert_float_equal(CE[2], -1.0, 1e-12);
  assert_float_equal(bwt_mean_abs_offdiag_cos(E, 3, 3, 3), 1.0, 1e-12);
  bwt_cosine_matrix(CE, E, 4, 3, 3);
  assert_float_equal(CE[3], 0.0, 0), assert_float_equal(CE[15], 1.0, 0);
  assert_float_equal(bwt_mean_abs_offdiag_cos(E, 4, 3, 3), 0.5, 1e-12); /* 6 of 12 pairs have 1 */
  assert_true(isnan(bwt_mean_abs_offdiag_cos(E, 1, 3, 3)));
}

static void test_gaussian_cosine(void **state) {
  enum { N = 200, D = 64, LD = 70 };
  float *X = malloc(sizeof(float) * N * LD);
  assert_non_null(X);
  uint64_t s = 12345;
  for (int i = 0; i < N * LD; i++) X[i] = (float)sm_gauss(&s);
  double m = bwt_mean_abs_offdiag_cos(X, N, D, LD), g = bwt_gaussian_abs_cos(D);
  print_message("  gaussian rows n %d d %d: mean |cos| %.5f, sqrt(2/(pi d)) %.5f, rel diff %.2f%% (tol 5%%)\n",
                N, D, m, g, 100 * fabs(m / g - 1));
  assert_float_equal(g, sqrt(2 / (3.141592653589793 * 64)), 1e-15);
  assert_true(fabs(m / g - 1) < 0.05);
  free(X);
}

static void test_linear_probe(void **state) {
  enum { N = 400, D = 10, LD = 12, NT = 300 };
  float *X = malloc(sizeof(float) * N * LD);
  double y[N], coef[D];
  assert_non_null(X);
  test_fill_uniform(X, (size_t)N * LD, -1, 1, 7);
  for (int j = 0; j < D; j++) coef[j] = j - 4.5;
  for (int i = 0; i < N; i++) {
    y[i] = 3.0;
    for (int j = 0; j < D; j++) y[i] += coef[j] * X[i * LD + j];
  }
  double r2 = NAN;
  assert_int_equal(bwt_linear_probe_r2(&r2, X, y, N, D, LD, NT, 1e-10), BWT_STATUS_OK);
  print_message("  probe, linear target: held-out R^2 1 − %.1e (need > 1 − 1e-6)\n", 1 - r2);
  assert_true(r2 > 1 - 1e-6 && r2 <= 1);

  /* A constant column and ridge 0 make XᵀX singular: the jittered retry must still fit. */
  for (int i = 0; i < N; i++) X[i * LD + 3] = 7.0f;
  for (int i = 0; i < N; i++) {
    y[i] = 3.0;
    for (int j = 0; j < D; j++) y[i] += (j == 3 ? 0 : coef[j]) * X[i * LD + j];
  }
  assert_int_equal(bwt_linear_probe_r2(&r2, X, y, N, D, LD, NT, 0.0), BWT_STATUS_OK);
  print_message("  probe, singular XtX with ridge 0: held-out R^2 1 − %.1e\n", 1 - r2);
  assert_true(r2 > 1 - 1e-6);

  /* Independent targets: nothing to learn, so held-out R² is near or below 0. */
  uint64_t s = 99;
  for (int i = 0; i < N; i++) y[i] = sm_gauss(&s);
  assert_int_equal(bwt_linear_probe_r2(&r2, X, y, N, D, LD, NT, 1e-3), BWT_STATUS_OK);
  print_message("  probe, independent noise: held-out R^2 %.4f (need < 0.1)\n", r2);
  assert_true(r2 < 0.1);
  assert_true(r2 > -0.5); /* a sane fit, not a blow-up */

  assert_int_equal(bwt_linear_probe_r2(&r2, X, y, N, D, LD, N, 1e-3), BWT_STATUS_ARG);
  assert_non_null(strstr(bwt_last_error(), "n_train"));
  assert_int_equal(bwt_linear_probe_r2(&r2, X, y, N, D, LD, 1, 1e-3), BWT_STATUS_ARG);
  assert_int_equal(bwt_linear_probe_r2(&r2, X, y, N, D, LD, NT, -1), BWT_STATUS_ARG);
  assert_non_null(strstr(bwt_last_error(), "ridge"));
  assert_int_equal(bwt_linear_probe_r2(&r2, X, y, N, D, LD, NT, NAN), BWT_STATUS_ARG);
  assert_int_equal(bwt_linear_probe_r2(&r2, X, y, N, D, D - 1, NT, 1e-3), BWT_STATUS_ARG);
  assert_int_equal(bwt_linear_probe_r2(&r2, X, y, N, 0, LD, NT, 1e-3), BWT_STATUS_ARG);
  assert_int_equal(bwt_linear_probe_r2(&r2, X, y, N, D, LD, N - 1, 1e-3), BWT_STATUS_NUMERIC);
  assert_non_null(strstr(bwt_last_error(), "zero variance")); /* one held-out row */
  y[5] = NAN;
  assert_int_equal(bwt_linear_probe_r2(&r2, X, y, N, D, LD, NT, 1e-3), BWT_STATUS_NUMERIC);
  free(X);
}

/* The single-pair cosine and the float entropy. */
static void test_cosine_and_entropy(void **state) {
  const float a[3] = {1, 2, 2}, b[3] = {2, 4, 4}, c[3] = {2, -1, 0}, z[3] = {0, 0, 0};
  assert_float_equal(bwt_cosine(a, b, 3), 1.0, 1e-15);
  assert_float_equal(bwt_cosine(a, c, 3), 0.0, 1e-15);
  assert_float_equal(bwt_cosine(a, z, 3), 0.0, 0.0);
  const float uniform[8] = {0.125f, 0.125f, 0.125f, 0.125f, 0.125f, 0.125f, 0.125f, 0.125f};
  const float half[3] = {0.5f, 0.0f, 0.5f};
  assert_float_equal(bwt_entropy_bits_float(uniform, 8), 3.0, 1e-12);
  assert_float_equal(bwt_entropy_bits_float(half, 3), 1.0, 1e-12);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pca_known_spectrum), cmocka_unit_test(test_pca_rejects),
      cmocka_unit_test(test_pearson_spearman),   cmocka_unit_test(test_cosine_structure),
      cmocka_unit_test(test_gaussian_cosine),    cmocka_unit_test(test_linear_probe),
      cmocka_unit_test(test_cosine_and_entropy),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
