/* SULA (bwt/lab/sula.h): the exact posterior against brute-force enumeration over y and the
 * labels; the generator's posteriors, controls (shuffled exactly 1/2, paired draws, masked
 * carriers), layout and determinism; the single-token check on GPT-2's real tokenizer; the
 * metrics on constructed distributions with known answers; a run on a tiny fixture model. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/lab/sula.h"
#include "testutil.h"

/* P(labels) with y marginalised (uniform prior): the brute-force oracle, no algebra shared with
 * the library. bits: label i is bit i (1 = B). */
static double joint(unsigned bits, int n, int y, double alpha) {
  double p = 0.5;
  for (int i = 0; i < n; i++) p *= (int)((bits >> i) & 1) == y ? alpha : 1 - alpha;
  return p;
}

static void test_posterior_enumeration(void **state) {
  (void)state;
  const double alphas[] = {0.9, 0.7, 0.55, 0.99};
  for (int ai = 0; ai < 4; ai++) {
    double alpha = alphas[ai];
    for (int k = 0; k <= 10; k++)
      for (unsigned bits = 0; bits < (1u << k); bits++) {
        int n_b = __builtin_popcount(bits), n_a = k - n_b;
        double pa = joint(bits, k, 0, alpha), pb = joint(bits, k, 1, alpha);
        double latent = pa / (pa + pb);
        /* The next label as a (k+1)-th label (bit k = 0: A), y summed out. */
        double next_a = (joint(bits, k + 1, 0, alpha) + joint(bits, k + 1, 1, alpha)) / (pa + pb);
        assert_true(fabs(bwt_sula_latent(n_a, n_b, alpha) - latent) < 1e-12);
        assert_true(fabs(bwt_sula_predictive(n_a, n_b, alpha) - next_a) < 1e-12);
      }
  }
  /* Large k: finite and saturating, not NaN (log space). */
  assert_true(bwt_sula_latent(4000, 0, 0.9) == 1.0);
  assert_true(fabs(bwt_sula_predictive(4000, 0, 0.9) - 0.9) < 1e-15);
  assert_true(fabs(bwt_sula_predictive(0, 4000, 0.9) - 0.1) < 1e-15);
}

/* An id-mode spec over a vocabulary of 64 (the fixtures' size). */
static bwt_sula_spec id_spec(uint64_t seed) {
  return (bwt_sula_spec){.alpha = 0.9, .seed = seed, .bos = 1, .sep = {3, 4}, .carrier_lo = 10, .carrier_hi = 63,
                         .mask_id = 9, .labels = {5, 6}, .remap = {7, 8}};
}

/* The generator's posterior is the predictive of its own labels; shuffled is exactly 1/2; the
 * controls share y, the labels' draws and (but ablated) the carriers; the layout is the template. */
static void test_generator(void **state) {
  (void)state;
  bwt_sula_spec s = id_spec(42);
  assert_int_equal(bwt_sula_spec_check(&s), BWT_STATUS_OK);
  int agree = 0, total = 0, shuffled_a = 0;
  for (int i = 0; i < 64; i++) {
    bwt_sula_prompt p[BWT_SULA_CONTROL_COUNT];
    for (int c = 0; c < BWT_SULA_CONTROL_COUNT; c++)
      assert_int_equal(bwt_sula_generate(&s, 8, (bwt_sula_control)c, i, 100 + i, &p[c]), BWT_STATUS_OK);
    const bwt_sula_prompt *none = &p[BWT_SULA_NONE];
    assert_int_equal(none->id, 100 + i);
    assert_int_equal(none->n_tokens, 1 + 4 * 8 + 2);
    assert_int_equal(none->tokens[0], 1);
    int n_a = 0;
    for (int e = 0; e < 8; e++) {
      const int32_t *t = none->tokens + 1 + 4 * e;
      assert_true(t[0] >= 10 && t[0] <= 63 && t[0] != 9);
      assert_int_equal(t[1], 3);
      assert_int_equal(t[2], none->example_labels[e] ? 6 : 5);
      assert_int_equal(t[3], 4);
      n_a += none->example_labels[e] == 0;
      agree += none->example_labels[e] == none->y;
      total++;
      /* remap: the same labels drawn, spelt with the other pair; ablated: the carrier masked. */
      assert_int_equal(p[BWT_SULA_REMAP].tokens[1 + 4 * e + 2], none->example_labels[e] ? 8 : 7);
      assert_int_equal(p[BWT_SULA_REMAP].tokens[1 + 4 * e], t[0]);
      assert_int_equal(p[BWT_SULA_ABLATED].tokens[1 + 4 * e], 9);
      assert_int_equal(p[BWT_SULA_ABLATED].tokens[1 + 4 * e + 2], t[2]);
      shuffled_a += p[BWT_SULA_SHUFFLED].example_labels[e] == 0;
    }
    assert_int_equal(none->tokens[none->n_tokens - 1], 3); /* the query ends with s1 */
    assert_int_equal(p[BWT_SULA_ABLATED].tokens[none->n_tokens - 2], 9);
    double want = bwt_sula_predictive(n_a, 8 - n_a, 0.9);
    for (int c = 0; c < BWT_SULA_CONTROL_COUNT; c++) {
      assert_int_equal(p[c].y, none->y);
      assert_true(fabs(p[c].posterior[0] + p[c].posterior[1] - 1) < 1e-15);
      if (c == BWT_SULA_SHUFFLED) {
        assert_true(p[c].posterior[0] == 0.5 && p[c].posterior[1] == 0.5 && p[c].latent[0] == 0.5);
      } else {
        assert_true(p[c].posterior[0] == want);
        assert_true(p[c].latent[0] == bwt_sula_latent(n_a, 8 - n_a, 0.9));
      }
    }
    assert_int_equal(p[BWT_SULA_REMAP].labels[0], 7);
    for (int c = 0; c < BWT_SULA_CONTROL_COUNT; c++) bwt_sula_prompt_free(&p[c]);
  }
  /* 512 labels: agreement with y near alpha, shuffled labels near a fair coin (3.5 to 4 sd). */
  assert_true(fabs((double)agree / total - 0.9) < 0.05);
  assert_true(fabs((double)shuffled_a / total - 0.5) < 0.08);
}

static void test_determinism(void **state) {
  (void)state;
  bwt_sula_spec s = id_spec(7), t = id_spec(8);
  int differ = 0;
  for (int i = 0; i < 16; i++) {
    bwt_sula_prompt a, b, c;
    assert_int_equal(bwt_sula_generate(&s, 4, BWT_SULA_NONE, i, i, &a), BWT_STATUS_OK);
    assert_int_equal(bwt_sula_generate(&s, 4, BWT_SULA_NONE, i, i, &b), BWT_STATUS_OK);
    assert_int_equal(bwt_sula_generate(&t, 4, BWT_SULA_NONE, i, i, &c), BWT_STATUS_OK);
    assert_int_equal(a.n_tokens, b.n_tokens);
    assert_memory_equal(a.tokens, b.tokens, (size_t)a.n_tokens * sizeof *a.tokens);
    assert_int_equal(a.y, b.y);
    differ += memcmp(a.tokens, c.tokens, (size_t)a.n_tokens * sizeof *a.tokens) != 0;
    bwt_sula_prompt_free(&a), bwt_sula_prompt_free(&b), bwt_sula_prompt_free(&c);
  }
  assert_true(differ >= 15);
}

static void test_spec_check(void **state) {
  (void)state;
  bwt_sula_spec s = id_spec(0);
  s.remap[0] = 5;
  assert_int_equal(bwt_sula_spec_check(&s), BWT_STATUS_ARG);
  assert_non_null(strstr(bwt_last_error(), "four different tokens"));
  s = id_spec(0), s.sep[1] = 6;
  assert_int_equal(bwt_sula_spec_check(&s), BWT_STATUS_ARG);
  s = id_spec(0), s.alpha = 1;
  assert_int_equal(bwt_sula_spec_check(&s), BWT_STATUS_ARG);
  assert_non_null(strstr(bwt_last_error(), "alpha"));
  s = id_spec(0), s.carrier_lo = 5, s.carrier_hi = 9;
  assert_int_equal(bwt_sula_spec_check(&s), BWT_STATUS_ARG);
  assert_non_null(strstr(bwt_last_error(), "carrier ids 5-9"));
}

/* GPT-2's real tokenizer: "blicket" after ": " is several tokens (an error naming it), " foo" is
 * one; the built-in pair picked is the first of single tokens; a text prompt is the template, its
 * tokens holding each example's label id once. */
static void test_text_mode_gpt2(void **state) {
  (void)state;
  const char *path = test_shared_path("tokenizers/gpt2/tokenizer.json");
  if (!test_shared_present(path)) return;
  bwt_tokenizer *tok = NULL;
  assert_int_equal(bwt_tokenizer_load(&tok, path), BWT_STATUS_OK);
  int32_t id = -1, *ids = NULL;
  assert_int_equal(bwt_sula_label_id(tok, "blicket", &id), BWT_STATUS_ARG);
  assert_non_null(strstr(bwt_last_error(), "label word 'blicket' is not one token"));
  assert_int_equal(bwt_sula_label_id(tok, "foo", &id), BWT_STATUS_OK);
  size_t n = 0;
  assert_int_equal(bwt_tokenizer_encode(tok, " foo", 4, 0, &ids, &n), BWT_STATUS_OK);
  assert_int_equal(n, 1);
  assert_int_equal(ids[0], id);
  free(ids);
  int from = 0;
  int32_t pair[2];
  assert_int_equal(bwt_sula_pick_pair(tok, &from, NULL, pair), BWT_STATUS_OK);
  assert_string_equal(bwt_sula_label_pairs[from][0], "nib"); /* dax ... bouba are several tokens */
  const char *carriers[] = {"apple", "river"};
  bwt_sula_spec s = {.alpha = 0.9, .seed = 3, .tok = tok, .label_words = {"nib", "gob"}, .remap_words = {"dex", "mog"},
                     .carriers = carriers, .n_carriers = 2, .mask_word = BWT_SULA_MASK_WORD, .bos = -1,
                     .labels = {pair[0], pair[1]}};
  from++;
  assert_int_equal(bwt_sula_pick_pair(tok, &from, s.labels, s.remap), BWT_STATUS_OK);
  assert_int_equal(bwt_sula_spec_check(&s), BWT_STATUS_OK);
  /* The default spec picks the same two pairs in text mode, and bwt lm sula's ids without a tokenizer. */
  bwt_lm_config cfg = {.V = 64, .bos = 1};
  bwt_sula_spec d;
  assert_int_equal(bwt_sula_spec_default(&d, &cfg, tok, 0.8, 5), BWT_STATUS_OK);
  assert_true(d.tok == tok && d.alpha == 0.8 && d.seed == 5 && d.n_carriers == bwt_sula_n_carriers);
  assert_memory_equal(d.labels, s.labels, sizeof d.labels);
  assert_memory_equal(d.remap, s.remap, sizeof d.remap);
  assert_string_equal(d.label_words[1], "gob");
  assert_string_equal(d.remap_words[0], "dex");
  assert_int_equal(bwt_sula_spec_default(&d, &cfg, NULL, 0.9, 0), BWT_STATUS_OK);
  assert_true(!d.tok && d.labels[0] == 5 && d.labels[1] == 6 && d.remap[0] == 7 && d.remap[1] == 8 && d.sep[0] == 3 &&
              d.sep[1] == 4 && d.mask_id == 9 && d.carrier_lo == 10 && d.carrier_hi == 63 && d.bos == 1);
  bwt_sula_prompt p, q;
  assert_int_equal(bwt_sula_generate(&s, 3, BWT_SULA_NONE, 0, 0, &p), BWT_STATUS_OK);
  assert_int_equal(bwt_sula_generate(&s, 3, BWT_SULA_ABLATED, 0, 0, &q), BWT_STATUS_OK);
  /* "w: L\nw: L\nw: L\nw:" with the words of the draws. */
  char *line = p.text;
  for (int e = 0; e <= 3; e++) {
    char *nl = strchr(line, '\n');
    assert_true(e < 3 ? nl != NULL : nl == NULL);
    char want[2][64];
    for (int c = 0; c < 2; c++)
      if (e < 3) snprintf(want[c], sizeof want[c], "%s: %s", carriers[c], p.example_labels[e] ? "gob" : "nib");
      else snprintf(want[c], sizeof want[c], "%s:", carriers[c]);
    size_t len = nl ? (size_t)(nl - line) : strlen(line);
    assert_true((len == strlen(want[0]) && strncmp(line, want[0], len) == 0) || (len == strlen(want[1]) && strncmp(line, want[1], len) == 0));
    line = nl ? nl + 1 : line;
  }
  assert_int_equal(strncmp(q.text, "_: ", 3), 0);
  int labels_seen = 0;
  for (int i = 0; i < p.n_tokens; i++) labels_seen += p.tokens[i] == pair[0] || p.tokens[i] == pair[1];
  assert_int_equal(labels_seen, 3);
  bwt_sula_prompt_free(&p), bwt_sula_prompt_free(&q);
  bwt_tokenizer_free(tok);
}

/* Constructed model outputs with known metrics. */
static void test_metrics(void **state) {
  (void)state;
  const double bayes[4] = {0.9, 0.1, 0.5, 0.82};
  const double mass[4] = {0.5, 0.25, 1.0, 0.25};
  const int y[4] = {0, 1, 0, 1};
  bwt_sula_metrics m;
  /* The model is Bayes: no error, its accuracy is Bayes'. */
  bwt_sula_metrics_compute(bayes, mass, bayes, NULL, y, 4, &m);
  assert_true(m.entropy_mae == 0 && m.kl == 0 && m.ece == 0);
  assert_true(fabs(m.label_mass - 0.5) < 1e-15);
  assert_true(fabs(m.accuracy - (1 + 1 + 0.5 + 0) / 4) < 1e-15);
  assert_true(m.accuracy == m.bayes_accuracy);
  /* A constant 1/2: |1 − H(p)| = KL(p‖1/2) = 1 − H(p); all in bin [0.5, 0.6); ECE |0.5 − mean p|. */
  const double half[4] = {0.5, 0.5, 0.5, 0.5};
  bwt_sula_metrics_compute(half, mass, bayes, NULL, y, 4, &m);
  double h09 = 0.4689955935892811, h082 = 0.6800770457282799;
  double want = ((1 - h09) * 2 + 0 + (1 - h082)) / 4;
  assert_true(fabs(m.entropy_mae - want) < 1e-12);
  assert_true(fabs(m.kl - want) < 1e-12);
  assert_int_equal(m.bin_n[5], 4);
  assert_true(fabs(m.bin_model[5] - 0.5) < 1e-15);
  assert_true(fabs(m.bin_bayes[5] - 0.58) < 1e-12);
  assert_true(fabs(m.ece - 0.08) < 1e-12);
  assert_true(m.accuracy == 0.5);
  /* q = 0.8 against p = 0.9: KL = 0.052932501298081136 bits, |ΔH| = 0.2529325012980812. */
  const double p9[1] = {0.9}, q8[1] = {0.8}, one[1] = {1};
  const int ya[1] = {0};
  bwt_sula_metrics_compute(q8, one, p9, NULL, ya, 1, &m);
  assert_true(fabs(m.kl - 0.052932501298081136) < 1e-12);
  assert_true(fabs(m.entropy_mae - 0.2529325012980812) < 1e-12);
  assert_int_equal(m.bin_n[8], 1);
  assert_true(fabs(m.ece - 0.1) < 1e-12);
  assert_true(m.accuracy == 1);
  /* P(A) = 1 falls in the last bin. */
  const double certain[1] = {1.0};
  bwt_sula_metrics_compute(certain, one, p9, NULL, ya, 1, &m);
  assert_int_equal(m.bin_n[9], 1);
}

/* A whole run on the llama_gqa fixture (vocabulary 64) in id mode: scores are probabilities, the
 * same with one model or two (threads share prompts out), the shuffled rows compare with exactly
 * 1/2, and a score matches the full-sequence forward. */
static void test_run_fixture(void **state) {
  (void)state;
  char dir[1200];
  const char *src = __FILE__, *slash = strrchr(src, '/');
  snprintf(dir, sizeof dir, "%.*s/fixtures/lm/llama_gqa", slash ? (int)(slash - src) : 1, slash ? src : ".");
  bwt_lm *a = NULL, *b = NULL;
  assert_int_equal(bwt_lm_open(&a, dir), BWT_STATUS_OK);
  assert_int_equal(bwt_lm_open(&b, dir), BWT_STATUS_OK);
  bwt_sula_spec s = id_spec(5);
  const int ks[3] = {0, 2, 4};
  bwt_sula_result r1, r2;
  bwt_lm *one[1] = {a}, *two[2] = {a, b};
  assert_int_equal(bwt_sula_run(one, 1, &s, ks, 3, 6, NULL, NULL, &r1), BWT_STATUS_OK);
  assert_int_equal(bwt_sula_run(two, 2, &s, ks, 3, 6, NULL, NULL, &r2), BWT_STATUS_OK);
  int total = 3 * BWT_SULA_CONTROL_COUNT * 6;
  for (int i = 0; i < total; i++) {
    assert_true(r1.model_a[i] > 0 && r1.model_a[i] < 1);
    assert_true(r1.mass[i] > 0 && r1.mass[i] < 1);
    assert_true(r1.model_a[i] == r2.model_a[i]);
  }
  for (int ki = 0; ki < 3; ki++) {
    const bwt_sula_metrics *sh = &r1.metrics[ki * BWT_SULA_CONTROL_COUNT + BWT_SULA_SHUFFLED];
    assert_int_equal(sh->n, 6);
    assert_true(sh->mean_bayes_a == 0.5);
    assert_true(r1.metrics[ki * BWT_SULA_CONTROL_COUNT + BWT_SULA_ABLATED].shift >= 0);
  }
  /* The prefix-then-last-token score against the whole sequence's last logits. */
  const bwt_sula_prompt *p = &r1.prompts[(2 * BWT_SULA_CONTROL_COUNT) * 6 + 1];
  float *logits = malloc((size_t)p->n_tokens * 64 * sizeof *logits);
  bwt_lm_reset(a);
  assert_int_equal(bwt_lm_forward(a, p->tokens, p->n_tokens, logits), BWT_STATUS_OK);
  const float *last = logits + (size_t)(p->n_tokens - 1) * 64;
  double want = 1 / (1 + exp((double)last[p->labels[1]] - last[p->labels[0]]));
  assert_true(fabs(r1.model_a[(2 * BWT_SULA_CONTROL_COUNT) * 6 + 1] - want) < 1e-6);
  free(logits);
  /* A label outside the vocabulary is an error naming it, not a crash. */
  bwt_sula_spec bad = id_spec(5);
  bad.labels[1] = 64, bad.carrier_hi = 63;
  bwt_sula_result r3;
  assert_int_equal(bwt_sula_run(one, 1, &bad, ks, 1, 1, NULL, NULL, &r3), BWT_STATUS_ARG);
  assert_non_null(strstr(bwt_last_error(), "label id 64 is outside the vocabulary"));
  bwt_sula_result_free(&r1), bwt_sula_result_free(&r2);
  bwt_lm_close(a), bwt_lm_close(b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_posterior_enumeration), cmocka_unit_test(test_generator),
      cmocka_unit_test(test_determinism),           cmocka_unit_test(test_spec_check),
      cmocka_unit_test(test_text_mode_gpt2),        cmocka_unit_test(test_metrics),
      cmocka_unit_test(test_run_fixture),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
