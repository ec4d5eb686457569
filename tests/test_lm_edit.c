/* Edits in the language-model forward pass (bwt/lm_edit.h), on the tiny checkpoints of
 * tests/fixtures/lm:
 *  - an identity edit at every editable point gives logits bit-identical to bwt_lm_forward;
 *  - zeroing the values (hook_v) of the final position changes only the final position's logits;
 *  - adding δ to the last block's hook_resid_post equals the final norm and head recomputed by hand
 *    from the captured residual stream plus δ and the weights file;
 *  - errors: a point that cannot be edited, a pattern matching nothing, a failing callback. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/lm.h"
#include "bwt/lm_edit.h"
#include "bwt/safetensors.h"
#include "bwt/train.h"
#include "testutil.h"

static void fixture_dir(char *out, size_t n, const char *name) {
  const char *src = __FILE__, *slash = strrchr(src, '/');
  int dir_len = slash ? (int)(slash - src) : 1;
  snprintf(out, n, "%.*s/fixtures/lm/%s", dir_len, slash ? src : ".", name);
}

static int identity(void *ctx, const char *name, float *data, int ndim, const int64_t *shape) {
  int *calls = ctx;
  (*calls)++;
  return 0;
}

/* Zeroes the last row (position T−1) of a (T, NKV, hs) point. */
static int zero_last(void *ctx, const char *name, float *data, int ndim, const int64_t *shape) {
  size_t row = (size_t)shape[1] * (size_t)shape[2];
  memset(data + (size_t)(shape[0] - 1) * row, 0, row * sizeof *data);
  return 0;
}

/* Adds the vector ctx (C) to every row of a (T, C) point. */
static int add_delta(void *ctx, const char *name, float *data, int ndim, const int64_t *shape) {
  const float *d = ctx;
  for (int64_t t = 0; t < shape[0]; t++)
    for (int64_t c = 0; c < shape[1]; c++) data[t * shape[1] + c] += d[c];
  return 0;
}

static int refuse(void *ctx, const char *name, float *data, int ndim, const int64_t *shape) { return 1; }

static void check_identity(const char *fixture) {
  char dir[1300];
  fixture_dir(dir, sizeof dir, fixture);
  bwt_lm *lm = NULL;
  assert_int_equal(bwt_lm_open(&lm, dir), BWT_STATUS_OK);
  const bwt_lm_config *c = bwt_lm_config_of(lm);
  int32_t tok[8] = {3, 1, 4, 1, 5, 9, 2, 6};
  float *want = malloc(sizeof(float) * 8 * c->V), *got = malloc(sizeof(float) * 8 * c->V);
  bwt_lm_reset(lm);
  assert_int_equal(bwt_lm_forward(lm, tok, 8, want), BWT_STATUS_OK);
  /* Every editable point: the residual stream, q/k/v (and rotated), z, branch outputs, MLP, logits. */
  int calls = 0;
  const char *points[] = {"hook_embed", "blocks.*.hook_resid_*", "blocks.*.attn.hook_q", "blocks.*.attn.hook_k",
                          "blocks.*.attn.hook_v", "blocks.*.attn.hook_z", "blocks.*.hook_attn_out",
                          "blocks.*.mlp.hook_*", "blocks.*.hook_mlp_out", "logits"};
  bwt_lm_edit edits[10];
  for (int i = 0; i < 10; i++) edits[i] = (bwt_lm_edit){points[i], identity, &calls};
  const char *keep[] = {"blocks.0.attn.hook_pattern"}; /* a capture beside the edits */
  bwt_lm_capture cap;
  assert_int_equal(bwt_lm_edit_run(lm, tok, 8, edits, 10, keep, 1, &cap, got), BWT_STATUS_OK);
  assert_int_equal(cap.n, 1);
  assert_memory_equal(got, want, sizeof(float) * 8 * c->V);
  assert_true(calls >= 1 + c->L * 8);
  print_message("  %-14s identity edits at %d points: logits bit-identical\n", fixture, calls);
  bwt_lm_capture_free(&cap);
  free(want);
  free(got);
  bwt_lm_close(lm);
}

static void test_identity_edit(void **state) {
  check_identity("llama_gqa");
  check_identity("gpt2");
  check_identity("neox_parallel");
}

static void test_zero_final_values(void **state) {
  char dir[1300];
  fixture_dir(dir, sizeof dir, "llama_gqa");
  bwt_lm *lm = NULL;
  assert_int_equal(bwt_lm_open(&lm, dir), BWT_STATUS_OK);
  const bwt_lm_config *c = bwt_lm_config_of(lm);
  enum { T = 7 };
  int32_t tok[T] = {5, 17, 3, 60, 2, 41, 9};
  float *want = malloc(sizeof(float) * T * c->V), *got = malloc(sizeof(float) * T * c->V);
  bwt_lm_reset(lm);
  assert_int_equal(bwt_lm_forward(lm, tok, T, want), BWT_STATUS_OK);
  bwt_lm_edit e = {"blocks.*.attn.hook_v", zero_last, NULL};
  assert_int_equal(bwt_lm_edit_run(lm, tok, T, &e, 1, NULL, 0, NULL, got), BWT_STATUS_OK);
  /* Earlier positions never read position T−1 (causal): bit-identical. */
  assert_memory_equal(got, want, sizeof(float) * (T - 1) * c->V);
  double d = 0;
  for (int v = 0; v < c->V; v++) d = fmax(d, fabs(got[(T - 1) * c->V + v] - want[(T - 1) * c->V + v]));
  print_message("  zeroed final values: positions 0..%d unchanged, final logits moved by up to %.3g\n", T - 2, d);
  assert_true(d > 1e-3);
  free(want);
  free(got);
  bwt_lm_close(lm);
}

/* δ added to the last block's output: logits = RMSNorm(x + δ)·w Headᵀ, recomputed in double. */
static void test_resid_post_edit(void **state) {
  char dir[1300], path[1400];
  fixture_dir(dir, sizeof dir, "llama_gqa");
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  bwt_lm *lm = NULL;
  assert_int_equal(bwt_lm_open(&lm, dir), BWT_STATUS_OK);
  const bwt_lm_config *c = bwt_lm_config_of(lm);
  int C = c->C, V = c->V;
  enum { T = 6 };
  int32_t tok[T] = {1, 8, 2, 33, 7, 12};
  float *delta = malloc(sizeof(float) * C), *got = malloc(sizeof(float) * T * V);
  test_fill_uniform(delta, (size_t)C, -0.5f, 0.5f, 11);
  char point[64];
  snprintf(point, sizeof point, "blocks.%d.hook_resid_post", c->L - 1);
  const char *pats[] = {point};
  bwt_lm_capture before;
  assert_int_equal(bwt_lm_capture_run(lm, tok, T, pats, 1, &before, NULL), BWT_STATUS_OK);
  bwt_lm_edit e = {point, add_delta, delta};
  bwt_lm_capture after;
  assert_int_equal(bwt_lm_edit_run(lm, tok, T, &e, 1, pats, 1, &after, got), BWT_STATUS_OK);
  for (int i = 0; i < T * C; i++) assert_true(after.acts[0].data[i] == before.acts[0].data[i] + delta[i % C]);
  bwt_st_file *st = NULL;
  assert_int_equal(bwt_safetensors_open_lazy(&st, path), BWT_STATUS_OK);
  const float *norm_w, *head;
  int64_t cs[1] = {C}, hs2[2] = {V, C};
  assert_int_equal(bwt_safetensors_get_f32(st, "model.norm.weight", 1, cs, &norm_w), BWT_STATUS_OK);
  assert_int_equal(bwt_safetensors_get_f32(st, "lm_head.weight", 2, hs2, &head), BWT_STATUS_OK);
  double err = 0, big = 0;
  for (int t = 0; t < T; t++) {
    const float *x = before.acts[0].data + t * C;
    double ms = 0;
    for (int k = 0; k < C; k++) ms += ((double)x[k] + delta[k]) * ((double)x[k] + delta[k]);
    double r = 1 / sqrt(ms / C + c->norm_eps);
    for (int v = 0; v < V; v++) {
      double acc = 0;
      for (int k = 0; k < C; k++) acc += ((double)x[k] + delta[k]) * r * norm_w[k] * head[(size_t)v * C + k];
      err = fmax(err, fabs(acc - got[t * V + v]));
      big = fmax(big, fabs(acc));
    }
  }
  print_message("  resid_post + delta: edited logits vs recomputation, max error %.2e of %.2f\n", err, big);
  assert_true(err < 1e-5 * big);
  bwt_safetensors_close(st);
  bwt_lm_capture_free(&before);
  bwt_lm_capture_free(&after);
  free(delta);
  free(got);
  bwt_lm_close(lm);
}

static void test_edit_errors(void **state) {
  char dir[1300];
  fixture_dir(dir, sizeof dir, "llama_gqa");
  bwt_lm *lm = NULL;
  assert_int_equal(bwt_lm_open(&lm, dir), BWT_STATUS_OK);
  int32_t tok[3] = {1, 2, 3};
  int calls = 0;
  bwt_lm_edit e = {"blocks.0.ln1.hook_normalized", identity, &calls};
  assert_int_equal(bwt_lm_edit_run(lm, tok, 3, &e, 1, NULL, 0, NULL, NULL), BWT_STATUS_ARG);
  assert_non_null(strstr(bwt_last_error(), "'blocks.0.ln1.hook_normalized' cannot be edited"));
  e.point = "blocks.0.attn.hook_pattern";
  assert_int_equal(bwt_lm_edit_run(lm, tok, 3, &e, 1, NULL, 0, NULL, NULL), BWT_STATUS_ARG);
  assert_non_null(strstr(bwt_last_error(), "cannot be edited"));
  e.point = "blocks.7.attn.hook_v";
  assert_int_equal(bwt_lm_edit_run(lm, tok, 3, &e, 1, NULL, 0, NULL, NULL), BWT_STATUS_ARG);
  assert_non_null(strstr(bwt_last_error(), "edit point 'blocks.7.attn.hook_v' matches nothing"));
  bwt_lm_edit r = {"blocks.1.attn.hook_v", refuse, NULL};
  assert_int_equal(bwt_lm_edit_run(lm, tok, 3, &r, 1, NULL, 0, NULL, NULL), BWT_STATUS_ARG);
  assert_non_null(strstr(bwt_last_error(), "the edit at 'blocks.1.attn.hook_v' failed"));
  bwt_lm_edit none = {"logits", NULL, NULL};
  assert_int_equal(bwt_lm_edit_run(lm, tok, 3, &none, 1, NULL, 0, NULL, NULL), BWT_STATUS_ARG);
  /* After a failure the model runs as before. */
  float a[64], b[64];
  bwt_lm_reset(lm);
  assert_int_equal(bwt_lm_forward(lm, tok, 1, a), BWT_STATUS_OK);
  assert_int_equal(bwt_lm_edit_run(lm, tok, 1, NULL, 0, NULL, 0, NULL, b), BWT_STATUS_OK);
  assert_memory_equal(a, b, sizeof a);
  bwt_lm_close(lm);
}

int main(void) {
  bwt_set_threads(1); /* models this small run fastest on one thread (and the machine may be shared) */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_identity_edit),
      cmocka_unit_test(test_zero_final_values),
      cmocka_unit_test(test_resid_post_edit),
      cmocka_unit_test(test_edit_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
