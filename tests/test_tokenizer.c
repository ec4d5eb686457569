/* Tokenizers against independent references: for GPT-2, Pythia and Llama 3 (the real files in
 * ../shared/tokenizers beside the checkout) and two synthetic SentencePiece-style tokenizers
 * (tests/fixtures/tokenizers/spm*) and one laid out like Llama 3's tokenizer.json (bytelevel/), every text of tests/fixtures/tokenizers/texts.jsonl must give
 * exactly the ids Hugging Face's tokenizers / OpenAI's tiktoken gave (tools/make_tokenizer_fixtures.mjs
 * made the *.ref.json files), with and without the special-token template, and decode to their
 * decoded text. Also Llama 3's published test vector, bad files and out-of-memory paths.
 * The shared files are found from this file's path (or $BWT_SHARED_DIR); without them those
 * tests are skipped with a message. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "bwt/fileio.h"
#include "bwt/tokenizer.h"
#include "core/fault.h"
#include "testutil.h"

static char fixtures[4096], shared[4096];

static int setup(void **state) {
  const char *file = __FILE__, *slash = strrchr(file, '/');
  int dir = slash ? (int)(slash - file) : 1;
  snprintf(fixtures, sizeof fixtures, "%.*s/fixtures/tokenizers", dir, slash ? file : ".");
  snprintf(shared, sizeof shared, "%s", test_shared_path("tokenizers"));
  return 0;
}

static char *read_text(const char *path) {
  char *data = NULL;
  size_t n = 0;
  if (bwt_read_file(path, &data, &n) != BWT_STATUS_OK) fail_msg("%s", bwt_last_error());
  return data;
}

/* Loads a tokenizer, skipping the test when a shared file is absent. */
static bwt_tokenizer *load_or_skip(const char *path) {
  test_shared_present(path);
  bwt_tokenizer *tok = NULL;
  if (bwt_tokenizer_load(&tok, path) != BWT_STATUS_OK) fail_msg("loading %s: %s", path, bwt_last_error());
  return tok;
}

static int same_ids(const int32_t *ids, size_t n, const cJSON *ref) {
  if (!cJSON_IsArray(ref) || (size_t)cJSON_GetArraySize(ref) != n) return 0;
  size_t i = 0;
  const cJSON *e;
  cJSON_ArrayForEach(e, ref) if (ids[i++] != e->valueint) return 0;
  return 1;
}

static void show_ids(const char *what, const int32_t *ids, size_t n, const cJSON *ref) {
  char *r = cJSON_PrintUnformatted(ref);
  print_message("    %s: bwt", what);
  for (size_t i = 0; i < n && i < 40; i++) print_message(" %d", ids[i]);
  print_message("%s\n    reference %s\n", n > 40 ? " ..." : "", r ? r : "?");
  free(r);
}

/* One encoding of a fixture text compared with its reference; returns 1 if it differs. */
static int check_encoding(const bwt_tokenizer *tok, const char *text, unsigned flags, const cJSON *ref, const char *what,
                          const char *name, int *shown) {
  int32_t *ids = NULL;
  size_t n = 0;
  if (bwt_tokenizer_encode(tok, text, strlen(text), flags, &ids, &n) != BWT_STATUS_OK) fail_msg("%s: %s", name, bwt_last_error());
  int bad = !same_ids(ids, n, ref);
  if (bad && (*shown)++ < 6) {
    print_message("  %s (%s) differs\n", name, what);
    show_ids(what, ids, n, ref);
  }
  free(ids);
  return bad;
}

/* Every fixture text of `ref_name` against the tokenizer at path. */
static void check_fixtures(const char *path, const char *ref_name) {
  bwt_tokenizer *tok = load_or_skip(path);
  char file[4200];
  snprintf(file, sizeof file, "%s/%s.ref.json", fixtures, ref_name);
  char *ref_text = read_text(file);
  snprintf(file, sizeof file, "%s/texts.jsonl", fixtures);
  char *texts = read_text(file);
  cJSON *ref = cJSON_Parse(ref_text);
  assert_non_null(ref);
  const cJSON *cases = cJSON_GetObjectItem(ref, "cases");
  int total = 0, failed = 0, shown = 0;
  const cJSON *c = cases ? cases->child : NULL;
  for (char *line = strtok(texts, "\n"); line; line = strtok(NULL, "\n"), c = c->next) {
    cJSON *t = cJSON_Parse(line);
    assert_non_null(t);
    assert_non_null(c);
    const char *name = cJSON_GetObjectItem(t, "name")->valuestring, *text = cJSON_GetObjectItem(t, "text")->valuestring;
    assert_string_equal(name, cJSON_GetObjectItem(c, "name")->valuestring);
    const cJSON *ids_ref = cJSON_GetObjectItem(c, "ids"), *plain = cJSON_GetObjectItem(c, "ids_plain");
    int bad = check_encoding(tok, text, 0, ids_ref, "ids", name, &shown);
    bad |= check_encoding(tok, text, BWT_TOKENIZE_SPECIAL, cJSON_GetObjectItem(c, "ids_special"), "ids with the template", name, &shown);
    if (plain) bad |= check_encoding(tok, text, BWT_TOKENIZE_PLAIN, plain, "ids with special tokens as text", name, &shown);
    /* Decoding the reference ids gives the reference text. */
    int n = cJSON_GetArraySize(ids_ref);
    int32_t *ids = malloc(((size_t)n + 1) * sizeof *ids);
    for (int i = 0; i < n; i++) ids[i] = cJSON_GetArrayItem(ids_ref, i)->valueint;
    char *decoded = NULL;
    if (bwt_tokenizer_decode(tok, ids, (size_t)n, &decoded) != BWT_STATUS_OK) fail_msg("%s: %s", name, bwt_last_error());
    const char *want = cJSON_GetObjectItem(c, "decoded")->valuestring;
    if (strcmp(decoded, want) != 0) {
      bad = 1;
      if (shown++ < 6) print_message("  %s decodes to \"%s\"\n    reference \"%s\"\n", name, decoded, want);
    }
    free(decoded);
    free(ids);
    cJSON_Delete(t);
    total++;
    failed += bad;
  }
  print_message("%s: %d of %d texts agree with the reference\n", ref_name, total - failed, total);
  cJSON_Delete(ref);
  free(texts);
  free(ref_text);
  bwt_tokenizer_free(tok);
  assert_int_equal(failed, 0);
  assert_true(total >= 40);
}

static void test_gpt2(void **state) {
  char p[4200];
  snprintf(p, sizeof p, "%s/gpt2/tokenizer.json", shared);
  check_fixtures(p, "gpt2");
}

static void test_pythia(void **state) {
  char p[4200];
  snprintf(p, sizeof p, "%s/pythia", shared); /* a directory: its tokenizer.json */
  check_fixtures(p, "pythia");
}

static void test_llama3(void **state) {
  char p[4200];
  snprintf(p, sizeof p, "%s/llama3/tokenizer.model", shared);
  check_fixtures(p, "llama3");
}

static void test_spm(void **state) {
  char p[4200];
  snprintf(p, sizeof p, "%s/spm/tokenizer.json", fixtures);
  check_fixtures(p, "spm");
  snprintf(p, sizeof p, "%s/spm_meta/tokenizer.json", fixtures);
  check_fixtures(p, "spm_meta");
}

/* Laid out like Llama 3's converted tokenizer.json: Split then ByteLevel, ignore_merges, a Sequence
 * post-processor. */
static void test_bytelevel_split(void **state) {
  char p[4200];
  snprintf(p, sizeof p, "%s/bytelevel/tokenizer.json", fixtures);
  check_fixtures(p, "bytelevel");
}

/* Meta's published vector, and the accessors. */
static void test_llama3_vector(void **state) {
  char p[4200];
  snprintf(p, sizeof p, "%s/llama3", shared);
  bwt_tokenizer *tok = load_or_skip(p);
  const char *text = "This is a test sentence.";
  int32_t *ids = NULL;
  size_t n = 0;
  assert_int_equal(bwt_tokenizer_encode(tok, text, strlen(text), BWT_TOKENIZE_SPECIAL | BWT_TOKENIZE_EOS, &ids, &n), BWT_STATUS_OK);
  const int32_t want[] = {128000, 2028, 374, 264, 1296, 11914, 13, 128001};
  assert_int_equal(n, 8);
  assert_memory_equal(ids, want, sizeof want);
  char *back = NULL;
  assert_int_equal(bwt_tokenizer_decode(tok, ids + 1, n - 2, &back), BWT_STATUS_OK);
  assert_string_equal(back, text);
  free(back);
  free(ids);
  assert_int_equal(bwt_tokenizer_vocab_size(tok), 128256);
  assert_int_equal(bwt_tokenizer_bos(tok), 128000);
  assert_int_equal(bwt_tokenizer_eos(tok), 128001);
  assert_int_equal(bwt_tokenizer_token_id(tok, "<|eot_id|>"), 128009);
  bwt_tokenizer_free(tok);

  snprintf(p, sizeof p, "%s/gpt2", shared);
  tok = load_or_skip(p);
  assert_int_equal(bwt_tokenizer_vocab_size(tok), 50257);
  assert_int_equal(bwt_tokenizer_bos(tok), 50256);
  assert_int_equal(bwt_tokenizer_eos(tok), 50256);
  bwt_tokenizer_free(tok);
}

/* Writes text to a file in this test's directory and tries to load it: it must fail with
 * `status` and a message holding `expect`. */
static void expect_bad(const char *dir, const char *name, const char *text, bwt_status status, const char *expect) {
  char path[4200];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
  bwt_tokenizer *tok = (bwt_tokenizer *)1;
  bwt_status s = bwt_tokenizer_load(&tok, path);
  if (s != status || !strstr(bwt_last_error(), expect))
    fail_msg("%s: status %d, message \"%s\"; wanted %d with \"%s\"", name, s, bwt_last_error(), status, expect);
  assert_null(tok);
  assert_null(strchr(bwt_last_error(), '\n'));
}

#define MODEL_OK "\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [\"a b\"]}"

static void test_bad_files(void **state) {
  const char *dir = test_tmpdir("tokenizer_bad");
  expect_bad(dir, "not_json.json", "{ this is not json", BWT_STATUS_FORMAT, "not a JSON object");
  expect_bad(dir, "no_model.json", "{\"version\": \"1.0\"}", BWT_STATUS_FORMAT, "no \"model\"");
  expect_bad(dir, "unigram.json", "{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", BWT_STATUS_FORMAT, "unsupported model type \"Unigram\"");
  expect_bad(dir, "no_vocab.json", "{\"model\": {\"type\": \"BPE\", \"merges\": []}}", BWT_STATUS_FORMAT, "no vocab");
  expect_bad(dir, "no_merges.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}}", BWT_STATUS_FORMAT, "no merges");
  expect_bad(dir, "bad_id.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -3}, \"merges\": []}}", BWT_STATUS_FORMAT, "no valid id");
  expect_bad(dir, "bad_merge.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a c\"]}}", BWT_STATUS_FORMAT,
             "not in the vocabulary");
  expect_bad(dir, "odd_merge.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [7]}}", BWT_STATUS_FORMAT,
             "neither");
  expect_bad(dir, "pre.json", "{" MODEL_OK ", \"pre_tokenizer\": {\"type\": \"BertPreTokenizer\"}}", BWT_STATUS_FORMAT,
             "unsupported pre-tokenizer type \"BertPreTokenizer\"");
  expect_bad(dir, "norm.json", "{" MODEL_OK ", \"normalizer\": {\"type\": \"Lowercase\"}}", BWT_STATUS_FORMAT,
             "unsupported normalizer type \"Lowercase\"");
  expect_bad(dir, "dec.json", "{" MODEL_OK ", \"decoder\": {\"type\": \"WordPiece\"}}", BWT_STATUS_FORMAT, "unsupported decoder type");
  expect_bad(dir, "regex.json",
             "{" MODEL_OK ", \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}, \"behavior\": \"Isolated\"}}",
             BWT_STATUS_FORMAT, "bad pre-tokenizer pattern");
  expect_bad(dir, "behavior.json",
             "{" MODEL_OK ", \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"String\": \" \"}, \"behavior\": \"Sideways\"}}",
             BWT_STATUS_FORMAT, "unknown behavior");
  expect_bad(dir, "template.json",
             "{" MODEL_OK ", \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<s>\"}}], \"special_tokens\": {}}}",
             BWT_STATUS_FORMAT, "does not define");
  expect_bad(dir, "unk.json", "{\"model\": {\"type\": \"BPE\", \"unk_token\": \"<unk>\", \"vocab\": {\"a\": 0}, \"merges\": []}}",
             BWT_STATUS_FORMAT, "unk_token");
  expect_bad(dir, "tokenizer.model", "\x0a\x0f\x08\x01\x12\x0bsentencepiece\n", BWT_STATUS_FORMAT, "not a tiktoken file");
  expect_bad(dir, "b64.model", "IQ== 0\n!!!! 1\n", BWT_STATUS_FORMAT, "bad base64");
  expect_bad(dir, "rank.model", "IQ== 0\nIg== 0\n", BWT_STATUS_FORMAT, "repeated");
  expect_bad(dir, "empty.model", "", BWT_STATUS_FORMAT, "empty");

  bwt_tokenizer *tok = NULL;
  char path[4200];
  snprintf(path, sizeof path, "%s/missing.json", dir);
  assert_int_equal(bwt_tokenizer_load(&tok, path), BWT_STATUS_IO);
  snprintf(path, sizeof path, "%s/empty_dir", dir);
  assert_int_equal(bwt_mkdir_p(path), BWT_STATUS_OK);
  assert_int_equal(bwt_tokenizer_load(&tok, path), BWT_STATUS_IO);
  assert_non_null(strstr(bwt_last_error(), "no tokenizer.json"));

  /* A good tiny file, then bad input to it. */
  snprintf(path, sizeof path, "%s/ok.json", dir);
  FILE *f = fopen(path, "w");
  fputs("{" MODEL_OK "}", f);
  fclose(f);
  assert_int_equal(bwt_tokenizer_load(&tok, path), BWT_STATUS_OK);
  int32_t *ids = NULL;
  size_t n = 0;
  assert_int_equal(bwt_tokenizer_encode(tok, "abab", 4, 0, &ids, &n), BWT_STATUS_OK);
  assert_int_equal(n, 2);
  assert_int_equal(ids[0], 2);
  free(ids);
  assert_int_equal(bwt_tokenizer_encode(tok, "a\xff", 2, 0, &ids, &n), BWT_STATUS_ARG);
  assert_non_null(strstr(bwt_last_error(), "not valid UTF-8"));
  char *text = NULL;
  const int32_t bad_ids[] = {0, 3};
  assert_int_equal(bwt_tokenizer_decode(tok, bad_ids, 2, &text), BWT_STATUS_ARG);
  assert_null(text);
  assert_int_equal(bwt_tokenizer_decode(tok, bad_ids, 1, &text), BWT_STATUS_OK);
  assert_string_equal(text, "a");
  free(text);
  bwt_tokenizer_free(tok);
}

/* Every allocation of `op` fails in turn: each must give BWT_STATUS_NOMEM (never a success
 * after a failed allocation, never a crash), until one run needs no failing allocation. */
typedef bwt_status (*fault_op)(void *arg);

static void fault_loop(const char *what, fault_op op, void *arg) {
  long n = 1, bad = 0;
  for (;; n++) {
    bwt_fault_arm(BWT_FAULT_ALLOC, n);
    bwt_status s = op(arg);
    int fired = bwt_fault_fired();
    bwt_fault_arm(BWT_FAULT_ALLOC, 0);
    if (!fired) {
      if (s != BWT_STATUS_OK) fail_msg("%s: failed without a fault: %s", what, bwt_last_error());
      break;
    }
    if (s != BWT_STATUS_NOMEM && bad++ < 5) print_message("  %s, allocation %ld: status %d (%s)\n", what, n, s, bwt_last_error());
  }
  print_message("%s: %ld allocation failure points\n", what, n - 1);
  assert_int_equal(bad, 0);
}

static bwt_status load_op(void *arg) {
  bwt_tokenizer *tok = NULL;
  bwt_status s = bwt_tokenizer_load(&tok, arg);
  bwt_tokenizer_free(tok);
  return s;
}

static const char *fault_text = "Hello <s>world</s>! \xe2\x9c\x85 caf\x65\xcc\x81 1234567 \xf0\x9f\x98\x80";

static bwt_status encode_op(void *arg) {
  int32_t *ids = NULL;
  size_t n = 0;
  bwt_status s = bwt_tokenizer_encode(arg, fault_text, strlen(fault_text), BWT_TOKENIZE_SPECIAL, &ids, &n);
  if (s == BWT_STATUS_OK) {
    char *text = NULL;
    s = bwt_tokenizer_decode(arg, ids, n, &text);
    free(text);
  }
  free(ids);
  return s;
}

static void test_faults(void **state) {
  char p[4200];
  bwt_tokenizer *tok = NULL;
  snprintf(p, sizeof p, "%s/spm/tokenizer.json", fixtures);
  fault_loop("loading spm", load_op, p);
  assert_int_equal(bwt_tokenizer_load(&tok, p), BWT_STATUS_OK);
  fault_loop("encoding and decoding with spm", encode_op, tok);
  bwt_tokenizer_free(tok);

  /* A small tiktoken file: the 256 bytes and a few merges. */
  const char *dir = test_tmpdir("tokenizer_faults");
  snprintf(p, sizeof p, "%s/tokenizer.model", dir);
  FILE *f = fopen(p, "w");
  assert_non_null(f);
  static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (int b = 0; b < 256; b++) fprintf(f, "%c%c== %d\n", b64[b >> 2], b64[(b & 3) << 4], b);
  fputs("SGU= 256\nbGw= 257\nSGVsbG8= 258\n", f); /* "He", "ll", "Hello" */
  fclose(f);
  fault_loop("loading a tiktoken file", load_op, p);
  assert_int_equal(bwt_tokenizer_load(&tok, p), BWT_STATUS_OK);
  fault_loop("encoding and decoding with tiktoken", encode_op, tok);
  bwt_tokenizer_free(tok);

  snprintf(p, sizeof p, "%s/pythia/tokenizer.json", shared);
  if (!bwt_path_exists(p)) return;
  assert_int_equal(bwt_tokenizer_load(&tok, p), BWT_STATUS_OK); /* NFC and added tokens */
  fault_loop("encoding and decoding with pythia", encode_op, tok);
  bwt_tokenizer_free(tok);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_gpt2),       cmocka_unit_test(test_pythia),      cmocka_unit_test(test_llama3),
      cmocka_unit_test(test_spm),        cmocka_unit_test(test_bytelevel_split), cmocka_unit_test(test_llama3_vector),
      cmocka_unit_test(test_bad_files),
      cmocka_unit_test(test_faults),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
