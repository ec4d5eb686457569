/* The HMM wind tunnel: its filtering posterior against enumeration of every hidden-state path,
 * the discretised matrices read back from the tokens, the layout, calibration of the sampled
 * states, determinism, bad sizes, and config.json. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "bwt/task.h"
#include "bwt/train.h"
#include "testutil.h"

enum { TOK_TRANS = 96, TOK_EMIT = 97, TOK_SEP = 98, TOK_OBS = 99, TOK_SYMBOL = 100 };

static bwt_task *make(int S, int O, int K) {
  bwt_task_config c;
  assert_int_equal(bwt_task_config_default(&c, "hmm"), BWT_STATUS_OK);
  c.S = S, c.O = O, c.K = K;
  bwt_task *t = NULL;
  assert_int_equal(bwt_task_create(&t, &c), BWT_STATUS_OK);
  return t;
}

static bwt_task *make_sampled(bwt_batch *b, int S, int O, int K, int B, uint64_t seed) {
  bwt_task *t = make(S, O, K);
  assert_int_equal(bwt_batch_alloc(b, t, B), BWT_STATUS_OK);
  assert_int_equal(bwt_task_sample(t, seed, b), BWT_STATUS_OK);
  return t;
}

/* The matrices of sequence `tok` as read from its tokens, in cents; checks every entry is a
 * probability token and every row sums to exactly 100 cents. */
static void read_matrices(const int32_t *tok, int S, int O, int *trans, int *emit) {
  int p = 0;
  assert_int_equal(tok[p++], TOK_TRANS);
  for (int i = 0; i < S * S; i++) trans[i] = tok[p++] + 5;
  assert_int_equal(tok[p++], TOK_EMIT);
  for (int i = 0; i < S * O; i++) emit[i] = tok[p++] + 5;
  assert_int_equal(tok[p++], TOK_SEP);
  for (int r = 0; r < S; r++) {
    int st = 0, se = 0;
    for (int j = 0; j < S; j++) {
      assert_true(trans[r * S + j] >= 5 && trans[r * S + j] <= 100);
      st += trans[r * S + j];
    }
    for (int j = 0; j < O; j++) {
      assert_true(emit[r * O + j] >= 5 && emit[r * O + j] <= 100);
      se += emit[r * O + j];
    }
    assert_int_equal(st, 100);
    assert_int_equal(se, 100);
  }
}

/* p(s_t | o_0..o_t) by summing the joint probability of every state path s_0..s_t (uniform
 * initial state), independent of the task's forward algorithm. */
static void enumerate_posterior(double *q, const int *trans, const int *emit, const int *obs, int t,
                                int S, int O) {
  int path[16] = {0};
  double total = 0;
  for (int s = 0; s < S; s++) q[s] = 0;
  for (;;) {
    double w = 1.0 / S * emit[path[0] * O + obs[0]] / 100.0;
    for (int i = 1; i <= t; i++)
      w *= trans[path[i - 1] * S + path[i]] / 100.0 * (emit[path[i] * O + obs[i]] / 100.0);
    q[path[t]] += w;
    total += w;
    int i = 0; /* next path, as an odometer */
    while (i <= t && ++path[i] == S) path[i++] = 0;
    if (i > t) break;
  }
  for (int s = 0; s < S; s++) q[s] /= total;
}

static void check_enumeration(int S, int O, int K, int B, uint64_t seed, double *worst, long *rows) {
  bwt_batch b;
  bwt_task *t = make_sampled(&b, S, O, K, B, seed);
  int trans[400], emit[400], obs[16];
  double q[20];
  for (int s = 0; s < B; s++) {
    const int32_t *tok = b.tokens + (size_t)s * b.T;
    read_matrices(tok, S, O, trans, emit);
    for (int j = 0; j < K; j++) {
      obs[j] = tok[b.sup_pos[s * K + j]] - TOK_SYMBOL;
      enumerate_posterior(q, trans, emit, obs, j, S, O);
      const double *post = b.posterior + ((size_t)s * K + j) * S;
      for (int k = 0; k < S; k++) *worst = fmax(*worst, fabs(post[k] - q[k]));
      (*rows)++;
    }
  }
  bwt_batch_free(&b);
  bwt_task_free(t);
}

static void test_posterior_matches_enumeration(void **state) {
  double worst = 0;
  long rows = 0;
  check_enumeration(2, 2, 8, 200, 1, &worst, &rows);
  check_enumeration(3, 4, 6, 200, 2, &worst, &rows);
  check_enumeration(5, 5, 5, 100, 3, &worst, &rows);
  check_enumeration(4, 2, 7, 100, 4, &worst, &rows);
  print_message("  hmm posterior vs path enumeration: %ld rows, max |diff| %.1e (tol 1e-12)\n", rows, worst);
  assert_true(worst < 1e-12);
}

/* Every probability token is a hundredth in [0.05, 1], rows sum to 1, over many draws and sizes;
 * at S = 20 the floor leaves exactly 0.05 everywhere. */
static void test_discretisation(void **state) {
  const int sizes[][2] = {{5, 5}, {2, 2}, {7, 3}, {20, 20}, {3, 20}};
  int trans[400], emit[400];
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    int S = sizes[i][0], O = sizes[i][1];
    bwt_batch b;
    bwt_task *t = make_sampled(&b, S, O, 1, 500, 10 + i);
    int distinct = 0;
    for (int s = 0; s < b.B; s++) {
      read_matrices(b.tokens + (size_t)s * b.T, S, O, trans, emit);
      if (s > 0 && memcmp(b.tokens + (size_t)s * b.T, b.tokens, sizeof(int32_t) * (3 + S * S + S * O)) != 0)
        distinct = 1;
    }
    if (S == 20)
      for (int j = 0; j < S * S; j++) assert_int_equal(trans[j], 5);
    else
      assert_true(distinct); /* a fresh HMM per sequence */
    bwt_batch_free(&b);
    bwt_task_free(t);
  }
}

static void test_layout(void **state) {
  bwt_batch b;
  bwt_task *t = make_sampled(&b, 5, 5, 20, 4, 5);
  assert_int_equal(t->vocab, 105);
  assert_int_equal(t->seq_len, 53 + 2 * 20);
  assert_int_equal(t->n_sup, 20);
  assert_int_equal(t->n_classes, 5);
  assert_int_equal(t->input_dim, 0);
  for (int s = 0; s < b.B; s++)
    for (int j = 0; j < 20; j++) {
      const int32_t *tok = b.tokens + (size_t)s * b.T;
      assert_int_equal(b.sup_pos[s * 20 + j], 54 + 2 * j);
      assert_int_equal(tok[53 + 2 * j], TOK_OBS);
      assert_true(tok[54 + 2 * j] >= TOK_SYMBOL && tok[54 + 2 * j] < TOK_SYMBOL + 5);
      assert_true(b.target[s * 20 + j] >= 0 && b.target[s * 20 + j] < 5);
      double sum = 0;
      for (int k = 0; k < 5; k++) sum += b.posterior[((size_t)s * 20 + j) * 5 + k];
      assert_float_equal(sum, 1.0, 1e-12);
    }
  bwt_batch_free(&b);
  bwt_task_free(t);
}

/* The sampled state is drawn from the posterior: per position and state, the count of targets
 * equals the summed posterior within 5 standard deviations. */
static void test_targets_calibrated(void **state) {
  enum { S = 3, K = 6, B = 20000 };
  bwt_batch b;
  bwt_task *t = make_sampled(&b, S, 4, K, B, 6);
  double worst = 0;
  for (int j = 0; j < K; j++)
    for (int k = 0; k < S; k++) {
      double diff = 0, var = 0;
      for (int s = 0; s < B; s++) {
        double q = b.posterior[((size_t)s * K + j) * S + k];
        diff += (b.target[s * K + j] == k) - q;
        var += q * (1 - q);
      }
      worst = fmax(worst, fabs(diff) / sqrt(var));
    }
  print_message("  hmm targets vs posterior: worst %.2f standard deviations (bound 5)\n", worst);
  assert_true(worst < 5);
  bwt_batch_free(&b);
  bwt_task_free(t);
}

static void test_determinism(void **state) {
  bwt_task *t = make(5, 5, 10);
  bwt_batch a, b;
  assert_int_equal(bwt_batch_alloc(&a, t, 6), BWT_STATUS_OK);
  assert_int_equal(bwt_batch_alloc(&b, t, 6), BWT_STATUS_OK);
  assert_int_equal(bwt_task_sample(t, 9, &a), BWT_STATUS_OK);
#ifdef _OPENMP
  int before = omp_get_max_threads();
  omp_set_num_threads(before > 1 ? 1 : 2);
#endif
  assert_int_equal(bwt_task_sample(t, 9, &b), BWT_STATUS_OK);
#ifdef _OPENMP
  omp_set_num_threads(before);
#endif
  assert_memory_equal(a.tokens, b.tokens, sizeof(int32_t) * 6 * a.T);
  assert_memory_equal(a.target, b.target, sizeof(int32_t) * 6 * a.n_sup);
  assert_memory_equal(a.posterior, b.posterior, sizeof(double) * 6 * a.n_sup * 5);
  assert_int_equal(bwt_task_sample(t, 10, &b), BWT_STATUS_OK);
  assert_memory_not_equal(a.tokens, b.tokens, sizeof(int32_t) * 6 * a.T);
  bwt_batch_free(&a), bwt_batch_free(&b);
  bwt_task_free(t);
}

static void assert_bad(int S, int O, int K, const char *needle) {
  bwt_task_config c;
  assert_int_equal(bwt_task_config_default(&c, "hmm"), BWT_STATUS_OK);
  c.S = S, c.O = O, c.K = K;
  bwt_task *t = NULL;
  assert_int_equal(bwt_task_create(&t, &c), BWT_STATUS_ARG);
  assert_null(t);
  if (!strstr(bwt_last_error(), needle)) fail_msg("message '%s' lacks '%s'", bwt_last_error(), needle);
}

static void test_bad_configs(void **state) {
  assert_bad(1, 5, 20, "S (states)");
  assert_bad(21, 5, 20, "S (states)");
  assert_bad(5, 1, 20, "O (symbols)");
  assert_bad(5, 21, 20, "O (symbols)");
  assert_bad(5, 5, 0, "K (observations)");
}

/* config.json keeps the HMM's sizes and only the fields of the task it names. */
static void test_config_json(void **state) {
  bwt_run_config c, back;
  memset(&c, 0, sizeof c);
  assert_int_equal(bwt_task_config_default(&c.task, "hmm"), BWT_STATUS_OK);
  c.task.S = 4, c.task.O = 3, c.task.K = 30;
  bwt_train_config_default(&c.train);
  bwt_task *t = make(4, 3, 30);
  bwt_model_config_default(&c.model, BWT_ARCH_TRANSFORMER, t);
  char *json = bwt_run_config_to_json(&c);
  assert_non_null(strstr(json, "\"K\":\t30"));
  assert_null(strstr(json, "\"V\""));
  assert_int_equal(bwt_run_config_from_json(&back, json, "test"), BWT_STATUS_OK);
  assert_string_equal(back.task.name, "hmm");
  assert_int_equal(back.task.S, 4);
  assert_int_equal(back.task.O, 3);
  assert_int_equal(back.task.K, 30);
  char *missing = strdup(json);
  char *k = strstr(missing, "\"K\"");
  k[1] = 'X'; /* "X": the HMM's K is gone */
  assert_int_equal(bwt_run_config_from_json(&back, missing, "test"), BWT_STATUS_FORMAT);
  assert_non_null(strstr(bwt_last_error(), "task.K"));
  free(missing);
  free(json);
  bwt_task_free(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_posterior_matches_enumeration),
      cmocka_unit_test(test_discretisation),
      cmocka_unit_test(test_layout),
      cmocka_unit_test(test_targets_calibrated),
      cmocka_unit_test(test_determinism),
      cmocka_unit_test(test_bad_configs),
      cmocka_unit_test(test_config_json),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
