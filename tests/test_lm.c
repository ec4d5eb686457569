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

/* The shared model directory (test_shared_path); skips the test where it is absent. */
static int have_stories(void) {
  snprintf(stories, sizeof stories, "%s", test_shared_path("models/stories260K"));
  return test_shared_present(test_shared_path("models/stories260K/config.json"));
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


/* ---- the PyTorch fixtures --------------------------------------------------------------------- */

/* Relative error against the float64 reference: fp32 rounding in bwt alone, measured at a few 1e-7
 * to 1e-6; the tolerance leaves room for other BLAS builds. */
#define FIXTURE_TOL 1e-5

/* all_points: the reference holds every point the model makes (the Llama ones a chosen 17), so a
 * capture of "*" must give exactly those: none missing, none extra (no hook_resid_mid in a
 * parallel block, no rotary points for GPT-2, no ln2 for Phi). */
static const struct {
  const char *name;
  int all_points;
} fixtures[] = {{"llama_gqa", 0},     {"llama_mha", 0},       {"llama3_scaled", 0},   {"mistral_window", 0},
                {"llama_bf16", 0},    {"gpt2", 1},            {"gpt2_noprefix", 1},   {"neox_parallel", 1},
                {"neox_sequential", 1}, {"phi", 1}};

/* max |a − b| / max |b| over the finite entries of b; a must be -inf exactly where b is. */
static double rel_err_masked(const float *a, const float *b, size_t n) {
  double e = 0, m = 0;
  for (size_t i = 0; i < n; i++) {
    if (isinf(b[i])) {
      if (!(isinf(a[i]) && (a[i] < 0) == (b[i] < 0))) return INFINITY;
      continue;
    }
    double d = fabs((double)a[i] - b[i]);
    if (!(d <= e)) e = d;
    m = fmax(m, fabs(b[i]));
  }
  return m > 0 ? e / m : e;
}

static void test_fixtures(void **state) {
  for (size_t f = 0; f < sizeof fixtures / sizeof fixtures[0]; f++) {
    char dir[1200], ref_path[1300];
    source_path(dir, sizeof dir, "fixtures/lm");
    snprintf(dir + strlen(dir), sizeof dir - strlen(dir), "/%s", fixtures[f].name);
    snprintf(ref_path, sizeof ref_path, "%s/reference.safetensors", dir);
    bwt_st_file *ref = NULL;
    assert_int_equal(bwt_safetensors_open_lazy(&ref, ref_path), BWT_STATUS_OK);
    bwt_lm *lm = NULL;
    if (bwt_lm_open(&lm, dir) != BWT_STATUS_OK) fail_msg("%s", bwt_last_error());
    const bwt_lm_config *c = bwt_lm_config_of(lm);
    bwt_st_info info;
    assert_int_equal(bwt_safetensors_info(ref, "tokens", &info), BWT_STATUS_OK);
    int T = (int)info.shape[0];
    const void *tok;
    const float *want;
    assert_int_equal(bwt_safetensors_get(ref, "tokens", BWT_DTYPE_I32, 1, NULL, &tok), BWT_STATUS_OK);
    assert_int_equal(bwt_safetensors_get_f32(ref, "logits", 2, (int64_t[]){T, c->V}, &want), BWT_STATUS_OK);
    float *got = calloc((size_t)T * c->V, sizeof(float));
    assert_non_null(got);
    assert_int_equal(bwt_lm_forward(lm, tok, T, got), BWT_STATUS_OK);
    double e_logits = rel_err_masked(got, want, (size_t)T * c->V);
    /* One token at a time through the cache: positions (learned or rotary) past the first call. */
    float *step = calloc((size_t)T * c->V, sizeof(float));
    assert_non_null(step);
    bwt_lm_reset(lm);
    for (int t = 0; t < T; t++)
      assert_int_equal(bwt_lm_forward(lm, (const int32_t *)tok + t, 1, step + (size_t)t * c->V), BWT_STATUS_OK);
    double e_steps = rel_err_masked(step, want, (size_t)T * c->V);
    free(step);

    /* Every act.* point of the reference, captured in one run. */
    const char *names[64];
    int n = 0;
    for (int i = 0; i < bwt_safetensors_count(ref) && n < 64; i++) {
      bwt_st_info ti = bwt_safetensors_info_at(ref, i);
      if (strncmp(ti.name, "act.", 4) == 0) names[n++] = ti.name + 4;
    }
    bwt_lm_capture cap;
    float *cap_logits = calloc((size_t)T * c->V, sizeof(float));
    assert_non_null(cap_logits);
    if (bwt_lm_capture_run(lm, tok, T, names, n, &cap, cap_logits) != BWT_STATUS_OK) fail_msg("%s", bwt_last_error());
    assert_int_equal(cap.n, n);
    assert_memory_equal(cap_logits, got, sizeof(float) * T * c->V); /* capture runs the same forward */
    double e_acts = 0;
    const char *worst = "";
    for (int i = 0; i < cap.n; i++) {
      char rname[128];
      snprintf(rname, sizeof rname, "act.%s", cap.acts[i].name);
      assert_int_equal(bwt_safetensors_info(ref, rname, &info), BWT_STATUS_OK);
      assert_int_equal(info.ndim, cap.acts[i].ndim);
      for (int d = 0; d < info.ndim; d++) assert_int_equal(info.shape[d], cap.acts[i].shape[d]);
      const float *r;
      assert_int_equal(bwt_safetensors_get_f32(ref, rname, info.ndim, info.shape, &r), BWT_STATUS_OK);
      double e = rel_err_masked(cap.acts[i].data, r, info.n_elems);
      if (!(e <= e_acts)) {
        e_acts = e;
        worst = cap.acts[i].name;
      }
    }
    print_message("  %-15s %-18s %-4s T=%2d: logits %.2e (cached steps %.2e), %d activations %.2e (worst %s); tol %.0e of max |ref|\n",
                  fixtures[f].name, c->architecture, c->dtype, T, e_logits, e_steps, n, e_acts, worst, FIXTURE_TOL);
    assert_true(e_logits < FIXTURE_TOL && e_steps < FIXTURE_TOL && e_acts < FIXTURE_TOL);
    bwt_lm_capture_free(&cap);
    if (fixtures[f].all_points) {
      const char *all[] = {"*"};
      assert_int_equal(bwt_lm_capture_run(lm, tok, T, all, 1, &cap, NULL), BWT_STATUS_OK);
      for (int i = 0; i < cap.n; i++) {
        char rname[128];
        snprintf(rname, sizeof rname, "act.%s", cap.acts[i].name);
        if (strcmp(cap.acts[i].name, "logits") != 0 && bwt_safetensors_info(ref, rname, &info) != BWT_STATUS_OK)
          fail_msg("%s: bwt makes point %s, the reference model does not", fixtures[f].name, cap.acts[i].name);
      }
      assert_int_equal(cap.n, n + 1); /* and logits */
      bwt_lm_capture_free(&cap);
    }
    free(got);
    free(cap_logits);
    bwt_lm_close(lm);
    bwt_safetensors_close(ref);
  }
}

/* The fixtures' settings arrive as config.json says. */
static void test_fixture_configs(void **state) {
  char dir[1300];
  bwt_lm *lm = NULL;
  source_path(dir, sizeof dir, "fixtures/lm/mistral_window");
  assert_int_equal(bwt_lm_open(&lm, dir), BWT_STATUS_OK);
  assert_int_equal(bwt_lm_config_of(lm)->sliding_window, 4);
  bwt_lm_close(lm);
  source_path(dir, sizeof dir, "fixtures/lm/llama3_scaled");
  assert_int_equal(bwt_lm_open(&lm, dir), BWT_STATUS_OK);
  assert_int_equal(bwt_lm_config_of(lm)->n_shards, 2);
  assert_int_equal(bwt_lm_config_of(lm)->rope_scaling.type, BWT_ROPE_LLAMA3);
  bwt_lm_close(lm);
  source_path(dir, sizeof dir, "fixtures/lm/llama_bf16");
  assert_int_equal(bwt_lm_open(&lm, dir), BWT_STATUS_OK);
  assert_string_equal(bwt_lm_config_of(lm)->dtype, "BF16");
  assert_true(bwt_lm_config_of(lm)->converted_bytes == bwt_lm_config_of(lm)->n_params * sizeof(float));
  bwt_lm_close(lm);
  source_path(dir, sizeof dir, "fixtures/lm/llama_mha");
  assert_int_equal(bwt_lm_open(&lm, dir), BWT_STATUS_OK);
  assert_int_equal(bwt_lm_config_of(lm)->hs, 6);
  assert_int_equal(bwt_lm_config_of(lm)->tied, 1);
  bwt_lm_close(lm);
  /* GPT-2: tied by PretrainedConfig's default, learned positions, n_inner null = 4C, F16 converted. */
  source_path(dir, sizeof dir, "fixtures/lm/gpt2");
  assert_int_equal(bwt_lm_open(&lm, dir), BWT_STATUS_OK);
  const bwt_lm_config *c = bwt_lm_config_of(lm);
  assert_true(c->tied && c->R == 0 && c->layer_norm && c->act == BWT_LM_ACT_GELU_TANH && !c->parallel_residual);
  assert_true(c->max_pos == 32 && c->F == 64 && c->attn_bias && c->mlp_bias);
  bwt_lm_close(lm);
  source_path(dir, sizeof dir, "fixtures/lm/gpt2_noprefix");
  assert_int_equal(bwt_lm_open(&lm, dir), BWT_STATUS_OK);
  c = bwt_lm_config_of(lm);
  assert_true(c->F == 4 * c->C && c->norm_eps == 1e-3 && strcmp(c->dtype, "F16") == 0);
  assert_true(c->converted_bytes == c->n_params * sizeof(float));
  bwt_lm_close(lm);
  /* NeoX: 80 embedding rows (padded past the 70 ids the tokens use), rotary_pct 0.25 of hs 8. */
  source_path(dir, sizeof dir, "fixtures/lm/neox_parallel");
  assert_int_equal(bwt_lm_open(&lm, dir), BWT_STATUS_OK);
  c = bwt_lm_config_of(lm);
  assert_true(c->V == 80 && c->R == 2 && c->parallel_residual && c->act == BWT_LM_ACT_GELU && !c->tied && c->attn_bias);
  int32_t last = 79;
  assert_int_equal(bwt_lm_forward(lm, &last, 1, NULL), BWT_STATUS_OK); /* a padding row is a row */
  bwt_lm_close(lm);
  source_path(dir, sizeof dir, "fixtures/lm/neox_sequential");
  assert_int_equal(bwt_lm_open(&lm, dir), BWT_STATUS_OK);
  c = bwt_lm_config_of(lm);
  assert_true(c->R == 4 && !c->parallel_residual && !c->attn_bias && c->mlp_bias && c->rope_theta == 500);
  bwt_lm_close(lm);
  /* Phi: partial_rotary_factor 0.5 of hs 8, one norm, both branches in parallel, biased head. */
  source_path(dir, sizeof dir, "fixtures/lm/phi");
  assert_int_equal(bwt_lm_open(&lm, dir), BWT_STATUS_OK);
  c = bwt_lm_config_of(lm);
  assert_true(c->R == 4 && c->parallel_residual && c->layer_norm && c->act == BWT_LM_ACT_GELU_TANH && !c->tied);
  bwt_lm_close(lm);
}

/* BF16 weights converted layer by layer at each forward (what models too large for an fp32 copy
 * get) give the logits and activations of the conversion at open, bit for bit. */
static void test_layerwise_conversion(void **state) {
  char dir[1300];
  source_path(dir, sizeof dir, "fixtures/lm/llama_bf16");
  int32_t tok[9] = {3, 1, 4, 1, 5, 9, 2, 6, 5};
  float *lg[2];
  bwt_lm_capture cap[2];
  const char *points[] = {"blocks.1.attn.hook_z", "hook_embed"};
  for (int mode = 0; mode < 2; mode++) {
    assert_int_equal(setenv("BWT_LM_CONVERT", mode ? "layer" : "open", 1), 0);
    bwt_lm *lm = NULL;
    assert_int_equal(bwt_lm_open(&lm, dir), BWT_STATUS_OK);
    const bwt_lm_config *c = bwt_lm_config_of(lm);
    if (mode) assert_true(c->converted_bytes < c->n_params * sizeof(float) || c->n_params < 4096 * (size_t)c->C);
    lg[mode] = calloc((size_t)9 * c->V, sizeof(float));
    assert_non_null(lg[mode]);
    assert_int_equal(bwt_lm_forward(lm, tok, 9, lg[mode]), BWT_STATUS_OK);
    memset(&cap[mode], 0, sizeof cap[mode]);
    assert_int_equal(bwt_lm_capture_run(lm, tok, 9, points, 2, &cap[mode], NULL), BWT_STATUS_OK);
    if (mode) {
      assert_memory_equal(lg[0], lg[1], sizeof(float) * 9 * c->V);
      assert_int_equal(cap[0].n, cap[1].n);
      for (int i = 0; i < cap[0].n; i++) {
        size_t n = 1;
        for (int d = 0; d < cap[0].acts[i].ndim; d++) n *= (size_t)cap[0].acts[i].shape[d];
        assert_memory_equal(cap[0].acts[i].data, cap[1].acts[i].data, sizeof(float) * n);
      }
    }
    bwt_lm_close(lm);
  }
  assert_int_equal(unsetenv("BWT_LM_CONVERT"), 0);
  for (int mode = 0; mode < 2; mode++) {
    free(lg[mode]);
    bwt_lm_capture_free(&cap[mode]);
  }
}

/* The residual stream adds up, patterns are distributions, and wildcards select by name. */
static void test_capture_consistency(void **state) {
  char dir[1300];
  source_path(dir, sizeof dir, "fixtures/lm/llama_gqa");
  bwt_lm *lm = NULL;
  assert_int_equal(bwt_lm_open(&lm, dir), BWT_STATUS_OK);
  const bwt_lm_config *c = bwt_lm_config_of(lm);
  int32_t tok[7] = {3, 1, 4, 1, 5, 9, 2};
  const char *pats[] = {"blocks.*.hook_resid_*", "blocks.*.hook_attn_out", "blocks.*.hook_mlp_out", "blocks.1.attn.hook_pattern", "logits"};
  bwt_lm_capture cap;
  assert_int_equal(bwt_lm_capture_run(lm, tok, 7, pats, 5, &cap, NULL), BWT_STATUS_OK);
  assert_int_equal(cap.n, c->L * 5 + 2);
  const float *get[8] = {0};
  const char *want[] = {"blocks.0.hook_resid_pre", "blocks.0.hook_attn_out", "blocks.0.hook_resid_mid", "blocks.0.hook_mlp_out",
                        "blocks.0.hook_resid_post", "blocks.1.hook_resid_pre", "blocks.1.attn.hook_pattern", "logits"};
  for (int i = 0; i < cap.n; i++)
    for (int j = 0; j < 8; j++)
      if (strcmp(cap.acts[i].name, want[j]) == 0) get[j] = cap.acts[i].data;
  for (int j = 0; j < 8; j++) assert_non_null(get[j]);
  for (int i = 0; i < 7 * c->C; i++) {
    assert_true(get[2][i] == get[0][i] + get[1][i]);
    assert_true(get[4][i] == get[2][i] + get[3][i]);
    assert_true(get[5][i] == get[4][i]);
  }
  for (int r = 0; r < c->NH * 7; r++) {
    double sum = 0;
    for (int s = 0; s < 7; s++) sum += get[6][r * 7 + s];
    assert_true(fabs(sum - 1) < 1e-6);
  }
  bwt_lm_capture_free(&cap);
  const char *bad[] = {"blocks.9.attn.hook_q"};
  assert_int_equal(bwt_lm_capture_run(lm, tok, 7, bad, 1, &cap, NULL), BWT_STATUS_ARG);
  assert_non_null(strstr(bwt_last_error(), "'blocks.9.attn.hook_q' matches nothing"));
  bwt_lm_capture_free(&cap);
  int32_t oov = 64;
  assert_int_equal(bwt_lm_forward(lm, &oov, 1, NULL), BWT_STATUS_ARG);
  assert_non_null(strstr(bwt_last_error(), "outside the vocabulary"));
  bwt_lm_close(lm);
  assert_true(bwt_lm_point_matches("blocks.*.attn.hook_k", "blocks.12.attn.hook_k"));
  assert_false(bwt_lm_point_matches("blocks.*.attn.hook_k", "blocks.12.attn.hook_rot_k"));
  assert_true(bwt_lm_point_matches("*", "logits"));
}

/* A parallel block: resid_post = resid_pre + attn_out + mlp_out, both branches off resid_pre, and no
 * resid_mid to capture. */
static void check_parallel(const char *fixture) {
  char dir[1300], rel[200];
  snprintf(rel, sizeof rel, "fixtures/lm/%s", fixture);
  source_path(dir, sizeof dir, rel);
  bwt_lm *lm = NULL;
  assert_int_equal(bwt_lm_open(&lm, dir), BWT_STATUS_OK);
  const bwt_lm_config *c = bwt_lm_config_of(lm);
  int32_t tok[6] = {3, 1, 4, 1, 5, 9};
  const char *pats[] = {"blocks.1.hook_resid_pre", "blocks.1.hook_attn_out", "blocks.1.hook_mlp_out", "blocks.1.hook_resid_post"};
  bwt_lm_capture cap;
  assert_int_equal(bwt_lm_capture_run(lm, tok, 6, pats, 4, &cap, NULL), BWT_STATUS_OK);
  assert_int_equal(cap.n, 4);
  for (int i = 0; i < 6 * c->C; i++)
    assert_true(cap.acts[3].data[i] == cap.acts[0].data[i] + cap.acts[1].data[i] + cap.acts[2].data[i]);
  bwt_lm_capture_free(&cap);
  const char *mid[] = {"blocks.0.hook_resid_mid"};
  assert_int_equal(bwt_lm_capture_run(lm, tok, 6, mid, 1, &cap, NULL), BWT_STATUS_ARG);
  bwt_lm_capture_free(&cap);
  bwt_lm_close(lm);
}

static void test_parallel_residual(void **state) {
  check_parallel("neox_parallel");
  check_parallel("phi");
}

/* The fused q/k/v projections' output order, from the weights file itself: query channel i of head h
 * is output column h·hs + i of GPT-2's c_attn (keys C later, values 2C later), but row (3h)·hs + i of
 * NeoX's query_key_value (its key row (3h+1)·hs + i, value (3h+2)·hs + i). Each hook is recomputed
 * from ln1's output in double with both orders: the right one agrees, the other must not. */
static void check_fused(const char *fixture, const char *layer0, const char *qkv, const char *ln1, int per_head, int in_out) {
  char dir[1300], path[1400];
  char rel[200];
  snprintf(rel, sizeof rel, "fixtures/lm/%s", fixture);
  source_path(dir, sizeof dir, rel);
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  bwt_lm *lm = NULL;
  assert_int_equal(bwt_lm_open(&lm, dir), BWT_STATUS_OK);
  const bwt_lm_config *c = bwt_lm_config_of(lm);
  int C = c->C, NH = c->NH, hs = c->hs, T = 9;
  bwt_st_file *st = NULL;
  assert_int_equal(bwt_safetensors_open_lazy(&st, path), BWT_STATUS_OK);
  const float *W, *B, *ln_w, *ln_b;
  char w_name[128], b_name[128], lnw_name[128], lnb_name[128];
  snprintf(w_name, sizeof w_name, "%s%s.weight", layer0, qkv);
  snprintf(b_name, sizeof b_name, "%s%s.bias", layer0, qkv);
  snprintf(lnw_name, sizeof lnw_name, "%s%s.weight", layer0, ln1);
  snprintf(lnb_name, sizeof lnb_name, "%s%s.bias", layer0, ln1);
  int64_t wshape[2] = {in_out ? C : 3 * C, in_out ? 3 * C : C}, bshape[1] = {3 * C}, cshape[1] = {C};
  assert_int_equal(bwt_safetensors_get_f32(st, w_name, 2, wshape, &W), BWT_STATUS_OK);
  assert_int_equal(bwt_safetensors_get_f32(st, b_name, 1, bshape, &B), BWT_STATUS_OK);
  assert_int_equal(bwt_safetensors_get_f32(st, lnw_name, 1, cshape, &ln_w), BWT_STATUS_OK);
  assert_int_equal(bwt_safetensors_get_f32(st, lnb_name, 1, cshape, &ln_b), BWT_STATUS_OK);
  int32_t tok[9] = {5, 17, 3, 60, 2, 2, 41, 9, 33};
  const char *pats[] = {"blocks.0.ln1.hook_normalized", "blocks.0.attn.hook_q", "blocks.0.attn.hook_k", "blocks.0.attn.hook_v"};
  bwt_lm_capture cap;
  assert_int_equal(bwt_lm_capture_run(lm, tok, T, pats, 4, &cap, NULL), BWT_STATUS_OK);
  assert_int_equal(cap.n, 4);
  const float *normed = cap.acts[0].data;
  double err[2] = {0, 0}, big = 0;
  for (int order = 0; order < 2; order++) {   /* 0: this architecture's order, 1: the other one */
    int ph = order ? !per_head : per_head;
    for (int which = 0; which < 3; which++)   /* q, k, v */
      for (int t = 0; t < T; t++)
        for (int h = 0; h < NH; h++)
          for (int i = 0; i < hs; i++) {
            int out = ph ? (3 * h + which) * hs + i : which * C + h * hs + i;
            double acc = B[out];
            for (int k = 0; k < C; k++) {
              double a = (double)normed[t * C + k] * ln_w[k] + ln_b[k];
              acc += a * (in_out ? W[(size_t)k * 3 * C + out] : W[(size_t)out * C + k]);
            }
            double got = cap.acts[1 + which].data[(t * NH + h) * hs + i];
            err[order] = fmax(err[order], fabs(got - acc));
            if (!order) big = fmax(big, fabs(acc));
          }
  }
  print_message("  %-14s %s%s: hooks q/k/v from the file's weights, %s order %.2e, the other order %.2e (of max %.2f)\n",
                fixture, layer0, qkv, per_head ? "per-head" : "q|k|v-block", err[0], err[1], big);
  assert_true(err[0] < 1e-5 * big && err[1] > 0.1 * big);
  bwt_lm_capture_free(&cap);
  bwt_safetensors_close(st);
  bwt_lm_close(lm);
}

static void test_fused_qkv_layouts(void **state) {
  check_fused("gpt2", "transformer.h.0.", "attn.c_attn", "ln_1", 0, 1);
  check_fused("neox_parallel", "gpt_neox.layers.0.", "attention.query_key_value", "input_layernorm", 1, 0);
}

/* ---- bad directories ---------------------------------------------------------------------------- */

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

/* dir/config.json = a fixture's with `from` replaced by `to`, and its weights linked. */
static const char *variant_of(const char *fixture, const char *name, const char *from, const char *to) {
  static char dir[1200];
  char src[1300], path[1300], link_to[1300], rel[200];
  snprintf(dir, sizeof dir, "%s", test_tmpdir(name));
  snprintf(rel, sizeof rel, "fixtures/lm/%.60s/config.json", fixture);
  source_path(src, sizeof src, rel);
  FILE *f = fopen(src, "r");
  assert_non_null(f);
  char text[4096] = {0}, out[4096] = {0};
  size_t n = fread(text, 1, sizeof text - 1, f);
  fclose(f);
  text[n] = 0;
  char *at = strstr(text, from);
  assert_non_null(at);
  snprintf(out, sizeof out, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
  snprintf(path, sizeof path, "%s/config.json", dir);
  write_text(path, out);
  snprintf(rel, sizeof rel, "fixtures/lm/%.60s/model.safetensors", fixture);
  source_path(link_to, sizeof link_to, rel);
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  assert_int_equal(symlink(link_to, path), 0);
  return dir;
}

static const char *variant(const char *name, const char *from, const char *to) {
  return variant_of("llama_gqa", name, from, to);
}

static void expect_open_error(const char *dir, bwt_status want, const char *part) {
  bwt_lm *lm = (bwt_lm *)1;
  bwt_status s = bwt_lm_open(&lm, dir);
  if (s != want || !strstr(bwt_last_error(), part) || strchr(bwt_last_error(), '\n'))
    fail_msg("open %s: status %d, message '%s'; want %d and '%s'", dir, s, bwt_last_error(), want, part);
  assert_null(lm);
}

static void test_bad_directories(void **state) {
  expect_open_error("/nonexistent/model", BWT_STATUS_IO, "no such model directory");
  expect_open_error(test_tmpdir("lm_empty"), BWT_STATUS_IO, "no config.json");
  expect_open_error(variant("lm_badjson", "{", "{{"), BWT_STATUS_FORMAT, "config.json: not valid JSON");
  expect_open_error(variant("lm_arch", "LlamaForCausalLM", "GPTJForCausalLM"), BWT_STATUS_FORMAT,
                    "unknown architecture 'GPTJForCausalLM' (bwt reads LlamaForCausalLM, MistralForCausalLM, GPT2LMHeadModel, GPTNeoXForCausalLM, PhiForCausalLM)");
  expect_open_error(variant("lm_layers", "\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3"), BWT_STATUS_FORMAT,
                    "missing tensor 'model.layers.2.input_layernorm.weight'");
  expect_open_error(variant("lm_fewer", "\"num_hidden_layers\": 2", "\"num_hidden_layers\": 1"), BWT_STATUS_FORMAT,
                    "has no place in a LlamaForCausalLM with 1 layers");
  expect_open_error(variant("lm_width", "\"intermediate_size\": 48", "\"intermediate_size\": 40"), BWT_STATUS_FORMAT,
                    "tensor 'model.layers.0.mlp.gate_proj.weight' has shape");
  expect_open_error(variant("lm_heads", "\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3"), BWT_STATUS_FORMAT,
                    "num_key_value_heads (3) must divide num_attention_heads (4)");
  expect_open_error(variant_of("llama_mha", "lm_untied", "\"tie_word_embeddings\": true", "\"tie_word_embeddings\": false"),
                    BWT_STATUS_FORMAT, "missing tensor 'lm_head.weight'");
  expect_open_error(variant_of("llama_mha", "lm_nobias", "\"attention_bias\": true", "\"attention_bias\": false"),
                    BWT_STATUS_FORMAT, "tensor 'model.layers.0.self_attn.q_proj.bias' has no place");
  /* A tied config beside an lm_head.weight: Hugging Face ignores the copy, so does bwt. */
  bwt_lm *lm = NULL;
  assert_int_equal(bwt_lm_open(&lm, variant("lm_tied", "\"tie_word_embeddings\": false", "\"tie_word_embeddings\": true")), BWT_STATUS_OK);
  assert_int_equal(bwt_lm_config_of(lm)->tied, 1);
  bwt_lm_close(lm);
  expect_open_error(variant("lm_rope", "\"rope_scaling\": null", "\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 2}"),
                    BWT_STATUS_FORMAT, "rope_scaling type 'yarn' is not supported");
  expect_open_error(variant("lm_act", "\"silu\"", "\"gelu\""), BWT_STATUS_FORMAT, "'hidden_act' 'gelu' is not supported");
  /* GPT-2 and NeoX: config and tensors disagreeing, named in the checkpoint's own spelling. */
  expect_open_error(variant_of("gpt2", "gpt2_layers", "\"n_layer\": 2", "\"n_layer\": 3"), BWT_STATUS_FORMAT,
                    "missing tensor 'transformer.h.2.ln_1.weight'");
  expect_open_error(variant_of("gpt2_noprefix", "gpt2_np_layers", "\"n_layer\": 2", "\"n_layer\": 3"), BWT_STATUS_FORMAT,
                    "missing tensor 'h.2.ln_1.weight'");
  expect_open_error(variant_of("gpt2", "gpt2_inner", "\"n_inner\": 64", "\"n_inner\": 48"), BWT_STATUS_FORMAT,
                    "tensor 'transformer.h.0.mlp.c_fc.weight' has shape");
  expect_open_error(variant_of("gpt2", "gpt2_act", "\"gelu_new\"", "\"relu\""), BWT_STATUS_FORMAT,
                    "'activation_function' 'relu' is not supported for GPT2LMHeadModel");
  expect_open_error(variant_of("gpt2", "gpt2_untied", "\"n_ctx\"", "\"tie_word_embeddings\": false, \"n_ctx\""),
                    BWT_STATUS_FORMAT, "missing tensor 'lm_head.weight'");
  expect_open_error(variant_of("gpt2", "gpt2_idx", "\"n_ctx\"", "\"scale_attn_by_inverse_layer_idx\": true, \"n_ctx\""),
                    BWT_STATUS_FORMAT, "'scale_attn_by_inverse_layer_idx' true is not supported for GPT2LMHeadModel");
  expect_open_error(variant_of("neox_sequential", "neox_bias", "\"attention_bias\": false", "\"attention_bias\": true"),
                    BWT_STATUS_FORMAT, "missing tensor 'gpt_neox.layers.0.attention.query_key_value.bias'");
  expect_open_error(variant_of("neox_parallel", "neox_vocab", "\"vocab_size\": 80", "\"vocab_size\": 70"),
                    BWT_STATUS_FORMAT, "tensor 'gpt_neox.embed_in.weight' has shape");
  expect_open_error(variant_of("neox_parallel", "neox_rot", "\"rotary_pct\": 0.25", "\"rotary_pct\": 0.1"),
                    BWT_STATUS_FORMAT, "'rotary_pct' 0.1 leaves no rotated pair");
  expect_open_error(variant_of("phi", "phi_qkln", "\"qk_layernorm\": false", "\"qk_layernorm\": true"),
                    BWT_STATUS_FORMAT, "'qk_layernorm' true is not supported for PhiForCausalLM");
  expect_open_error(variant_of("phi", "phi_msft", "\"model_type\": \"phi\"", "\"model_type\": \"phi-msft\""),
                    BWT_STATUS_FORMAT, "model_type 'phi-msft' is the trust_remote_code layout of PhiForCausalLM");
  expect_open_error(variant_of("phi", "phi_vocab", "\"vocab_size\": 64", "\"vocab_size\": 65"),
                    BWT_STATUS_FORMAT, "tensor 'model.embed_tokens.weight' has shape");
  expect_open_error(variant_of("phi", "phi_layers", "\"num_hidden_layers\": 2", "\"num_hidden_layers\": 1"),
                    BWT_STATUS_FORMAT, "tensor 'model.layers.1.");
  /* A sharded model whose second shard is missing. */
  char dir[1300], src[1300], path[1400];
  snprintf(dir, sizeof dir, "%s", test_tmpdir("lm_shard"));
  source_path(src, sizeof src, "fixtures/lm/llama3_scaled");
  const char *files[] = {"config.json", "model.safetensors.index.json", "model-00001-of-00002.safetensors"};
  for (int i = 0; i < 3; i++) {
    char from[1400];
    snprintf(from, sizeof from, "%s/%s", src, files[i]);
    snprintf(path, sizeof path, "%s/%s", dir, files[i]);
    assert_int_equal(symlink(from, path), 0);
  }
  expect_open_error(dir, BWT_STATUS_IO, "model-00002-of-00002.safetensors");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_stories_config),
      cmocka_unit_test(test_stories_logits),
      cmocka_unit_test(test_stories_greedy),
      cmocka_unit_test(test_fixtures),
      cmocka_unit_test(test_fixture_configs),
      cmocka_unit_test(test_layerwise_conversion),
      cmocka_unit_test(test_capture_consistency),
      cmocka_unit_test(test_fused_qkv_layouts),
      cmocka_unit_test(test_parallel_residual),
      cmocka_unit_test(test_bad_directories),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
