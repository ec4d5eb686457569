/* Paper II's identities and seed 000's detector on language models (bwt/lab/lm_dynamics.h):
 *  - the routing law and the GQA value gradient hold to rounding on the real backward of random
 *    fixtures (grouped-query, sliding window, fused per-head q/k/v, GPT-2) and of stories260K, and a
 *    corrupted gradient is caught;
 *  - the detector end to end on stories260K with SULA-like prompts (finite silhouette, r, ratios);
 *  - its firing machinery on constructed features: separated clusters fire, shuffled labels do not;
 *  - prompt files: the records it reads and one-line errors for bad ones. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/lab/lm_dynamics.h"
#include "bwt/rng.h"
#include "bwt/train.h"
#include "testutil.h"

static void source_path(char *out, size_t n, const char *rel) {
  const char *src = __FILE__, *slash = strrchr(src, '/');
  int dir_len = slash ? (int)(slash - src) : 1;
  snprintf(out, n, "%.*s/%s", dir_len, slash ? src : ".", rel);
}

/* Verifies dir on n random prompts of T tokens; returns the worst relative deviation. */
static double verify_dir(const char *dir, int n, int T) {
  bwt_lm *lm = NULL;
  assert_int_equal(bwt_lm_open(&lm, dir), BWT_STATUS_OK);
  const bwt_lm_config *c = bwt_lm_config_of(lm);
  bwt_lm_record *p = NULL;
  assert_int_equal(bwt_lm_records_random(&p, n, T, c->V, 42), BWT_STATUS_OK);
  bwt_dynamics_check chk[64];
  assert_true(c->L <= 64);
  assert_int_equal(bwt_lm_dynamics_verify(lm, p, n, chk), BWT_STATUS_OK);
  double worst = 0;
  for (int l = 0; l < c->L; l++) {
    assert_true(chk[l].score_scale > 1e-6 && chk[l].value_scale > 1e-6); /* real gradients, not zeros */
    worst = fmax(worst, chk[l].score_max_abs / chk[l].score_scale);
    worst = fmax(worst, chk[l].value_max_abs / chk[l].value_scale);
  }
  bwt_lm_records_free(p, n);
  bwt_lm_close(lm);
  return worst;
}

static void test_verify_fixtures(void **state) {
  const char *names[] = {"llama_gqa", "mistral_window", "neox_parallel", "gpt2", "phi"};
  for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
    char dir[1200], rel[96];
    snprintf(rel, sizeof rel, "fixtures/lm/%s", names[i]);
    source_path(dir, sizeof dir, rel);
    double w = verify_dir(dir, 3, 12);
    print_message("  verify %-15s worst relative deviation %.2e (tol 1e-5)\n", names[i], w);
    assert_true(w < 1e-5);
  }
}

static void test_verify_stories(void **state) {
  char dir[1200];
  snprintf(dir, sizeof dir, "%s", test_shared_path("models/stories260K"));
  if (!test_shared_present(test_shared_path("models/stories260K/config.json"))) return;
  double w = verify_dir(dir, 4, 32);
  print_message("  verify stories260K (8 query heads on 4 kv heads, 4 prompts of 32) worst relative deviation %.2e (tol 1e-5)\n", w);
  assert_true(w < 1e-5);
}

/* A wrong gradient, or values read from the wrong key/value head, must fail the check. */
static void test_verify_catches(void **state) {
  char dir[1200];
  source_path(dir, sizeof dir, "fixtures/lm/llama_gqa");
  bwt_lm *lm = NULL;
  assert_int_equal(bwt_lm_open(&lm, dir), BWT_STATUS_OK);
  int32_t tokens[8] = {3, 17, 5, 40, 22, 9, 1, 63}, targets[8] = {17, 5, 40, 22, 9, 1, 63, -1};
  bwt_lm_grad g;
  assert_int_equal(bwt_lm_grad_xent(lm, tokens, 8, targets, &g), BWT_STATUS_OK);
  bwt_dynamics_check k;
  assert_int_equal(bwt_lm_dynamics_check(lm, &g, 1, &k), BWT_STATUS_OK);
  assert_true(k.score_max_abs < 1e-5 * k.score_scale && k.value_max_abs < 1e-5 * k.value_scale);
  float keep = g.dscores[1][2 * 8 * 8 + 5 * 8 + 3]; /* head 2, query 5, key 3 */
  g.dscores[1][2 * 8 * 8 + 5 * 8 + 3] += 0.01f * (float)k.score_scale;
  assert_int_equal(bwt_lm_dynamics_check(lm, &g, 1, &k), BWT_STATUS_OK);
  assert_true(k.score_max_abs > 5e-3 * k.score_scale);
  g.dscores[1][2 * 8 * 8 + 5 * 8 + 3] = keep;
  /* the two key/value heads' value gradients swapped: each head's group sums the wrong heads */
  const bwt_lm_config *c = bwt_lm_config_of(lm);
  for (int t = 0; t < 8; t++)
    for (int i = 0; i < c->hs; i++) {
      float *a = g.dv[1] + (size_t)t * 2 * c->hs + i, *b = a + c->hs, x = *a;
      *a = *b, *b = x;
    }
  assert_int_equal(bwt_lm_dynamics_check(lm, &g, 1, &k), BWT_STATUS_OK);
  assert_true(k.value_max_abs > 0.1 * k.value_scale);
  assert_int_equal(bwt_lm_dynamics_check(lm, &g, 2, &k), BWT_STATUS_ARG);
  bwt_lm_grad_free(&g);
  bwt_lm_close(lm);
}

/* SULA-like prompts on token ids: BOS, k (cue, answer) pairs whose answers are label A with
 * probability 0.8 under hypothesis A (B under B), then the cue; posterior by Bayes from the counts. */
static bwt_lm_record *sula_like(int n, int k, int V, uint64_t seed) {
  bwt_lm_record *p = calloc((size_t)n, sizeof *p);
  bwt_rng rng;
  bwt_rng_seed(&rng, seed, 1);
  for (int i = 0; i < n; i++) {
    bwt_lm_record *q = &p[i];
    snprintf(q->control, sizeof q->control, "none");
    q->id = i, q->k = k, q->T = 2 * k + 2, q->has_labels = 1;
    q->labels[0] = 100 % V, q->labels[1] = 200 % V;
    q->y = (int)bwt_rng_below(&rng, 2);
    q->tokens = malloc(sizeof(int32_t) * (size_t)q->T);
    q->tokens[0] = 1;
    int na = 0;
    for (int j = 0; j < k; j++) {
      int agree = bwt_rng_below(&rng, 10) < 8, lab = agree ? q->y : 1 - q->y;
      na += lab == 0;
      q->tokens[1 + 2 * j] = 300 % V;
      q->tokens[2 + 2 * j] = q->labels[lab];
    }
    q->tokens[q->T - 1] = 300 % V;
    double la = na * log(0.8) + (k - na) * log(0.2), lb = na * log(0.2) + (k - na) * log(0.8);
    q->posterior[0] = 1 / (1 + exp(lb - la)), q->posterior[1] = 1 - q->posterior[0];
  }
  return p;
}

static void test_detect_stories(void **state) {
  char dir[1200];
  snprintf(dir, sizeof dir, "%s", test_shared_path("models/stories260K"));
  if (!test_shared_present(test_shared_path("models/stories260K/config.json"))) return;
  bwt_lm *lm = NULL;
  assert_int_equal(bwt_lm_open(&lm, dir), BWT_STATUS_OK);
  int n = 40;
  bwt_lm_record *p = sula_like(n, 6, 512, 7);
  snprintf(p[3].control, sizeof p[3].control, "remap"); /* skipped */
  bwt_lm_detect_options o;
  bwt_lm_detect_options_default(&o);
  o.det.subsamples = 50, o.det.subsample_rows = 20;
  bwt_lm_detect_result r;
  assert_int_equal(bwt_lm_detect(lm, p, n, &o, &r), BWT_STATUS_OK);
  assert_int_equal(r.layer, 4);
  assert_int_equal(r.skipped, 1);
  assert_int_equal(r.F, 8 * 512);
  for (int k = 0; k < BWT_DETECT_N; k++) {
    assert_int_equal(r.r[k].rows, n - 1);
    if (r.r[k].clusters < 2) { /* random tokens: the model's argmax may be one label for all; nothing to decide */
      assert_true(k == BWT_DETECT_RANDOM_TOKENS && isnan(r.r[k].silhouette) && isnan(r.r[k].fire_rate) && r.r[k].n_sub == 0);
    } else {
      assert_true(isfinite(r.r[k].silhouette) && fabs(r.r[k].silhouette) <= 1);
      assert_true(isfinite(r.r[k].fire_rate) && r.r[k].n_sub > 0);
    }
    assert_true(isfinite(r.mean_loss[k]) && r.mean_loss[k] > 0);
    for (int l = 0; l < r.L; l++) assert_true(isfinite(r.qv_ratio[k][l]) && r.qv_ratio[k][l] > 0);
  }
  assert_true(isfinite(r.r[BWT_DETECT_REAL].confidence_r) && isnan(r.r[BWT_DETECT_RANDOM_TOKENS].confidence_r));
  /* the shuffled control keeps the real rows and losses: the same ratios */
  for (int l = 0; l < r.L; l++) assert_true(r.qv_ratio[BWT_DETECT_SHUFFLED_LABELS][l] == r.qv_ratio[BWT_DETECT_REAL][l]);
  print_message("  detect stories260K, layer 4, %d rows: silhouette real %.4f random %.4f (%d clusters) shuffled %.4f; r %.4f;"
                " fire %.2f / %.2f / %.2f; |gQ|/|gV| by layer %.3f %.3f %.3f %.3f %.3f\n",
                r.r[0].rows, r.r[0].silhouette, r.r[1].silhouette, r.r[1].clusters, r.r[2].silhouette, r.r[0].confidence_r, r.r[0].fire_rate,
                r.r[1].fire_rate, r.r[2].fire_rate, r.qv_ratio[0][0], r.qv_ratio[0][1], r.qv_ratio[0][2], r.qv_ratio[0][3],
                r.qv_ratio[0][4]);
  char *json = bwt_lm_detect_to_json(&o, &r, dir);
  assert_non_null(json);
  assert_non_null(strstr(json, "\"qv_ratio\""));
  assert_non_null(strstr(json, "\"shuffled_labels\""));
  free(json);
  /* the same figures on a rerun (bit for bit), and with soft targets other ones */
  bwt_lm_detect_result r2;
  assert_int_equal(bwt_lm_detect(lm, p, n, &o, &r2), BWT_STATUS_OK);
  assert_true(r2.r[0].silhouette == r.r[0].silhouette && r2.qv_ratio[0][2] == r.qv_ratio[0][2]);
  bwt_lm_detect_result_free(&r2);
  o.soft = 1;
  assert_int_equal(bwt_lm_detect(lm, p, n, &o, &r2), BWT_STATUS_OK);
  assert_true(r2.mean_loss[0] != r.mean_loss[0]);
  bwt_lm_detect_result_free(&r2);
  bwt_lm_detect_result_free(&r);
  bwt_lm_records_free(p, n);
  bwt_lm_close(lm);
}

/* Constructed features: two tight clusters around orthogonal directions. With their own labels the
 * detector fires on every subsample; with labels independent of the features (a shuffled control) on
 * none at threshold 0.3. */
static void test_fire_rate_constructed(void **state) {
  enum { N = 60, F = 8 };
  float feat[N * F];
  int label[N], shuffled[N];
  bwt_rng rng;
  bwt_rng_seed(&rng, 3, 0);
  for (int i = 0; i < N; i++) {
    label[i] = i % 2;
    double nn = 0;
    for (int j = 0; j < F; j++) {
      float x = (j == label[i] ? 1.0f : 0.0f) + 0.1f * ((float)bwt_rng_below(&rng, 1000) / 1000.0f - 0.5f);
      feat[i * F + j] = x;
      nn += (double)x * x;
    }
    for (int j = 0; j < F; j++) feat[i * F + j] = (float)(feat[i * F + j] / sqrt(nn));
    shuffled[i] = (int)bwt_rng_below(&rng, 2);
  }
  bwt_detector_options o;
  bwt_detector_options_default(&o);
  o.subsamples = 100, o.subsample_rows = 30;
  bwt_detect_result real = {0}, ctl = {0};
  assert_int_equal(bwt_detect_fire_rate(feat, label, N, F, &o, 1, &real), BWT_STATUS_OK);
  assert_int_equal(bwt_detect_fire_rate(feat, shuffled, N, F, &o, 1, &ctl), BWT_STATUS_OK);
  print_message("  constructed: fire rate %.2f with the true labels, %.2f (false positives) with random labels; median subsample silhouettes %.3f, %.3f\n",
                real.fire_rate, ctl.fire_rate, real.sub_silhouette[real.n_sub / 2], ctl.sub_silhouette[ctl.n_sub / 2]);
  assert_true(real.fire_rate == 1.0 && real.n_sub == 100);
  assert_true(ctl.fire_rate < 0.05);
  for (int i = 1; i < ctl.n_sub; i++) assert_true(ctl.sub_silhouette[i - 1] <= ctl.sub_silhouette[i]);
  bwt_detect_result_free(&real);
  bwt_detect_result_free(&ctl);
}

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

static void test_prompt_files(void **state) {
  const char *dir = test_tmpdir("lm_prompts");
  char path[1200];
  snprintf(path, sizeof path, "%s/p.jsonl", dir);
  write_text(path, "{\"id\": 7, \"k\": 2, \"control\": \"shuffled\", \"tokens\": [1, 5, 9], \"labels\": [4, 8], \"y\": 1, "
                   "\"posterior\": [0.25, 0.75]}\n\n{\"tokens\": [3]}\n");
  bwt_lm_record *p = NULL;
  int n = 0;
  assert_int_equal(bwt_lm_records_read(path, 64, 64, 0, &p, &n), BWT_STATUS_OK);
  assert_int_equal(n, 2);
  assert_int_equal(p[0].id, 7);
  assert_int_equal(p[0].T, 3);
  assert_int_equal(p[0].tokens[2], 9);
  assert_int_equal(p[0].labels[1], 8);
  assert_int_equal(p[0].y, 1);
  assert_true(p[0].has_labels && fabs(p[0].posterior[1] - 0.75) < 1e-12);
  assert_string_equal(p[0].control, "shuffled");
  assert_true(!p[1].has_labels);
  assert_string_equal(p[1].control, "none");
  bwt_lm_records_free(p, n);
  /* the detector needs the labels: line 3 is named */
  assert_int_equal(bwt_lm_records_read(path, 64, 64, 1, &p, &n), BWT_STATUS_FORMAT);
  assert_non_null(strstr(bwt_last_error(), "p.jsonl:3: needs \"labels\""));
  static const struct {
    const char *text, *message;
  } bad[] = {
      {"not json\n", ":1: not valid JSON"},
      {"[1, 2]\n", ":1: not a JSON object"},
      {"{\"tokens\": []}\n", "non-empty \"tokens\""},
      {"{\"tokens\": [1, 64]}\n", "token 1 is not an id in 0..63"},
      {"{\"tokens\": [1.5]}\n", "token 0 is not an id"},
      {"{\"tokens\": [1], \"labels\": [4, 4], \"y\": 0, \"posterior\": [0.5, 0.5]}\n", "two different token ids"},
      {"{\"tokens\": [1], \"labels\": [4, 5], \"y\": 2, \"posterior\": [0.5, 0.5]}\n", "\"y\" must be 0 or 1"},
      {"{\"tokens\": [1], \"labels\": [4, 5], \"y\": 0, \"posterior\": [0.5, 0.6]}\n", "is not a distribution"},
      {"{\"tokens\": [1], \"control\": \"other\"}\n", "\"control\" must be one of"},
      {"\n\n", "holds no prompts"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    write_text(path, bad[i].text);
    assert_int_not_equal(bwt_lm_records_read(path, 64, 64, 0, &p, &n), BWT_STATUS_OK);
    if (!strstr(bwt_last_error(), bad[i].message)) fail_msg("'%s': got '%s', want '%s'", bad[i].text, bwt_last_error(), bad[i].message);
    assert_null(strchr(bwt_last_error(), '\n'));
  }
  write_text(path, "{\"tokens\": [1, 2, 3, 4, 5]}\n");
  assert_int_equal(bwt_lm_records_read(path, 64, 4, 0, &p, &n), BWT_STATUS_FORMAT);
  assert_non_null(strstr(bwt_last_error(), "exceed the model's 4 positions"));
}

int main(void) {
  bwt_set_threads(1); /* tiny models (see test_lm_backward.c) */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_verify_fixtures),  cmocka_unit_test(test_verify_stories),
      cmocka_unit_test(test_verify_catches),   cmocka_unit_test(test_detect_stories),
      cmocka_unit_test(test_fire_rate_constructed), cmocka_unit_test(test_prompt_files),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
