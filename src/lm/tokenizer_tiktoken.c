/* Reads a tiktoken-format tokenizer.model (Llama 3's original file): one "base64(bytes) rank" line
 * per token. BPE runs over bytes, a pair merging into the token their concatenation is, by that
 * token's rank; the text is split with Llama 3's pattern and its 256 special tokens follow the
 * vocabulary, as in Meta's llama-models (models/llama3/tokenizer.py). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lm/tokenizer_internal.h"

#define N_SPECIAL 256

static int b64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

/* Decodes base64 s(n) into out (room for n bytes); returns the length or -1 if s is not base64. */
static long b64_decode(const char *s, size_t n, unsigned char *out) {
  if (n == 0 || n % 4) return -1;
  long len = 0;
  for (size_t i = 0; i < n; i += 4) {
    int v[4], pad = 0;
    for (int k = 0; k < 4; k++) {
      if (s[i + k] == '=' && i + 4 == n && k >= 2) {
        v[k] = 0;
        pad++;
      } else if ((v[k] = b64_value(s[i + k])) < 0 || pad) {
        return -1;
      }
    }
    unsigned w = (unsigned)(v[0] << 18 | v[1] << 12 | v[2] << 6 | v[3]);
    out[len++] = (unsigned char)(w >> 16);
    if (pad < 2) out[len++] = (unsigned char)(w >> 8);
    if (pad < 1) out[len++] = (unsigned char)w;
  }
  return len;
}

/* Llama 3's special token names, in id order from the vocabulary size. */
static void special_name(int i, char *buf, size_t size) {
  static const char *basic[] = {"<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                                "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>", "<|step_id|>",
                                "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>",
                                "<|python_tag|>", "<|image|>"};
  int n_basic = (int)(sizeof basic / sizeof *basic);
  if (i < n_basic) snprintf(buf, size, "%s", basic[i]);
  else snprintf(buf, size, "<|reserved_special_token_%d|>", 2 + i - n_basic);
}

/* Lines: counts them and checks each is "base64 rank". */
static bwt_status scan(const char *data, size_t n, const char *name, size_t *lines) {
  size_t count = 0, line = 1;
  for (size_t i = 0; i < n; line++) {
    const char *end = memchr(data + i, '\n', n - i);
    size_t len = end ? (size_t)(end - (data + i)) : n - i;
    const char *sp = memchr(data + i, ' ', len);
    int ok = sp && sp > data + i;
    for (const char *p = sp ? sp + 1 : NULL; ok && p < data + i + len; p++) ok = (*p >= '0' && *p <= '9') || (*p == '\r' && p + 1 == data + i + len);
    if (ok && sp + 1 == data + i + len) ok = 0;
    if (!ok && len > 0)
      return bwt_fail(BWT_STATUS_FORMAT,
                      "%s: line %zu is not \"base64 rank\" (not a tiktoken file; for a SentencePiece tokenizer.model give its tokenizer.json)",
                      name, line);
    if (len > 0) count++;
    i += len + 1;
  }
  if (!count) return bwt_fail(BWT_STATUS_FORMAT, "%s: an empty tiktoken file", name);
  *lines = count;
  return BWT_STATUS_OK;
}

bwt_status tok_load_tiktoken(bwt_tokenizer *t, const char *data, size_t n, const char *name) {
  size_t n_base = 0;
  BWT_TRY(scan(data, n, name, &n_base));
  BWT_TRY(tok_ids_alloc(t, n_base + N_SPECIAL));
  for (size_t i = 0; i < n;) {
    const char *end = memchr(data + i, '\n', n - i);
    size_t len = end ? (size_t)(end - (data + i)) : n - i;
    if (len > 0) {
      const char *sp = memchr(data + i, ' ', len);
      size_t b64_len = (size_t)(sp - (data + i));
      unsigned long rank = strtoul(sp + 1, NULL, 10);
      unsigned char *bytes = tok_arena_alloc(&t->arena, b64_len + 1);
      if (!bytes) return BWT_STATUS_NOMEM;
      long k = b64_decode(data + i, b64_len, bytes);
      if (k <= 0) return bwt_fail(BWT_STATUS_FORMAT, "%s: bad base64 \"%.*s\"", name, (int)b64_len, data + i);
      if (rank >= n_base || t->tok_str[rank])
        return bwt_fail(BWT_STATUS_FORMAT, "%s: rank %lu is repeated or not below the %zu tokens", name, rank, n_base);
      t->tok_str[rank] = (const char *)bytes;
      t->tok_len[rank] = (uint32_t)k;
      BWT_TRY(tok_strmap_put(&t->vocab, (const char *)bytes, (size_t)k, (int32_t)rank));
    }
    i += len + 1;
  }
  /* The merges: every way of cutting a token into two tokens. */
  for (size_t id = 0; id < n_base; id++) {
    const char *s = t->tok_str[id];
    for (size_t k = 1; k < t->tok_len[id]; k++) {
      int32_t l = tok_strmap_get(&t->vocab, s, k), r = tok_strmap_get(&t->vocab, s + k, t->tok_len[id] - k);
      if (l >= 0 && r >= 0) BWT_TRY(tok_pairmap_put(&t->merges, l, r, (int32_t)id, (int32_t)id));
    }
  }
  for (int b = 0; b < 256; b++) {
    char c = (char)b;
    t->byte_sym[b] = tok_strmap_get(&t->vocab, &c, 1);
    t->byte_tok[b] = -1;
  }
  t->byte_input = 1;
  t->ignore_merges = 1; /* tiktoken takes a piece that is a token whole */
  t->unk = -1;

  t->added = bwt_calloc(N_SPECIAL, sizeof *t->added, "special tokens");
  if (!t->added) return BWT_STATUS_NOMEM;
  for (int i = 0; i < N_SPECIAL; i++) {
    char buf[64];
    special_name(i, buf, sizeof buf);
    tok_added *a = &t->added[t->n_added++];
    a->id = (int32_t)(n_base + (size_t)i);
    a->n = strlen(buf);
    if (!(a->s = tok_arena_strdup(&t->arena, buf, a->n))) return BWT_STATUS_NOMEM;
    a->special = 1;
    t->tok_str[a->id] = a->s;
    t->tok_len[a->id] = (uint32_t)a->n;
  }

  t->pre = bwt_calloc(1, sizeof *t->pre, "pre-tokenizer");
  t->dec = bwt_calloc(1, sizeof *t->dec, "decoder");
  t->prefix = bwt_malloc(sizeof *t->prefix, "special-token template");
  if (!t->pre || !t->dec || !t->prefix) return BWT_STATUS_NOMEM;
  t->n_pre = 1;
  t->pre[0].kind = TOK_PRE_SPLIT;
  t->pre[0].behavior = TOK_SPLIT_ISOLATED;
  BWT_TRY(tok_regex_compile(t, tok_llama3_pattern, &t->pre[0].re, name));
  t->n_dec = 1;
  t->dec[0].kind = TOK_DEC_BYTES;
  t->prefix[0] = (int32_t)n_base; /* <|begin_of_text|>, as encode(bos=True) */
  t->n_prefix = 1;
  t->bos = (int32_t)n_base;
  t->eos = (int32_t)n_base + 1;
  return BWT_STATUS_OK;
}
