/* The modular-recurrence wind tunnel: its predictive against enumeration of every program
 * (a, b, x0) and the i.i.d. hypothesis, the two encodings, calibration, determinism, bad sizes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/task.h"
#include "testutil.h"

static bwt_task *make(int p, int length, int opaque) {
  bwt_task_config c;
  assert_int_equal(bwt_task_config_default(&c, "modular"), BWT_STATUS_OK);
  c.p = p, c.length = length, c.opaque = opaque;
  bwt_task *t = NULL;
  assert_int_equal(bwt_task_create(&t, &c), BWT_STATUS_OK);
  return t;
}

static bwt_task *make_sampled(bwt_batch *b, int p, int length, int opaque, int B, uint64_t seed) {
  bwt_task *t = make(p, length, opaque);
  assert_int_equal(bwt_batch_alloc(b, t, B), BWT_STATUS_OK);
  assert_int_equal(bwt_task_sample(t, seed, b), BWT_STATUS_OK);
  return t;
}

/* The values of sequence s and its relabelling (identity for integer tokens). */
static void decode(const bwt_batch *b, int s, int p, int length, int opaque, int *x, int *sigma) {
  const int32_t *tok = b->tokens + (size_t)s * b->T;
  int inv[64], off = opaque ? p + 1 : 0;
  for (int v = 0; v < p; v++) sigma[v] = opaque ? tok[v] : v;
  for (int v = 0; v < p; v++) inv[sigma[v]] = v;
  if (opaque) assert_int_equal(tok[p], p);
  for (int t = 0; t < length; t++) x[t] = inv[tok[off + t]];
}

/* P(x_k = y | x_0..x_{k-1}) from the joint: 1/2 · Σ_{a,b,x0} p^-3 [the program writes x_0..x_{k-1}, y]
 * + 1/2 · p^-(k+1), normalised over y. */
static void enumerate(double *q, const int *x, int k, int p) {
  double total = 0;
  for (int y = 0; y < p; y++) {
    double programs = 0;
    for (int a = 0; a < p; a++)
      for (int b = 0; b < p; b++)
        for (int x0 = 0; x0 < p; x0++) {
          int v = x0, ok = 1;
          for (int t = 0; t <= k && ok; t++) {
            ok = v == (t < k ? x[t] : y);
            v = (a * v + b) % p;
          }
          programs += ok;
        }
    q[y] = 0.5 * programs / ((double)p * p * p) + 0.5 * pow(p, -(k + 1));
    total += q[y];
  }
  for (int y = 0; y < p; y++) q[y] /= total;
}

static void test_predictive_matches_enumeration(void **state) {
  const int cases[][3] = {{3, 6, 0}, {5, 5, 0}, {2, 6, 0}, {5, 5, 1}, {4, 5, 0}, {7, 4, 1}};
  double worst = 0;
  long rows = 0, fixed_points = 0, mixed = 0;
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    int p = cases[c][0], len = cases[c][1], opaque = cases[c][2];
    bwt_batch b;
    bwt_task *t = make_sampled(&b, p, len, opaque, 400, 20 + c);
    int x[16], sigma[64];
    double q[64];
    for (int s = 0; s < b.B; s++) {
      decode(&b, s, p, len, opaque, x, sigma);
      for (int j = 0; j < len - 1; j++) {
        enumerate(q, x, j + 1, p);
        const double *post = b.posterior + ((size_t)s * (len - 1) + j) * p;
        double top = 0;
        for (int y = 0; y < p; y++) {
          worst = fmax(worst, fabs(post[sigma[y]] - q[y]));
          top = fmax(top, q[y]);
        }
        assert_int_equal(b.target[s * (len - 1) + j], sigma[x[j + 1]]);
        assert_int_equal(b.sup_pos[s * (len - 1) + j], (opaque ? p + 1 : 0) + j);
        rows++;
        mixed += top > 1.5 / p && top < 0.999;
        fixed_points += j >= 2 && x[0] == x[1] && x[1] == x[2];
      }
    }
    bwt_batch_free(&b);
    bwt_task_free(t);
  }
  print_message("  modular predictive vs enumeration of (a, b, x0): %ld rows (%ld mixed, %ld after a fixed "
                "point), max |diff| %.1e (tol 1e-12)\n", rows, mixed, fixed_points, worst);
  assert_true(worst < 1e-12);
  assert_true(mixed > 100 && fixed_points > 20); /* the cases that matter were seen */
}

static void test_layout(void **state) {
  bwt_task *t = make(17, 16, 0);
  assert_int_equal(t->vocab, 17), assert_int_equal(t->seq_len, 16), assert_int_equal(t->n_sup, 15);
  assert_int_equal(t->n_classes, 17);
  bwt_task_free(t);
  bwt_batch b;
  t = make_sampled(&b, 17, 16, 1, 50, 3);
  assert_int_equal(t->vocab, 18), assert_int_equal(t->seq_len, 34), assert_int_equal(t->n_sup, 15);
  int distinct = 0;
  for (int s = 0; s < b.B; s++) {
    int seen[17] = {0};
    for (int v = 0; v < 17; v++) seen[b.tokens[(size_t)s * b.T + v]]++;
    for (int v = 0; v < 17; v++) assert_int_equal(seen[v], 1); /* the header is a permutation */
    distinct |= memcmp(b.tokens, b.tokens + (size_t)s * b.T, sizeof(int32_t) * 17) != 0;
  }
  assert_true(distinct); /* a fresh relabelling per sequence */
  bwt_batch_free(&b);
  bwt_task_free(t);
}

/* Half the sequences are programs; and the sampled next token follows the predictive. */
static void test_calibration(void **state) {
  enum { P = 5, LEN = 6, B = 20000 };
  bwt_batch b;
  bwt_task *t = make_sampled(&b, P, LEN, 0, B, 4);
  int x[LEN], sigma[P];
  long consistent = 0;
  for (int s = 0; s < B; s++) {
    decode(&b, s, P, LEN, 0, x, sigma);
    int ok = 0;
    for (int a = 0; a < P && !ok; a++)
      for (int c = 0; c < P && !ok; c++) {
        ok = 1;
        for (int i = 1; i < LEN; i++) ok &= x[i] == (a * x[i - 1] + c) % P;
      }
    consistent += ok;
  }
  /* Programs (1/2) plus i.i.d. sequences that happen to fit one: 1/2 · p² · p / p^LEN. */
  double want = 0.5 + 0.5 * P * P * P / pow(P, LEN), sd = sqrt(B * want * (1 - want));
  assert_true(fabs(consistent - B * want) < 5 * sd);
  double worst = 0;
  for (int j = 0; j < LEN - 1; j++)
    for (int k = 0; k < P; k++) {
      double diff = 0, var = 0;
      for (int s = 0; s < B; s++) {
        double q = b.posterior[((size_t)s * (LEN - 1) + j) * P + k];
        diff += (b.target[s * (LEN - 1) + j] == k) - q;
        var += q * (1 - q);
      }
      worst = fmax(worst, fabs(diff) / sqrt(var));
    }
  print_message("  modular: %ld of %d sequences fit a program (expected %.0f); targets vs predictive "
                "worst %.2f sd (bound 5)\n", consistent, B, B * want, worst);
  assert_true(worst < 5);
  bwt_batch_free(&b);
  bwt_task_free(t);
}

static void test_determinism(void **state) {
  bwt_batch a, c;
  bwt_task *t = make_sampled(&a, 17, 16, 1, 8, 5), *t2 = make_sampled(&c, 17, 16, 1, 8, 5);
  assert_memory_equal(a.tokens, c.tokens, sizeof(int32_t) * 8 * a.T);
  assert_memory_equal(a.posterior, c.posterior, sizeof(double) * 8 * a.n_sup * 17);
  assert_int_equal(bwt_task_sample(t2, 6, &c), BWT_STATUS_OK);
  assert_memory_not_equal(a.tokens, c.tokens, sizeof(int32_t) * 8 * a.T);
  bwt_batch_free(&a), bwt_batch_free(&c);
  bwt_task_free(t), bwt_task_free(t2);
}

static void test_bad_configs(void **state) {
  const int bad[][2] = {{1, 16}, {258, 16}, {17, 1}, {17, 5000}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    bwt_task_config c;
    assert_int_equal(bwt_task_config_default(&c, "modular"), BWT_STATUS_OK);
    c.p = bad[i][0], c.length = bad[i][1];
    bwt_task *t = NULL;
    assert_int_equal(bwt_task_create(&t, &c), BWT_STATUS_ARG);
    assert_null(t);
    assert_non_null(strstr(bwt_last_error(), i < 2 ? "p must be in" : "length must be in"));
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_predictive_matches_enumeration),
      cmocka_unit_test(test_layout),
      cmocka_unit_test(test_calibration),
      cmocka_unit_test(test_determinism),
      cmocka_unit_test(test_bad_configs),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
