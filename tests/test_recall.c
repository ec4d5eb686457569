/* The associative-recall wind tunnel: the bound value found by scanning the sequence, distinct keys
 * and values, layout, determinism, bad sizes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/task.h"
#include "testutil.h"

static bwt_task *make(int pairs, int queries, int fillers, int kv, int vv) {
  bwt_task_config c;
  assert_int_equal(bwt_task_config_default(&c, "recall"), BWT_STATUS_OK);
  c.pairs = pairs, c.queries = queries, c.fillers = fillers, c.key_vocab = kv, c.value_vocab = vv;
  bwt_task *t = NULL;
  assert_int_equal(bwt_task_create(&t, &c), BWT_STATUS_OK);
  return t;
}

/* Every query's posterior is a point mass on the value that followed its key in the pairs. */
static void check(int pairs, int queries, int fillers, int kv, int vv) {
  bwt_task *t = make(pairs, queries, fillers, kv, vv);
  int K = t->n_classes, T = t->seq_len;
  assert_int_equal(T, 2 * pairs + fillers + 2 * queries);
  assert_int_equal(K, kv + vv + 2);
  bwt_batch b;
  assert_int_equal(bwt_batch_alloc(&b, t, 64), BWT_STATUS_OK);
  assert_int_equal(bwt_task_sample(t, 7, &b), BWT_STATUS_OK);
  for (int s = 0; s < b.B; s++) {
    const int32_t *tok = b.tokens + (size_t)s * T;
    int *key_seen = calloc((size_t)kv, sizeof(int)), *value_seen = calloc((size_t)vv, sizeof(int));
    for (int i = 0; i < pairs; i++) {
      assert_true(tok[2 * i] >= 0 && tok[2 * i] < kv);
      assert_true(tok[2 * i + 1] >= kv && tok[2 * i + 1] < kv + vv);
      assert_int_equal(key_seen[tok[2 * i]]++, 0);           /* distinct keys */
      assert_int_equal(value_seen[tok[2 * i + 1] - kv]++, 0); /* distinct values */
    }
    for (int i = 0; i < fillers; i++) assert_int_equal(tok[2 * pairs + i], kv + vv);
    for (int j = 0; j < queries; j++) {
      int q = b.sup_pos[s * queries + j];
      assert_int_equal(q, 2 * pairs + fillers + 2 * j + 1);
      assert_int_equal(tok[q - 1], kv + vv + 1);
      int bound = -1;
      for (int i = 0; i < pairs; i++)
        if (tok[2 * i] == tok[q]) bound = tok[2 * i + 1];
      assert_true(bound >= 0); /* a stored key */
      assert_int_equal(b.target[s * queries + j], bound);
      for (int k = 0; k < K; k++)
        assert_true(b.posterior[((size_t)s * queries + j) * K + k] == (k == bound ? 1.0 : 0.0));
      for (int i = 0; i < j; i++) assert_true(tok[q] != tok[b.sup_pos[s * queries + i]]); /* distinct queries */
    }
    free(key_seen), free(value_seen);
  }
  bwt_batch_free(&b);
  bwt_task_free(t);
}

static void test_bound_values(void **state) {
  check(64, 3, 32, 256, 256); /* the defaults */
  check(4, 4, 0, 4, 4);       /* every key stored and queried */
  check(1, 1, 5, 3, 9);
}

static void test_determinism(void **state) {
  bwt_task *t = make(8, 2, 3, 16, 16);
  bwt_batch a, c;
  assert_int_equal(bwt_batch_alloc(&a, t, 4), BWT_STATUS_OK);
  assert_int_equal(bwt_batch_alloc(&c, t, 4), BWT_STATUS_OK);
  assert_int_equal(bwt_task_sample(t, 1, &a), BWT_STATUS_OK);
  assert_int_equal(bwt_task_sample(t, 1, &c), BWT_STATUS_OK);
  assert_memory_equal(a.tokens, c.tokens, sizeof(int32_t) * 4 * a.T);
  assert_int_equal(bwt_task_sample(t, 2, &c), BWT_STATUS_OK);
  assert_memory_not_equal(a.tokens, c.tokens, sizeof(int32_t) * 4 * a.T);
  bwt_batch_free(&a), bwt_batch_free(&c);
  bwt_task_free(t);
}

static void test_bad_configs(void **state) {
  const int bad[][5] = {{0, 1, 0, 8, 8}, {9, 1, 0, 8, 16}, {9, 1, 0, 16, 8}, {4, 5, 0, 8, 8},
                        {4, 0, 0, 8, 8}, {4, 1, -1, 8, 8}, {4, 1, 0, 0, 8}};
  const char *needle[] = {"pairs must be", "pairs must be", "pairs must be", "queries must be",
                          "queries must be", "fillers must be", "key-vocab and value-vocab"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    bwt_task_config c;
    assert_int_equal(bwt_task_config_default(&c, "recall"), BWT_STATUS_OK);
    c.pairs = bad[i][0], c.queries = bad[i][1], c.fillers = bad[i][2], c.key_vocab = bad[i][3],
    c.value_vocab = bad[i][4];
    bwt_task *t = NULL;
    assert_int_equal(bwt_task_create(&t, &c), BWT_STATUS_ARG);
    assert_null(t);
    if (!strstr(bwt_last_error(), needle[i])) fail_msg("case %zu: '%s' lacks '%s'", i, bwt_last_error(), needle[i]);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bound_values),
      cmocka_unit_test(test_determinism),
      cmocka_unit_test(test_bad_configs),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
