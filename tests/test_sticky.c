/* The sticky Markov chain: its transition row and floor as SPEC.md states them, the exact
 * predictive against enumeration of every symbol path, the inputs' noise, calibration, bad sizes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/task.h"
#include "testutil.h"

static bwt_task *make_sampled(bwt_batch *b, int len, int B, uint64_t seed) {
  bwt_task_config c;
  assert_int_equal(bwt_task_config_default(&c, "sticky"), BWT_STATUS_OK);
  c.chain_len = len;
  bwt_task *t = NULL;
  assert_int_equal(bwt_task_create(&t, &c), BWT_STATUS_OK);
  assert_int_equal(bwt_batch_alloc(b, t, B), BWT_STATUS_OK);
  assert_int_equal(bwt_task_sample(t, seed, b), BWT_STATUS_OK);
  return t;
}

static void test_transitions_and_floor(void **state) {
  double P[8][8];
  bwt_sticky_transitions(P);
  const double row0[8] = {0.34980, 0.16601, 0.08300, 0.05534, 0.04150, 0.05534, 0.08300, 0.16601};
  for (int j = 0; j < 8; j++) assert_float_equal(P[0][j], row0[j], 5e-6); /* SPEC.md §1.3 */
  for (int i = 0; i < 8; i++) {
    double sum = 0;
    for (int j = 0; j < 8; j++) {
      sum += P[i][j];
      assert_float_equal(P[i][j], P[0][(j - i + 8) % 8], 1e-15); /* circulant */
    }
    assert_float_equal(sum, 1.0, 1e-15);
  }
  double floor_bits = bwt_sticky_floor_bits();
  print_message("  sticky floor %.5f nats = %.4f bits\n", floor_bits * log(2.0), floor_bits);
  assert_float_equal(floor_bits * log(2.0), 1.82919, 5e-6);
}

/* q(y) ∝ Σ over paths y_0..y_i of (1/8) Π P[y_{s−1}, y_s] Π exp(−|x_s − μ[y_s]|²/2) · P[y_i, y]. */
static void enumerate(double *q, const float *x, int i, double P[8][8], double mu[8][20]) {
  double lik[8][8], total = 0; /* lik[s][y]: emission at position s for symbol y, relative */
  for (int s = 0; s <= i; s++)
    for (int y = 0; y < 8; y++) {
      double d2 = 0;
      for (int d = 0; d < 20; d++) d2 += (x[s * 20 + d] - mu[y][d]) * (x[s * 20 + d] - mu[y][d]);
      lik[s][y] = exp(-0.5 * d2 + 0.5 * 20 * 4); /* a constant factor keeps the product in range */
    }
  for (int y = 0; y < 8; y++) q[y] = 0;
  int path[8] = {0};
  for (;;) {
    double w = lik[0][path[0]] / 8;
    for (int s = 1; s <= i; s++) w *= P[path[s - 1]][path[s]] * lik[s][path[s]];
    for (int y = 0; y < 8; y++) q[y] += w * P[path[i]][y];
    total += w;
    int s = 0;
    while (s <= i && ++path[s] == 8) path[s++] = 0;
    if (s > i) break;
  }
  for (int y = 0; y < 8; y++) q[y] /= total;
}

static void test_posterior_matches_enumeration(void **state) {
  enum { LEN = 4, B = 40 };
  double P[8][8], mu[8][20], q[8], worst = 0;
  bwt_sticky_transitions(P);
  bwt_sticky_embeddings(mu);
  bwt_batch b;
  bwt_task *t = make_sampled(&b, LEN, B, 3);
  assert_int_equal(t->input_dim, 20), assert_int_equal(t->vocab, 0), assert_int_equal(t->n_classes, 8);
  for (int s = 0; s < B; s++)
    for (int i = 0; i < LEN; i++) {
      enumerate(q, b.inputs + (size_t)s * LEN * 20, i, P, mu);
      for (int y = 0; y < 8; y++) worst = fmax(worst, fabs(b.posterior[((size_t)s * LEN + i) * 8 + y] - q[y]));
      assert_int_equal(b.sup_pos[s * LEN + i], i);
    }
  print_message("  sticky predictive vs path enumeration: %d rows, max |diff| %.1e (tol 1e-12)\n", B * LEN, worst);
  assert_true(worst < 1e-12);
  bwt_batch_free(&b);
  bwt_task_free(t);
}

/* The input at position i is μ[y_i] + N(0, I), and y_i is the target of position i − 1; the
 * targets follow the predictive. */
static void test_inputs_and_calibration(void **state) {
  enum { LEN = 6, B = 4000 };
  double mu[8][20];
  bwt_sticky_embeddings(mu);
  bwt_batch b;
  bwt_task *t = make_sampled(&b, LEN, B, 4);
  double sum = 0, sumsq = 0;
  long n = 0;
  for (int s = 0; s < B; s++)
    for (int i = 1; i < LEN; i++) {
      int y = b.target[s * LEN + i - 1];
      for (int d = 0; d < 20; d++) {
        double e = b.inputs[((size_t)s * LEN + i) * 20 + d] - mu[y][d];
        sum += e, sumsq += e * e, n++;
      }
    }
  double mean = sum / n, var = sumsq / n - mean * mean;
  print_message("  sticky input noise: mean %.4f, variance %.4f over %ld values\n", mean, var, n);
  assert_true(fabs(mean) < 5 / sqrt((double)n) && fabs(var - 1) < 0.02);
  double worst = 0;
  for (int i = 0; i < LEN; i++)
    for (int k = 0; k < 8; k++) {
      double diff = 0, v = 0;
      for (int s = 0; s < B; s++) {
        double q = b.posterior[((size_t)s * LEN + i) * 8 + k];
        diff += (b.target[s * LEN + i] == k) - q;
        v += q * (1 - q);
      }
      worst = fmax(worst, fabs(diff) / sqrt(v));
    }
  print_message("  sticky targets vs predictive: worst %.2f sd (bound 5)\n", worst);
  assert_true(worst < 5);
  bwt_batch_free(&b);
  bwt_task_free(t);
}

static void test_bad_config(void **state) {
  bwt_task_config c;
  assert_int_equal(bwt_task_config_default(&c, "sticky"), BWT_STATUS_OK);
  assert_int_equal(c.chain_len, 1999);
  c.chain_len = 0;
  bwt_task *t = NULL;
  assert_int_equal(bwt_task_create(&t, &c), BWT_STATUS_ARG);
  assert_non_null(strstr(bwt_last_error(), "chain-len must be in"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_transitions_and_floor),
      cmocka_unit_test(test_posterior_matches_enumeration),
      cmocka_unit_test(test_inputs_and_calibration),
      cmocka_unit_test(test_bad_config),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
