/* The bijection wind tunnel against brute-force enumeration of every permutation, plus target
 * consistency, calibration of the sampler, layout, determinism, configuration errors, batches and
 * the JSONL export. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "bwt/sample_export.h"
#include "bwt/task.h"
#include "testutil.h"

static bwt_task *make(int V, int L, int repl, int query) {
  bwt_task_config c;
  assert_int_equal(bwt_task_config_default(&c, "bijection"), BWT_STATUS_OK);
  c.V = V, c.L = L, c.with_replacement = repl, c.query = query;
  bwt_task *t = NULL;
  assert_int_equal(bwt_task_create(&t, &c), BWT_STATUS_OK);
  assert_non_null(t);
  return t;
}

/* A sampled batch of B sequences of the task (V, L, repl, query). */
static bwt_task *make_sampled(bwt_batch *b, int V, int L, int repl, int query, int B, uint64_t seed) {
  bwt_task *t = make(V, L, repl, query);
  assert_int_equal(bwt_batch_alloc(b, t, B), BWT_STATUS_OK);
  assert_int_equal(bwt_task_sample(t, seed, b), BWT_STATUS_OK);
  return t;
}

/* The configurations the oracle tests run over: every layout, L = V and L < V, with and without
 * replacement (L > V only with). */
typedef struct {
  int dL, repl, query; /* L = V + dL, or L = -dL when dL < -100 (a fixed small L) */
} shape;
static const shape shapes[] = {
    {0, 0, 0},    {-1, 0, 0}, {-2, 0, 0}, {-101, 0, 0}, /* sep, no replacement: L = V, V-1, V-2, 1 */
    {0, 0, 1},    {-1, 0, 1}, {-101, 0, 1},             /* paired, no replacement */
    {0, 1, 0},    {3, 1, 0},  {-103, 1, 0}, {-101, 1, 0}, /* sep, with replacement: V, V+3, 3, 1 */
    {1, 1, 1},    {-102, 1, 1}, {-1, 1, 1},             /* paired, with replacement */
};
#define N_SHAPES ((int)(sizeof shapes / sizeof shapes[0]))
static int shape_L(const shape *s, int V) { return s->dL < -100 ? -s->dL - 100 : V + s->dL; }

/* Next permutation in lexicographic order; 0 after the last. */
static int next_perm(int *p, int n) {
  int i = n - 2;
  while (i >= 0 && p[i] >= p[i + 1]) i--;
  if (i < 0) return 0;
  int j = n - 1;
  while (p[j] <= p[i]) j--;
  int x = p[i];
  p[i] = p[j], p[j] = x;
  for (int a = i + 1, b = n - 1; a < b; a++, b--) x = p[a], p[a] = p[b], p[b] = x;
  return 1;
}

/* Posterior over the 2V classes of the value of the key token at position `pos`, given the
 * (key, value) pairs shown before it, by counting the permutations of {0..V-1} consistent with
 * them (uniform prior over all V!). Independent of the task's own posterior code. */
static void brute_force(double *q, const int32_t *tok, int pos, int V) {
  int perm[8];
  double count[16] = {0}, total = 0;
  for (int i = 0; i < V; i++) perm[i] = i;
  do {
    int ok = 1;
    for (int p = 0; p + 1 < pos && ok; p += 2)
      if (perm[tok[p]] != tok[p + 1] - V) ok = 0;
    if (ok) count[V + perm[tok[pos]]] += 1, total += 1;
  } while (next_perm(perm, V));
  assert_true(total > 0); /* the shown pairs are consistent with some bijection */
  for (int k = 0; k < 2 * V; k++) q[k] = count[k] / total;
}

static void check_against_enumeration(int V, int L, int repl, int query, uint64_t seed, long *rows, double *worst) {
  bwt_batch b;
  bwt_task *t = make_sampled(&b, V, L, repl, query, 150, seed);
  int K = 2 * V;
  double q[16];
  for (int s = 0; s < b.B; s++)
    for (int j = 0; j < b.n_sup; j++) {
      size_t r = (size_t)s * b.n_sup + j;
      const double *p = b.posterior + r * K;
      brute_force(q, b.tokens + (size_t)s * b.T, b.sup_pos[r], V);
      double sum = 0;
      int point = -1;
      for (int k = 0; k < K; k++) {
        double d = fabs(q[k] - p[k]);
        if (d > *worst) *worst = d;
        sum += p[k];
        if (q[k] == 1.0) point = k;
      }
      assert_float_equal(sum, 1.0, 1e-12);
      assert_true(p[b.target[r]] > 0); /* the sampled target is possible */
      if (point >= 0) assert_int_equal(b.target[r], point);
      (*rows)++;
    }
  bwt_batch_free(&b);
  bwt_task_free(t);
}

static void test_posterior_matches_enumeration(void **state) {
  long rows = 0;
  double worst = 0;
  int configs = 0;
  for (int V = 3; V <= 5; V++)
    for (int i = 0; i < N_SHAPES; i++) {
      int L = shape_L(&shapes[i], V);
      if (L < 1) continue;
      check_against_enumeration(V, L, shapes[i].repl, shapes[i].query, 1000u * V + i, &rows, &worst);
      configs++;
    }
  print_message("  %ld supervised rows (%d configurations, V=3..5) against enumeration of all V! "
                "permutations: max |diff| %.3g\n",
                rows, configs, worst);
  assert_true(worst < 1e-12);
}

/* The tokens show a partial bijection (each key always with the same value, no value for two keys)
 * and every target is the value of its key under it, or an unshown value for an unshown key. */
static void test_targets_consistent(void **state) {
  for (int i = 0; i < N_SHAPES; i++) {
    const int V = 6, L = shape_L(&shapes[i], V);
    bwt_batch b;
    bwt_task *t = make_sampled(&b, V, L, shapes[i].repl, shapes[i].query, 64, 40 + i);
    for (int s = 0; s < b.B; s++) {
      const int32_t *tok = b.tokens + (size_t)s * b.T;
      int val[6], key_of[6];
      for (int k = 0; k < V; k++) val[k] = key_of[k] = -1;
      for (int p = 0; p + 1 < b.T; p += 2) {
        int k = tok[p], v = tok[p + 1] - V;
        assert_true(k >= 0 && k < V && v >= 0 && v < V);
        assert_true(val[k] < 0 || val[k] == v);
        assert_true(key_of[v] < 0 || key_of[v] == k);
        val[k] = v, key_of[v] = k;
      }
      for (int j = 0; j < b.n_sup; j++) {
        size_t r = (size_t)s * b.n_sup + j;
        int p = b.sup_pos[r], k = tok[p], y = b.target[r] - V;
        assert_true(y >= 0 && y < V);
        if (p + 1 < b.T) assert_int_equal(b.target[r], tok[p + 1]); /* the next token */
        if (val[k] >= 0) assert_int_equal(y, val[k]);
        else assert_int_equal(key_of[y], -1); /* a value no shown key has */
      }
    }
    bwt_batch_free(&b);
    bwt_task_free(t);
  }
}

/* The sampler draws what the posterior says: for each (position, key, class) the count of targets
 * is the sum of posterior probabilities within 5 standard deviations, and keys are uniform. */
static void check_calibration(int V, int L, int repl, int query) {
  bwt_batch b;
  bwt_task *t = make_sampled(&b, V, L, repl, query, 6000, 99);
  int N = b.n_sup, K = 2 * V, cells = N * V * K;
  double *diff = calloc((size_t)cells, sizeof *diff), *var = calloc((size_t)cells, sizeof *var);
  long *keys = calloc((size_t)b.T * V, sizeof *keys);
  assert_non_null(diff), assert_non_null(var), assert_non_null(keys);
  for (int s = 0; s < b.B; s++) {
    for (int p = 0; p < b.T; p += 2) keys[(size_t)p * V + b.tokens[(size_t)s * b.T + p]]++;
    for (int j = 0; j < N; j++) {
      size_t r = (size_t)s * N + j;
      int c0 = (j * V + b.tokens[(size_t)s * b.T + b.sup_pos[r]]) * K;
      for (int k = 0; k < K; k++) {
        double q = b.posterior[r * K + k];
        diff[c0 + k] += (b.target[r] == k) - q;
        var[c0 + k] += q * (1 - q);
      }
    }
  }
  double worst = 0;
  for (int c = 0; c < cells; c++) {
    if (var[c] == 0) assert_float_equal(diff[c], 0, 1e-9);
    else worst = fmax(worst, fabs(diff[c]) / sqrt(var[c]));
  }
  assert_true(worst < 5);
  for (int p = 0; p < 2 * L; p += 2) /* context keys (the query is uniform over these instead) */
    for (int k = 0; k < V; k++) {
      double mean = (double)b.B / V, sd = sqrt(b.B * (1.0 / V) * (1 - 1.0 / V));
      assert_true(fabs(keys[(size_t)p * V + k] - mean) < 5 * sd);
    }
  free(diff), free(var), free(keys);
  bwt_batch_free(&b);
  bwt_task_free(t);
}

static void test_sampler_calibration(void **state) {
  check_calibration(4, 4, 0, 0);
  check_calibration(5, 3, 0, 1);
  check_calibration(4, 6, 1, 0);
  check_calibration(4, 5, 1, 1);
}

static void test_layout_and_entropy(void **state) {
  bwt_task *t = make(20, 19, 0, 0);
  assert_int_equal(t->seq_len, 37);
  assert_int_equal(t->n_sup, 19);
  assert_int_equal(t->n_classes, 40);
  assert_int_equal(t->vocab, 40);
  assert_int_equal(t->input_dim, 0);
  assert_int_equal(t->answer_lo, 20);
  assert_int_equal(t->answer_hi, 40);
  bwt_batch b;
  assert_int_equal(bwt_batch_alloc(&b, t, 16), BWT_STATUS_OK);
  assert_null(b.inputs);
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
      const double *q = b.posterior + r * 40;
      double h = bwt_entropy_bits(q, 40), sum = 0;
      for (int k = 0; k < 40; k++) sum += q[k];
      for (int k = 0; k < 20; k++) assert_true(q[k] == 0); /* no mass on key tokens */
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
  assert_int_equal(t->n_classes, 12);
  assert_int_equal(bwt_batch_alloc(&b, t, 32), BWT_STATUS_OK);
  assert_int_equal(bwt_task_sample(t, 8, &b), BWT_STATUS_OK);
  for (int s = 0; s < 32; s++) {
    const int32_t *tok = b.tokens + s * 9;
    for (int j = 0; j < 5; j++) assert_int_equal(b.sup_pos[s * 5 + j], 2 * j);
    int found = 0;
    for (int i = 0; i < 8; i += 2)
      if (tok[i] == tok[8]) found = 1, assert_int_equal(b.target[s * 5 + 4], tok[i + 1]);
    assert_true(found);
    assert_float_equal(b.posterior[(s * 5 + 4) * 12 + b.target[s * 5 + 4]], 1.0, 0);
    assert_float_equal(bwt_entropy_bits(b.posterior + (s * 5 + 4) * 12, 12), 0.0, 0);
  }
  bwt_batch_free(&b);
  bwt_task_free(t);

  /* With replacement: L > V allowed; entropy 0 at a repeated key, else log2(V − distinct so far). */
  t = make(5, 12, 1, 0);
  assert_int_equal(t->seq_len, 23);
  assert_int_equal(bwt_batch_alloc(&b, t, 32), BWT_STATUS_OK);
  assert_int_equal(bwt_task_sample(t, 9, &b), BWT_STATUS_OK);
  int repeats = 0;
  for (int s = 0; s < 32; s++) {
    const int32_t *tok = b.tokens + s * 23;
    int seen[5] = {0}, distinct = 0;
    for (int j = 0; j < 12; j++) {
      int k = tok[2 * j];
      assert_true(k >= 0 && k < 5);
      if (j < 11) assert_true(tok[2 * j + 1] >= 5 && tok[2 * j + 1] < 10);
      double h = bwt_entropy_bits(b.posterior + (size_t)(s * 12 + j) * 10, 10);
      assert_float_equal(h, seen[k] ? 0.0 : log2(5.0 - distinct), 1e-12);
      repeats += seen[k];
      if (!seen[k]) seen[k] = 1, distinct++;
    }
  }
  assert_true(repeats > 0);
  bwt_batch_free(&b);
  bwt_task_free(t);
}

static void assert_batches_equal(const bwt_batch *a, const bwt_batch *b, int B) {
  assert_memory_equal(a->tokens, b->tokens, sizeof(int32_t) * B * a->T);
  assert_memory_equal(a->sup_pos, b->sup_pos, sizeof(int32_t) * B * a->n_sup);
  assert_memory_equal(a->target, b->target, sizeof(int32_t) * B * a->n_sup);
  assert_memory_equal(a->posterior, b->posterior, sizeof(double) * B * a->n_sup * a->n_classes);
}

static void test_determinism(void **state) {
  for (int variant = 0; variant < 2; variant++) {
    bwt_task *t = variant ? make(7, 9, 1, 1) : make(20, 19, 0, 0);
    bwt_batch a, a2, b, c;
    assert_int_equal(bwt_batch_alloc(&a, t, 8), BWT_STATUS_OK);
    assert_int_equal(bwt_batch_alloc(&a2, t, 8), BWT_STATUS_OK);
    assert_int_equal(bwt_batch_alloc(&b, t, 16), BWT_STATUS_OK);
    assert_int_equal(bwt_batch_alloc(&c, t, 8), BWT_STATUS_OK);
    assert_int_equal(bwt_task_sample(t, 77, &a), BWT_STATUS_OK);
    assert_int_equal(bwt_task_sample(t, 77, &a2), BWT_STATUS_OK);
    assert_int_equal(bwt_task_sample(t, 77, &b), BWT_STATUS_OK);
    assert_int_equal(bwt_task_sample(t, 78, &c), BWT_STATUS_OK);
    assert_batches_equal(&a, &a2, 8); /* same seed, same batch */
    assert_batches_equal(&a, &b, 8);  /* sequence b depends only on (seed, b), not on B */
    assert_memory_not_equal(a.tokens, c.tokens, sizeof(int32_t) * 8 * a.T);
    for (int s = 1; s < 8; s++) /* and different streams give different sequences */
      assert_memory_not_equal(a.tokens, a.tokens + (size_t)s * a.T, sizeof(int32_t) * a.T);
    /* (seed 77, stream 1) is not (seed 78, stream 0): streams are not seed + b. */
    assert_memory_not_equal(a.tokens + a.T, c.tokens, sizeof(int32_t) * a.T);
#ifdef _OPENMP
    /* Nor on the number of threads. */
    int before = omp_get_max_threads();
    for (int threads = 1; threads <= 3; threads += 2) {
      omp_set_num_threads(threads);
      memset(b.tokens, 0xff, sizeof(int32_t) * 16 * b.T);
      assert_int_equal(bwt_task_sample(t, 77, &b), BWT_STATUS_OK);
      assert_batches_equal(&a, &b, 8);
    }
    omp_set_num_threads(before);
#endif
    bwt_batch_free(&a), bwt_batch_free(&a2), bwt_batch_free(&b), bwt_batch_free(&c);
    bwt_task_free(t);
  }
}

/* Creating the task fails with BWT_STATUS_ARG and a message containing `needle`. */
static void assert_bad(const bwt_task_config *c, const char *needle) {
  static bwt_task dummy;
  bwt_task *t = &dummy; /* must come back NULL */
  assert_int_equal(bwt_task_create(&t, c), BWT_STATUS_ARG);
  assert_null(t);
  assert_true(strlen(bwt_last_error()) > 0);
  if (!strstr(bwt_last_error(), needle)) fail_msg("message '%s' lacks '%s'", bwt_last_error(), needle);
}

static void test_bad_configs(void **state) {
  bwt_task_config c;
  bwt_task *t = NULL;
  assert_int_equal(bwt_task_config_default(&c, "bijection"), BWT_STATUS_OK);
  c.L = 25;
  assert_bad(&c, "L=25 > V=20");
  c.with_replacement = 1; /* then any L is possible */
  assert_int_equal(bwt_task_create(&t, &c), BWT_STATUS_OK);
  assert_int_equal(t->seq_len, 49);
  bwt_task_free(t);
  c.V = 1;
  assert_bad(&c, "V=1");
  c.V = 100000;
  assert_bad(&c, "V=100000");
  c.V = 5, c.L = 0;
  assert_bad(&c, "L=0");
  c.L = -3;
  assert_bad(&c, "L=-3");
  c.L = 1000000;
  assert_bad(&c, "L=1000000");
  c.V = 4096, c.L = 100000; /* each within bounds, but 6.5 GB of posterior per sequence */
  assert_bad(&c, "posterior");
  c.V = 5, c.L = 5;
  snprintf(c.name, sizeof c.name, "maze");
  assert_bad(&c, "unknown task 'maze'");
  assert_non_null(strstr(bwt_last_error(), "bijection")); /* lists the known names */
  memset(c.name, 'x', sizeof c.name);                    /* not NUL-terminated */
  assert_bad(&c, "unknown task");
  assert_int_equal(bwt_task_config_default(&c, "maze"), BWT_STATUS_ARG);
  assert_non_null(strstr(bwt_last_error(), "maze"));
  assert_non_null(strstr(bwt_last_error(), "bijection"));
  assert_int_equal(bwt_task_config_default(&c, "bijection_extra"), BWT_STATUS_ARG);
  assert_int_equal(bwt_task_create(NULL, &c), BWT_STATUS_ARG);
  assert_int_equal(bwt_task_config_default(&c, NULL), BWT_STATUS_ARG);
}

static void test_defaults_and_names(void **state) {
  bwt_task_config c;
  memset(&c, 0x5a, sizeof c);
  assert_int_equal(bwt_task_config_default(&c, "bijection"), BWT_STATUS_OK);
  assert_string_equal(c.name, "bijection");
  assert_int_equal(c.V, 20);
  assert_int_equal(c.L, 19);
  assert_int_equal(c.with_replacement, 0);
  assert_int_equal(c.query, 0);
  int n = 0, has = 0;
  for (; bwt_task_names[n]; n++) {
    has |= strcmp(bwt_task_names[n], "bijection") == 0;
    bwt_task_config d;
    assert_int_equal(bwt_task_config_default(&d, bwt_task_names[n]), BWT_STATUS_OK); /* each has defaults */
    bwt_task *t = NULL;
    assert_int_equal(bwt_task_create(&t, &d), BWT_STATUS_OK); /* and they are valid */
    bwt_task_free(t);
  }
  assert_true(n >= 1 && has);
  bwt_task_free(NULL);
}

static void test_batch_alloc_and_checks(void **state) {
  bwt_task *t = make(5, 4, 0, 0), *u = make(5, 4, 0, 1);
  bwt_batch b;
  memset(&b, 0x5a, sizeof b);
  assert_int_equal(bwt_batch_alloc(&b, t, 0), BWT_STATUS_ARG);
  assert_null(b.tokens), assert_null(b.posterior);
  assert_true(strlen(bwt_last_error()) > 0);
  bwt_batch_free(&b); /* a zeroed batch frees */
  assert_int_equal(bwt_batch_alloc(&b, t, 3), BWT_STATUS_OK);
  assert_int_equal(b.B, 3), assert_int_equal(b.T, 7), assert_int_equal(b.n_sup, 4), assert_int_equal(b.n_classes, 10);
  assert_int_equal(bwt_task_sample(u, 1, &b), BWT_STATUS_ARG); /* batch of another shape */
  assert_non_null(strstr(bwt_last_error(), "does not fit"));
  int32_t *tok = b.tokens;
  b.tokens = NULL;
  assert_int_equal(bwt_task_sample(t, 1, &b), BWT_STATUS_ARG); /* not allocated */
  b.tokens = tok;
  assert_int_equal(bwt_task_sample(t, 1, &b), BWT_STATUS_OK);
  bwt_batch_free(&b);
  assert_null(b.tokens), assert_null(b.sup_pos), assert_null(b.target), assert_null(b.posterior);
  bwt_batch_free(&b); /* twice is safe */
  bwt_batch_free(NULL);
  bwt_task_free(t), bwt_task_free(u);
}

static void test_entropy_bits(void **state) {
  double u8[8] = {0.125, 0.125, 0.125, 0.125, 0.125, 0.125, 0.125, 0.125};
  double pm[4] = {0, 0, 1, 0}, mix[4] = {0.5, 0.25, 0, 0.25};
  assert_float_equal(bwt_entropy_bits(u8, 8), 3.0, 1e-15);
  assert_float_equal(bwt_entropy_bits(pm, 4), 0.0, 0);
  assert_float_equal(bwt_entropy_bits(mix, 4), 1.5, 1e-15);
}

static void test_jsonl_export(void **state) {
  bwt_batch b;
  bwt_task *t = make_sampled(&b, 4, 3, 0, 0, 2, 3);
  FILE *f = tmpfile();
  assert_non_null(f);
  assert_int_equal(bwt_batch_write_jsonl(f, t, &b, 18446744073709551615ull, 10), BWT_STATUS_OK);
  rewind(f);
  char line[8192];
  for (int s = 0; s < 2; s++) {
    assert_non_null(fgets(line, sizeof line, f));
    assert_non_null(strchr(line, '\n'));
    cJSON *o = cJSON_Parse(line);
    assert_non_null(o);
    assert_int_equal(cJSON_GetObjectItem(o, "index")->valueint, 10 + s);
    assert_int_equal(cJSON_GetObjectItem(o, "stream")->valueint, 10 + s); /* the rng stream: the index */
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(o, "seed")), "18446744073709551615");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(o, "task")), "bijection");
    assert_null(cJSON_GetObjectItem(o, "inputs"));
    const cJSON *tok = cJSON_GetObjectItem(o, "tokens"), *sup = cJSON_GetObjectItem(o, "supervised");
    assert_int_equal(cJSON_GetArraySize(tok), 5);
    for (int i = 0; i < 5; i++) assert_int_equal(cJSON_GetArrayItem(tok, i)->valueint, b.tokens[s * 5 + i]);
    assert_int_equal(cJSON_GetArraySize(sup), 3);
    for (int j = 0; j < 3; j++) {
      const cJSON *e = cJSON_GetArrayItem(sup, j), *post = cJSON_GetObjectItem(e, "posterior");
      int r = s * 3 + j;
      assert_int_equal(cJSON_GetObjectItem(e, "pos")->valueint, b.sup_pos[r]);
      assert_int_equal(cJSON_GetObjectItem(e, "target")->valueint, b.target[r]);
      assert_int_equal(cJSON_GetArraySize(post), 8);
      for (int k = 0; k < 8; k++) /* round-trips exactly */
        assert_true(cJSON_GetArrayItem(post, k)->valuedouble == b.posterior[r * 8 + k]);
      assert_float_equal(cJSON_GetObjectItem(e, "entropy_bits")->valuedouble, log2(4.0 - j), 1e-12);
    }
    cJSON_Delete(o);
  }
  assert_null(fgets(line, sizeof line, f));
  fclose(f);

  /* A write error is BWT_STATUS_IO (also when it only shows at the flush). */
  FILE *full = fopen("/dev/full", "w");
  if (full) {
    assert_int_equal(bwt_batch_write_jsonl(full, t, &b, 3, 0), BWT_STATUS_IO);
    assert_true(strlen(bwt_last_error()) > 0);
    fclose(full);
  }
  /* A batch of another task's shape is refused. */
  bwt_task *u = make(4, 4, 0, 0);
  f = tmpfile();
  assert_int_equal(bwt_batch_write_jsonl(f, u, &b, 3, 0), BWT_STATUS_ARG);
  fclose(f);
  bwt_task_free(u);
  bwt_batch_free(&b);
  bwt_task_free(t);
}

/* Continuous-input tasks write "inputs" (T rows of input_dim numbers) and no "tokens". */
static void test_jsonl_export_inputs(void **state) {
  bwt_task fake;
  memset(&fake, 0, sizeof fake);
  snprintf(fake.cfg.name, sizeof fake.cfg.name, "fake");
  fake.input_dim = 2, fake.seq_len = 3, fake.n_sup = 1, fake.n_classes = 2, fake.answer_hi = 2;
  bwt_batch b;
  assert_int_equal(bwt_batch_alloc(&b, &fake, 1), BWT_STATUS_OK);
  assert_null(b.tokens);
  assert_non_null(b.inputs);
  for (int i = 0; i < 6; i++) b.inputs[i] = 0.25f * (float)i - 0.1f;
  b.sup_pos[0] = 2, b.target[0] = 1, b.posterior[0] = 0.25, b.posterior[1] = 0.75;
  FILE *f = tmpfile();
  assert_non_null(f);
  assert_int_equal(bwt_batch_write_jsonl(f, &fake, &b, 5, 0), BWT_STATUS_OK);
  rewind(f);
  char line[4096];
  assert_non_null(fgets(line, sizeof line, f));
  cJSON *o = cJSON_Parse(line);
  assert_non_null(o);
  assert_null(cJSON_GetObjectItem(o, "tokens"));
  const cJSON *in = cJSON_GetObjectItem(o, "inputs");
  assert_int_equal(cJSON_GetArraySize(in), 3);
  for (int t = 0; t < 3; t++) {
    const cJSON *row = cJSON_GetArrayItem(in, t);
    assert_int_equal(cJSON_GetArraySize(row), 2);
    for (int d = 0; d < 2; d++) assert_true((float)cJSON_GetArrayItem(row, d)->valuedouble == b.inputs[t * 2 + d]);
  }
  const cJSON *e = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "supervised"), 0);
  assert_int_equal(cJSON_GetObjectItem(e, "pos")->valueint, 2);
  assert_true(cJSON_GetArrayItem(cJSON_GetObjectItem(e, "posterior"), 1)->valuedouble == 0.75);
  cJSON_Delete(o);
  fclose(f);
  bwt_batch_free(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_posterior_matches_enumeration),
      cmocka_unit_test(test_targets_consistent),
      cmocka_unit_test(test_sampler_calibration),
      cmocka_unit_test(test_layout_and_entropy),
      cmocka_unit_test(test_determinism),
      cmocka_unit_test(test_bad_configs),
      cmocka_unit_test(test_defaults_and_names),
      cmocka_unit_test(test_batch_alloc_and_checks),
      cmocka_unit_test(test_entropy_bits),
      cmocka_unit_test(test_jsonl_export),
      cmocka_unit_test(test_jsonl_export_inputs),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
