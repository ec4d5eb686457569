/* The bijection wind tunnel against brute-force enumeration of every permutation, plus layout,
 * determinism and configuration checks. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "bwt/sample_export.h"
#include "bwt/task.h"
#include "testutil.h"

static bwt_task *make(int V, int L, int repl, int query) {
  bwt_task_config c;
  assert_int_equal(bwt_task_config_default(&c, "bijection"), BWT_STATUS_OK);
  c.V = V, c.L = L, c.with_replacement = repl, c.query = query;
  bwt_task *t = NULL;
  assert_int_equal(bwt_task_create(&t, &c), BWT_STATUS_OK);
  return t;
}

/* Next permutation in lexicographic order; 0 after the last. */
static int next_perm(int *p, int n) {
  int i = n - 2;
  while (i >= 0 && p[i] >= p[i + 1]) i--;
  if (i < 0) return 0;
  int j = n - 1;
  while (p[j] <= p[i]) j--;
  int x = p[i]; p[i] = p[j]; p[j] = x;
  for (int a = i + 1, b = n - 1; a < b; a++, b--) x = p[a], p[a] = p[b], p[b] = x;
  return 1;
}

/* Posterior over the 2V classes of the value of the key at position `pos`, given the pairs shown
 * before it, by counting the permutations consistent with them (uniform prior over all V!). */
static void brute_force(double *q, const int32_t *tok, int pos, int V) {
  int perm[8];
  double count[16] = {0}, total = 0;
  for (int i = 0; i < V; i++) perm[i] = i;
  do {
    int ok = 1;
    for (int p = 0; p + 1 < pos; p += 2)
      if (perm[tok[p]] != tok[p + 1] - V) ok = 0;
    if (ok) count[V + perm[tok[pos]]] += 1, total += 1;
  } while (next_perm(perm, V));
  for (int k = 0; k < 2 * V; k++) q[k] = count[k] / total;
}

static void check_against_enumeration(int V, int L, int repl, int query, int *rows, double *worst) {
  bwt_task *t = make(V, L, repl, query);
  bwt_batch b;
  assert_int_equal(bwt_batch_alloc(&b, t, 200), BWT_STATUS_OK);
  assert_int_equal(bwt_task_sample(t, 1234 + V * 10 + L + repl * 100 + query * 1000, &b), BWT_STATUS_OK);
  int K = 2 * V;
  double q[16];
  for (int s = 0; s < b.B; s++)
    for (int j = 0; j < b.n_sup; j++) {
      size_t r = (size_t)s * b.n_sup + j;
      brute_force(q, b.tokens + (size_t)s * b.T, b.sup_pos[r], V);
      for (int k = 0; k < K; k++) {
        double d = fabs(q[k] - b.posterior[r * K + k]);
        if (d > *worst) *worst = d;
      }
      assert_true(b.posterior[r * K + b.target[r]] > 0); /* the sampled target is possible */
      (*rows)++;
    }
  bwt_batch_free(&b);
  bwt_task_free(t);
}

static void test_posterior_matches_enumeration(void **state) {
  int rows = 0;
  double worst = 0;
  for (int V = 3; V <= 5; V++) {
    check_against_enumeration(V, V, 0, 0, &rows, &worst);
    check_against_enumeration(V, V - 1, 0, 1, &rows, &worst);
    check_against_enumeration(V, V + 3, 1, 0, &rows, &worst);
    check_against_enumeration(V, V + 1, 1, 1, &rows, &worst);
  }
  print_message("  %d supervised rows against enumeration of all permutations: max |diff| %.1e\n", rows, worst);
  assert_true(worst < 1e-12);
}

static void test_layout_and_entropy(void **state) {
  bwt_task *t = make(20, 19, 0, 0);
  assert_int_equal(t->seq_len, 37);
  assert_int_equal(t->n_sup, 19);
  assert_int_equal(t->n_classes, 40);
  bwt_batch b;
  assert_int_equal(bwt_batch_alloc(&b, t, 16), BWT_STATUS_OK);
  assert_int_equal(bwt_task_sample(t, 5, &b), BWT_STATUS_OK);
  for (int s = 0; s < 16; s++) {
    const int32_t *tok = b.tokens + s * 37;
    int seen[20] = {0};
    for (int i = 0; i < 37; i++) {
      if (i % 2 == 0) {
        assert_true(tok[i] >= 0 && tok[i] < 20);
        assert_int_equal(seen[tok[i]]++, 0); /* distinct keys without replacement */
      } else {
        assert_true(tok[i] >= 20 && tok[i] < 40);
      }
    }
    for (int j = 0; j < 19; j++) {
      size_t r = (size_t)s * 19 + j;
      assert_int_equal(b.sup_pos[r], 2 * j);
      if (j < 18) assert_int_equal(b.target[r], tok[2 * j + 1]); /* the next token */
      double h = bwt_entropy_bits(b.posterior + r * 40, 40), sum = 0;
      for (int k = 0; k < 40; k++) sum += b.posterior[r * 40 + k];
      assert_float_equal(h, log2(20.0 - j), 1e-12); /* 4.3219 at t=0 down to 1 bit at t=18 */
      assert_float_equal(sum, 1.0, 1e-12);
    }
  }
  bwt_batch_free(&b);
  bwt_task_free(t);

  /* Paired layout: T = 2L+1, the query is a context key and its posterior a point mass. */
  t = make(6, 4, 0, 1);
  assert_int_equal(t->seq_len, 9);
  assert_int_equal(t->n_sup, 5);
  assert_int_equal(bwt_batch_alloc(&b, t, 32), BWT_STATUS_OK);
  assert_int_equal(bwt_task_sample(t, 8, &b), BWT_STATUS_OK);
  for (int s = 0; s < 32; s++) {
    const int32_t *tok = b.tokens + s * 9;
    int found = 0;
    for (int i = 0; i < 8; i += 2)
      if (tok[i] == tok[8]) found = 1, assert_int_equal(b.target[s * 5 + 4], tok[i + 1]);
    assert_true(found);
    assert_float_equal(b.posterior[(s * 5 + 4) * 12 + b.target[s * 5 + 4]], 1.0, 0);
  }
  bwt_batch_free(&b);
  bwt_task_free(t);
}

static void test_determinism(void **state) {
  bwt_task *t = make(20, 19, 0, 0);
  bwt_batch a, b, c;
  assert_int_equal(bwt_batch_alloc(&a, t, 8), BWT_STATUS_OK);
  assert_int_equal(bwt_batch_alloc(&b, t, 16), BWT_STATUS_OK);
  assert_int_equal(bwt_batch_alloc(&c, t, 8), BWT_STATUS_OK);
  assert_int_equal(bwt_task_sample(t, 77, &a), BWT_STATUS_OK);
  assert_int_equal(bwt_task_sample(t, 77, &b), BWT_STATUS_OK);
  assert_int_equal(bwt_task_sample(t, 78, &c), BWT_STATUS_OK);
  /* Sequence b of a batch depends only on (seed, b), not on the batch size. */
  assert_memory_equal(a.tokens, b.tokens, sizeof(int32_t) * 8 * 37);
  assert_memory_equal(a.posterior, b.posterior, sizeof(double) * 8 * 19 * 40);
  assert_memory_not_equal(a.tokens, c.tokens, sizeof(int32_t) * 8 * 37);
  bwt_batch_free(&a), bwt_batch_free(&b), bwt_batch_free(&c);
  bwt_task_free(t);
}

static void test_bad_configs(void **state) {
  bwt_task_config c;
  bwt_task *t = NULL;
  assert_int_equal(bwt_task_config_default(&c, "bijection"), BWT_STATUS_OK);
  c.L = 25;
  assert_int_equal(bwt_task_create(&t, &c), BWT_STATUS_ARG);
  assert_non_null(strstr(bwt_last_error(), "L=25 > V=20"));
  c.with_replacement = 1; /* then any L is possible */
  assert_int_equal(bwt_task_create(&t, &c), BWT_STATUS_OK);
  bwt_task_free(t);
  c.V = 1;
  assert_int_equal(bwt_task_create(&t, &c), BWT_STATUS_ARG);
  c.V = 5, c.L = 0;
  assert_int_equal(bwt_task_create(&t, &c), BWT_STATUS_ARG);
  assert_int_equal(bwt_task_config_default(&c, "maze"), BWT_STATUS_ARG);
  assert_non_null(strstr(bwt_last_error(), "maze"));
}

static void test_jsonl_export(void **state) {
  bwt_task *t = make(4, 3, 0, 0);
  bwt_batch b;
  assert_int_equal(bwt_batch_alloc(&b, t, 2), BWT_STATUS_OK);
  assert_int_equal(bwt_task_sample(t, 3, &b), BWT_STATUS_OK);
  FILE *f = tmpfile();
  assert_non_null(f);
  assert_int_equal(bwt_batch_write_jsonl(f, t, &b, 3, 10), BWT_STATUS_OK);
  rewind(f);
  char line[8192];
  for (int s = 0; s < 2; s++) {
    assert_non_null(fgets(line, sizeof line, f));
    cJSON *o = cJSON_Parse(line);
    assert_non_null(o);
    assert_int_equal(cJSON_GetObjectItem(o, "index")->valueint, 10 + s);
    const cJSON *tok = cJSON_GetObjectItem(o, "tokens"), *sup = cJSON_GetObjectItem(o, "supervised");
    assert_int_equal(cJSON_GetArraySize(tok), 5);
    assert_int_equal(cJSON_GetArrayItem(tok, 1)->valueint, b.tokens[s * 5 + 1]);
    assert_int_equal(cJSON_GetArraySize(sup), 3);
    const cJSON *e = cJSON_GetArrayItem(sup, 1), *post = cJSON_GetObjectItem(e, "posterior");
    assert_int_equal(cJSON_GetObjectItem(e, "pos")->valueint, 2);
    assert_int_equal(cJSON_GetArraySize(post), 8);
    for (int k = 0; k < 8; k++)
      assert_float_equal(cJSON_GetArrayItem(post, k)->valuedouble, b.posterior[(s * 3 + 1) * 8 + k], 1e-15);
    assert_float_equal(cJSON_GetObjectItem(e, "entropy_bits")->valuedouble, log2(3.0), 1e-12);
    cJSON_Delete(o);
  }
  assert_null(fgets(line, sizeof line, f));
  fclose(f);
  bwt_batch_free(&b);
  bwt_task_free(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_posterior_matches_enumeration),
      cmocka_unit_test(test_layout_and_entropy),
      cmocka_unit_test(test_determinism),
      cmocka_unit_test(test_bad_configs),
      cmocka_unit_test(test_jsonl_export),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
