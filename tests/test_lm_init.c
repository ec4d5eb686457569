/* Random-weight checkpoints (bwt/lm_random.h): every architecture written, opened back with
 * bwt_lm_open and run; the sizes asked for; the same seed the same file byte for byte, another
 * seed another; the weights' statistics as Hugging Face's _init_weights draws them; a template's
 * config kept; a tokenizer copied with the vocabulary following it; bad specs refused. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/fileio.h"
#include "bwt/lm.h"
#include "bwt/lm_random.h"
#include "bwt/safetensors.h"
#include "testutil.h"

static const char *archs[] = {"LlamaForCausalLM", "MistralForCausalLM", "GPT2LMHeadModel", "GPTNeoXForCausalLM", "PhiForCausalLM"};

static void fixture_path(char *out, size_t n, const char *rel) {
  const char *src = __FILE__, *slash = strrchr(src, '/');
  snprintf(out, n, "%.*s/fixtures/lm/%s", slash ? (int)(slash - src) : 1, slash ? src : ".", rel);
}

static char *slurp(const char *path, size_t *n) {
  char *data = NULL;
  assert_int_equal(bwt_read_file(path, &data, n), BWT_STATUS_OK);
  return data;
}

/* Mean and standard deviation of an F32 tensor of dir's model.safetensors. */
static void tensor_stats(const char *dir, const char *name, double *mean, double *sd, size_t *count) {
  char path[1200];
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  bwt_st_file *f = NULL;
  assert_int_equal(bwt_safetensors_open(&f, path), BWT_STATUS_OK);
  bwt_st_info info;
  assert_int_equal(bwt_safetensors_info(f, name, &info), BWT_STATUS_OK);
  const float *x = NULL;
  assert_int_equal(bwt_safetensors_get_f32(f, name, info.ndim, info.shape, &x), BWT_STATUS_OK);
  double s = 0, ss = 0;
  for (size_t i = 0; i < info.n_elems; i++) s += x[i], ss += (double)x[i] * x[i];
  *mean = s / (double)info.n_elems;
  *sd = sqrt(ss / (double)info.n_elems - *mean * *mean);
  *count = info.n_elems;
  bwt_safetensors_close(f);
}

/* Each architecture: written with sizes of its own, opened, run; logits finite and near uniform
 * (random weights of std 0.02 give logits of order 0.1). */
static void test_every_architecture(void **state) {
  (void)state;
  for (int a = 0; a < 5; a++) {
    char dir[1200];
    snprintf(dir, sizeof dir, "%s/%s", test_tmpdir("lm_init_arch"), archs[a]);
    int gqa = a < 2 || a == 4; /* fused q/k/v (GPT-2, NeoX) needs kv-heads = heads */
    bwt_lm_random_spec spec = {.arch = archs[a], .seed = 7, .layers = 3, .hidden = 48, .heads = 4,
                               .kv_heads = gqa ? 2 : 0, .mlp = 96, .vocab = 100, .max_pos = 64};
    bwt_lm_random_info info;
    assert_int_equal(bwt_lm_random_write(&spec, dir, &info), BWT_STATUS_OK);
    assert_string_equal(info.architecture, archs[a]);
    bwt_lm *lm = NULL;
    if (bwt_lm_open(&lm, dir) != BWT_STATUS_OK) fail_msg("%s: %s", archs[a], bwt_last_error());
    const bwt_lm_config *c = bwt_lm_config_of(lm);
    assert_string_equal(c->architecture, archs[a]);
    assert_int_equal(c->L, 3);
    assert_int_equal(c->C, 48);
    assert_int_equal(c->NH, 4);
    assert_int_equal(c->NKV, gqa ? 2 : 4);
    assert_int_equal(c->F, 96);
    assert_int_equal(c->V, 100);
    assert_int_equal(c->max_pos, 64);
    assert_string_equal(c->dtype, "F32");
    assert_int_equal((long long)c->n_params, info.n_params);
    int32_t toks[5] = {1, 50, 99, 0, 7};
    float logits[5 * 100];
    assert_int_equal(bwt_lm_forward(lm, toks, 5, logits), BWT_STATUS_OK);
    double mx = 0;
    for (int i = 0; i < 500; i++) {
      assert_true(isfinite(logits[i]));
      mx = fmax(mx, fabs(logits[i]));
    }
    assert_true(mx > 1e-4 && mx < 2.0);
    bwt_lm_close(lm);
  }
}

/* The same seed gives the same bytes; another seed other weights (and the same config). */
static void test_seed_determinism(void **state) {
  (void)state;
  const char *base = test_tmpdir("lm_init_seed");
  char d1[1200], d2[1200], d3[1200], p1[1300], p2[1300], p3[1300];
  snprintf(d1, sizeof d1, "%s/a", base), snprintf(d2, sizeof d2, "%s/b", base), snprintf(d3, sizeof d3, "%s/c", base);
  bwt_lm_random_spec spec = {.arch = "gpt_neox", .seed = 11};
  assert_int_equal(bwt_lm_random_write(&spec, d1, NULL), BWT_STATUS_OK);
  assert_int_equal(bwt_lm_random_write(&spec, d2, NULL), BWT_STATUS_OK);
  spec.seed = 12;
  assert_int_equal(bwt_lm_random_write(&spec, d3, NULL), BWT_STATUS_OK);
  snprintf(p1, sizeof p1, "%s/model.safetensors", d1), snprintf(p2, sizeof p2, "%s/model.safetensors", d2);
  snprintf(p3, sizeof p3, "%s/model.safetensors", d3);
  size_t n1, n2, n3;
  char *a = slurp(p1, &n1), *b = slurp(p2, &n2), *c = slurp(p3, &n3);
  assert_int_equal(n1, n2);
  assert_memory_equal(a, b, n1);
  assert_int_equal(n1, n3); /* same header length: the seed is in the metadata, same digits */
  assert_true(memcmp(a, c, n1) != 0);
  /* The weights differ, not only the metadata: the last kilobyte is tensor data. */
  assert_true(memcmp(a + n1 - 1024, c + n1 - 1024, 1024) != 0);
  free(a), free(b), free(c);
}

/* normal(0, 0.02) on the embeddings (32768 values: the sample sd is within 1% of 0.02 with
 * overwhelming probability, the test allows 10%); GPT-2's c_proj at 0.02/sqrt(2L); norms 1,
 * biases 0; a std asked for is used. */
static void test_weight_statistics(void **state) {
  (void)state;
  const char *dir = test_tmpdir("lm_init_stats");
  bwt_lm_random_spec spec = {.arch = "gpt2", .seed = 3, .layers = 4};
  assert_int_equal(bwt_lm_random_write(&spec, dir, NULL), BWT_STATUS_OK);
  double mean, sd;
  size_t n;
  tensor_stats(dir, "transformer.wte.weight", &mean, &sd, &n);
  assert_int_equal(n, 512 * 64);
  assert_true(fabs(sd - 0.02) < 0.002);
  assert_true(fabs(mean) < 0.001);
  tensor_stats(dir, "transformer.h.1.mlp.c_proj.weight", &mean, &sd, &n);
  assert_true(fabs(sd - 0.02 / sqrt(8.0)) < 0.1 * 0.02 / sqrt(8.0));
  tensor_stats(dir, "transformer.h.1.mlp.c_fc.weight", &mean, &sd, &n);
  assert_true(fabs(sd - 0.02) < 0.002);
  tensor_stats(dir, "transformer.h.0.ln_1.weight", &mean, &sd, &n);
  assert_true(mean == 1.0 && sd == 0.0);
  tensor_stats(dir, "transformer.h.0.attn.c_attn.bias", &mean, &sd, &n);
  assert_true(mean == 0.0 && sd == 0.0);
  spec = (bwt_lm_random_spec){.arch = "llama", .seed = 3, .std = 0.05};
  assert_int_equal(bwt_lm_random_write(&spec, dir, NULL), BWT_STATUS_OK);
  tensor_stats(dir, "model.embed_tokens.weight", &mean, &sd, &n);
  assert_true(fabs(sd - 0.05) < 0.005);
}

/* --like keeps the template's config (stories260K's shape in a fixture: GQA, head_dim), with the
 * weights replaced; the override of one size leaves the rest. */
static void test_like_template(void **state) {
  (void)state;
  char like[1200];
  fixture_path(like, sizeof like, "llama_gqa");
  const char *dir = test_tmpdir("lm_init_like");
  bwt_lm *ref = NULL, *lm = NULL;
  assert_int_equal(bwt_lm_open(&ref, like), BWT_STATUS_OK);
  bwt_lm_random_spec spec = {.like = like, .seed = 1, .layers = 1};
  assert_int_equal(bwt_lm_random_write(&spec, dir, NULL), BWT_STATUS_OK);
  assert_int_equal(bwt_lm_open(&lm, dir), BWT_STATUS_OK);
  const bwt_lm_config *a = bwt_lm_config_of(ref), *b = bwt_lm_config_of(lm);
  assert_int_equal(b->L, 1);
  assert_int_equal(b->C, a->C);
  assert_int_equal(b->NH, a->NH);
  assert_int_equal(b->NKV, a->NKV);
  assert_int_equal(b->hs, a->hs);
  assert_int_equal(b->V, a->V);
  assert_int_equal(b->tied, a->tied);
  assert_true(b->rope_theta == a->rope_theta);
  bwt_lm_close(ref);
  bwt_lm_close(lm);
}

/* A tokenizer copied in; its size decides the vocabulary (Pythia's 50278 ids padded to 50304, as
 * pythia-410m's config has it; GPT-2's 50257 as they are). */
static void test_tokenizer_vocab(void **state) {
  (void)state;
  const char *pythia = test_shared_path("tokenizers/pythia");
  if (!test_shared_present(pythia)) return;
  char tok[1200];
  snprintf(tok, sizeof tok, "%s", pythia);
  const char *dir = test_tmpdir("lm_init_tok");
  bwt_lm_random_spec spec = {.arch = "GPTNeoXForCausalLM", .tokenizer = tok, .hidden = 16, .heads = 2, .layers = 1, .mlp = 32};
  bwt_lm_random_info info;
  assert_int_equal(bwt_lm_random_write(&spec, dir, &info), BWT_STATUS_OK);
  assert_int_equal(info.tokenizer_vocab, 50278);
  assert_int_equal(info.vocab, 50304);
  char path[1300];
  snprintf(path, sizeof path, "%s/tokenizer.json", dir);
  assert_true(bwt_path_exists(path));
  bwt_lm *lm = NULL;
  assert_int_equal(bwt_lm_open(&lm, dir), BWT_STATUS_OK);
  assert_int_equal(bwt_lm_config_of(lm)->V, 50304);
  assert_int_equal(bwt_lm_config_of(lm)->eos, 0); /* <|endoftext|> */
  bwt_lm_close(lm);
  const char *gpt2 = test_shared_path("tokenizers/gpt2/tokenizer.json");
  if (!test_shared_present(gpt2)) return;
  snprintf(tok, sizeof tok, "%s", gpt2);
  spec = (bwt_lm_random_spec){.arch = "gpt2", .tokenizer = tok, .hidden = 16, .layers = 1, .heads = 2, .mlp = 32};
  if (bwt_lm_random_write(&spec, dir, &info) != BWT_STATUS_OK) fail_msg("%s", bwt_last_error());
  assert_int_equal(info.vocab, 50257);
  spec.vocab = 1000;
  assert_int_equal(bwt_lm_random_write(&spec, dir, &info), BWT_STATUS_ARG);
  assert_non_null(strstr(bwt_last_error(), "smaller than the tokenizer's 50257"));
}

/* Llama's embedding is built with padding_idx = pad_token_id: that row starts at 0, the others
 * random; GPT-NeoX has no padding_idx, so its row is drawn. */
static void test_pad_row(void **state) {
  (void)state;
  const char *base = test_tmpdir("lm_init_pad");
  char tmpl[1200], out[1200], path[1300];
  for (int a = 0; a < 2; a++) {
    snprintf(tmpl, sizeof tmpl, "%s/tmpl%d", base, a);
    snprintf(out, sizeof out, "%s/out%d", base, a);
    bwt_lm_random_spec spec = {.arch = a ? "gpt_neox" : "llama"};
    assert_int_equal(bwt_lm_random_write(&spec, tmpl, NULL), BWT_STATUS_OK);
    /* The template's config with "pad_token_id": 3 added after its first brace. */
    snprintf(path, sizeof path, "%s/config.json", tmpl);
    size_t n = 0;
    char *cfg = NULL;
    assert_int_equal(bwt_read_file(path, &cfg, &n), BWT_STATUS_OK);
    char *edited = malloc(n + 32);
    snprintf(edited, n + 32, "{\"pad_token_id\": 3,%s", strchr(cfg, '{') + 1);
    assert_int_equal(bwt_write_file_atomic(path, edited, strlen(edited)), BWT_STATUS_OK);
    free(cfg), free(edited);
    spec = (bwt_lm_random_spec){.like = tmpl, .seed = 9};
    assert_int_equal(bwt_lm_random_write(&spec, out, NULL), BWT_STATUS_OK);
    bwt_lm *lm = NULL;
    assert_int_equal(bwt_lm_open(&lm, out), BWT_STATUS_OK);
    snprintf(path, sizeof path, "%s/model.safetensors", out);
    bwt_st_file *f = NULL;
    assert_int_equal(bwt_safetensors_open(&f, path), BWT_STATUS_OK);
    const float *e = NULL;
    assert_int_equal(bwt_safetensors_get_f32(f, a ? "gpt_neox.embed_in.weight" : "model.embed_tokens.weight", 2, NULL, &e), BWT_STATUS_OK);
    double row3 = 0, row4 = 0;
    for (int c = 0; c < 64; c++) row3 += fabs(e[3 * 64 + c]), row4 += fabs(e[4 * 64 + c]);
    assert_true(a ? row3 > 0.1 : row3 == 0.0);
    assert_true(row4 > 0.1);
    bwt_safetensors_close(f);
    bwt_lm_close(lm);
  }
}

static void test_bad_specs(void **state) {
  (void)state;
  const char *dir = test_tmpdir("lm_init_bad");
  bwt_lm_random_spec spec = {.arch = "BertModel"};
  assert_int_equal(bwt_lm_random_write(&spec, dir, NULL), BWT_STATUS_ARG);
  assert_non_null(strstr(bwt_last_error(), "unknown architecture 'BertModel'"));
  spec = (bwt_lm_random_spec){.arch = "gpt2", .kv_heads = 2};
  assert_int_equal(bwt_lm_random_write(&spec, dir, NULL), BWT_STATUS_ARG);
  assert_non_null(strstr(bwt_last_error(), "must equal the heads"));
  spec = (bwt_lm_random_spec){.arch = "llama", .heads = 5};
  assert_int_equal(bwt_lm_random_write(&spec, dir, NULL), BWT_STATUS_ARG);
  assert_non_null(strstr(bwt_last_error(), "must divide hidden_size"));
  spec = (bwt_lm_random_spec){.like = "/nonexistent/model"};
  assert_int_equal(bwt_lm_random_write(&spec, dir, NULL), BWT_STATUS_IO);
  char path[1300];
  snprintf(path, sizeof path, "%s/config.json", dir);
  assert_false(bwt_path_exists(path)); /* nothing written for a refused spec */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_architecture), cmocka_unit_test(test_seed_determinism),
      cmocka_unit_test(test_weight_statistics),  cmocka_unit_test(test_like_template),
      cmocka_unit_test(test_tokenizer_vocab),    cmocka_unit_test(test_pad_row),
      cmocka_unit_test(test_bad_specs),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
