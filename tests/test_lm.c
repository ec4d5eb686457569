/* Hugging Face language models (bwt/lm.h):
 *  - stories260K (shared/models/stories260K, Karpathy's Llama-architecture TinyStories model with
 *    8 query heads on 4 key/value heads) against llama2.c's fp32 logits: every logit within 1e-4 of
 *    the largest |logit| of its sequence, and the 200-step greedy continuation token for token;
 *  - the tiny checkpoints of tests/fixtures/lm (tools/lm_reference.py, a PyTorch implementation):
 *    logits and captured activations;
 *  - capture consistency (the residual stream adds up, patterns are distributions);
 *  - bad directories: one-line errors naming the file, key or tensor. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bwt/lm.h"
#include "bwt/safetensors.h"
#include "testutil.h"

static char stories[1200];

/* tests/ + rel, from this file's own path. */
static void source_path(char *out, size_t n, const char *rel) {
  const char *src = __FILE__, *slash = strrchr(src, '/');
  int dir_len = slash ? (int)(slash - src) : 1;
  snprintf(out, n, "%.*s/%s", dir_len, slash ? src : ".", rel);
}

/* The shared model directory: $BWT_STORIES260K, else ../../shared/models/stories260K from tests/. */
static int have_stories(void) {
  const char *env = getenv("BWT_STORIES260K");
  if (env) snprintf(stories, sizeof stories, "%s", env);
  else source_path(stories, sizeof stories, "../../shared/models/stories260K");
  char cfg[1300];
  snprintf(cfg, sizeof cfg, "%s/config.json", stories);
  if (access(cfg, R_OK) == 0) return 1;
  print_message("  SKIPPED: stories260K not found at %s (set BWT_STORIES260K)\n", stories);
  return 0;
}

/* max |a − b| and max |b| over n values. */
static double max_abs_diff(const float *a, const float *b, size_t n, double *max_ref) {
  double e = 0, m = 0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - b[i]);
    if (!(d <= e)) e = d;
    m = fmax(m, fabs(b[i]));
  }
  if (max_ref) *max_ref = m;
  return e;
}

static int argmax(const float *x, int n) {
  int best = 0;
  for (int i = 1; i < n; i++)
    if (x[i] > x[best]) best = i;
  return best;
}

static long peak_rss_kb(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

static void test_stories_config(void **state) {
  if (!have_stories()) return;
  bwt_lm *lm = NULL;
  assert_int_equal(bwt_lm_open(&lm, stories), BWT_STATUS_OK);
  const bwt_lm_config *c = bwt_lm_config_of(lm);
  assert_string_equal(c->architecture, "LlamaForCausalLM");
  assert_int_equal(c->L, 5);
  assert_int_equal(c->C, 64);
  assert_int_equal(c->NH, 8);
  assert_int_equal(c->NKV, 4);
  assert_int_equal(c->hs, 8);
  assert_int_equal(c->F, 172);
  assert_int_equal(c->V, 512);
  assert_int_equal(c->tied, 1);
  assert_int_equal(c->n_shards, 1);
  assert_string_equal(c->dtype, "F32");
  assert_int_equal(c->n_params, 260032);
  assert_int_equal(c->converted_bytes, 0);
  bwt_lm_close(lm);
}

/* Whole sequences in one call, and one token at a time through the cache. */
static void test_stories_logits(void **state) {
  if (!have_stories()) return;
  char ref_path[1300];
  snprintf(ref_path, sizeof ref_path, "%s/reference.safetensors", stories);
  bwt_st_file *ref = NULL;
  assert_int_equal(bwt_safetensors_open_lazy(&ref, ref_path), BWT_STATUS_OK);
  bwt_lm *lm = NULL;
  assert_int_equal(bwt_lm_open(&lm, stories), BWT_STATUS_OK);
  const char *seqs[] = {"seq_a", "seq_b", "greedy"};
  for (int i = 0; i < 3; i++) {
    char name[64];
    bwt_st_info info;
    snprintf(name, sizeof name, "%s.tokens", seqs[i]);
    assert_int_equal(bwt_safetensors_info(ref, name, &info), BWT_STATUS_OK);
    int T = (int)info.shape[0];
    const void *tok;
    const float *want;
    assert_int_equal(bwt_safetensors_get(ref, name, BWT_DTYPE_I32, 1, NULL, &tok), BWT_STATUS_OK);
    snprintf(name, sizeof name, "%s.logits", seqs[i]);
    assert_int_equal(bwt_safetensors_get_f32(ref, name, 2, (int64_t[]){T, 512}, &want), BWT_STATUS_OK);
    float *got = calloc((size_t)T * 512, sizeof(float)), *step = calloc((size_t)T * 512, sizeof(float));
    assert_non_null(got);
    assert_non_null(step);
    bwt_lm_reset(lm);
    assert_int_equal(bwt_lm_forward(lm, tok, T, got), BWT_STATUS_OK);
    assert_int_equal(bwt_lm_position(lm), T);
    bwt_lm_reset(lm);
    for (int t = 0; t < T; t++) assert_int_equal(bwt_lm_forward(lm, (const int32_t *)tok + t, 1, step + (size_t)t * 512), BWT_STATUS_OK);
    double mx, e = max_abs_diff(got, want, (size_t)T * 512, &mx), es = max_abs_diff(step, want, (size_t)T * 512, NULL);
    int argmax_ok = 1;
    for (int t = 0; t < T; t++) argmax_ok &= argmax(got + t * 512, 512) == argmax(want + t * 512, 512);
    print_message("  %-6s T=%3d: max abs err %.2e (whole), %.2e (cached steps); / max |logit| %.2f = %.2e (tol 1e-4); argmax %s\n",
                  seqs[i], T, e, es, mx, e / mx, argmax_ok ? "agrees" : "DIFFERS");
    assert_true(e / mx < 1e-4 && es / mx < 1e-4 && argmax_ok);
    free(got);
    free(step);
  }
  bwt_lm_close(lm);
  bwt_safetensors_close(ref);
}

/* BOS, then 200 greedy steps through the cache: the reference's tokens, each one. */
static void test_stories_greedy(void **state) {
  if (!have_stories()) return;
  char ref_path[1300];
  snprintf(ref_path, sizeof ref_path, "%s/reference.safetensors", stories);
  bwt_st_file *ref = NULL;
  assert_int_equal(bwt_safetensors_open_lazy(&ref, ref_path), BWT_STATUS_OK);
  const void *tok;
  assert_int_equal(bwt_safetensors_get(ref, "greedy.tokens", BWT_DTYPE_I32, 1, (int64_t[]){201}, &tok), BWT_STATUS_OK);
  const int32_t *want = tok;
  bwt_lm *lm = NULL;
  assert_int_equal(bwt_lm_open(&lm, stories), BWT_STATUS_OK);
  float logits[512];
  int32_t t = 1, same = 0;
  for (int i = 0; i < 200; i++) {
    assert_int_equal(bwt_lm_forward(lm, &t, 1, logits), BWT_STATUS_OK);
    t = argmax(logits, 512);
    same += t == want[i + 1];
    if (t != want[i + 1]) print_message("  step %d: %d, reference %d\n", i, t, want[i + 1]);
  }
  print_message("  greedy: %d of 200 tokens as the reference; peak RSS of this test process %ld KB\n", same, peak_rss_kb());
  assert_int_equal(same, 200);
  bwt_lm_close(lm);
  bwt_safetensors_close(ref);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_stories_config),
      cmocka_unit_test(test_stories_logits),
      cmocka_unit_test(test_stories_greedy),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
