/* The tokenizer API: loading (a file or a model directory), encoding (added tokens, normalizer,
 * pre-tokenizers, BPE with a per-call cache of pre-tokens, the special-token template), decoding
 * and the accessors. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bwt/fileio.h"
#include "lm/tokenizer_internal.h"

/* PCRE2 allocates through the library's allocator, so fault injection reaches it. */
static void *pcre_malloc(PCRE2_SIZE size, void *data) { return bwt_malloc(size, "regex"); }
static void pcre_free(void *p, void *data) { free(p); }

bwt_status tok_ids_alloc(bwt_tokenizer *t, size_t n_ids) {
  t->tok_str = bwt_calloc(n_ids, sizeof *t->tok_str, "token table");
  t->tok_len = bwt_calloc(n_ids, sizeof *t->tok_len, "token table");
  if (!t->tok_str || !t->tok_len) return BWT_STATUS_NOMEM;
  t->n_ids = n_ids;
  return BWT_STATUS_OK;
}

void bwt_tokenizer_free(bwt_tokenizer *t) {
  if (!t) return;
  for (size_t i = 0; i < t->n_pre; i++) pcre2_code_free(t->pre[i].re);
  pcre2_general_context_free(t->gctx);
  tok_arena_free(&t->arena);
  tok_strmap_free(&t->vocab);
  tok_pairmap_free(&t->merges);
  free(t->tok_str);
  free(t->tok_len);
  free(t->added);
  free(t->norm);
  free(t->pre);
  free(t->dec);
  free(t->prefix);
  free(t->suffix);
  free(t);
}

/* The file to read for path: path itself, or in a directory the first of these that exists. */
static bwt_status resolve(const char *path, char **file) {
  struct stat st;
  if (stat(path, &st) != 0) return bwt_fail(BWT_STATUS_IO, "%s: %s", path, strerror(errno));
  size_t n = strlen(path) + 32;
  if (!(*file = bwt_malloc(n, "tokenizer path"))) return BWT_STATUS_NOMEM;
  if (!S_ISDIR(st.st_mode)) {
    snprintf(*file, n, "%s", path);
    return BWT_STATUS_OK;
  }
  static const char *names[] = {"tokenizer.json", "tokenizer.model", "original/tokenizer.model"};
  for (int i = 0; i < 3; i++) {
    snprintf(*file, n, "%s/%s", path, names[i]);
    if (bwt_path_exists(*file)) return BWT_STATUS_OK;
  }
  free(*file);
  *file = NULL;
  return bwt_fail(BWT_STATUS_IO, "%s: no tokenizer.json, tokenizer.model or original/tokenizer.model in this directory", path);
}

static int32_t find_name(const bwt_tokenizer *t, const char *const *names) {
  for (; *names; names++) {
    int32_t id = bwt_tokenizer_token_id(t, *names);
    if (id >= 0) return id;
  }
  return -1;
}

/* Normalized added tokens are looked for in normalized text, so in their normalized form. */
static bwt_status added_match_texts(bwt_tokenizer *t) {
  tok_buf b = {0};
  bwt_status st = BWT_STATUS_OK;
  for (size_t k = 0; k < t->n_added && st == BWT_STATUS_OK; k++) {
    tok_added *a = &t->added[k];
    a->match = a->s;
    a->match_n = a->n;
    if (!a->normalized || !t->n_norm) continue;
    if ((st = tok_normalize(t, a->s, a->n, &b)) != BWT_STATUS_OK) break;
    if (!(a->match = tok_arena_strdup(&t->arena, b.p, b.n))) st = BWT_STATUS_NOMEM;
    a->match_n = b.n;
  }
  free(b.p);
  return st;
}

static bwt_status load(bwt_tokenizer *t, const char *path) {
  char *file = NULL, *data = NULL;
  size_t n = 0;
  bwt_status st = resolve(path, &file);
  if (st == BWT_STATUS_OK) st = bwt_read_file(file, &data, &n);
  if (st == BWT_STATUS_OK) {
    size_t i = 0;
    while (i < n && (data[i] == ' ' || data[i] == '\n' || data[i] == '\r' || data[i] == '\t')) i++;
    size_t len = strlen(file);
    int json = (len >= 5 && strcmp(file + len - 5, ".json") == 0) || (i < n && data[i] == '{');
    st = json ? tok_load_json(t, data, n, file) : tok_load_tiktoken(t, data, n, file);
  }
  if (st == BWT_STATUS_OK) st = added_match_texts(t);
  free(data);
  free(file);
  return st;
}

bwt_status bwt_tokenizer_load(bwt_tokenizer **out, const char *path) {
  *out = NULL;
  if (!path || !*path) return bwt_fail(BWT_STATUS_ARG, "tokenizer: no path given");
  bwt_tokenizer *t = bwt_calloc(1, sizeof *t, "tokenizer");
  if (!t) return BWT_STATUS_NOMEM;
  t->bos = t->eos = t->unk = -1;
  t->gctx = pcre2_general_context_create(pcre_malloc, pcre_free, NULL);
  bwt_status st = t->gctx ? load(t, path) : bwt_fail(BWT_STATUS_NOMEM, "out of memory creating the regex context");
  if (st != BWT_STATUS_OK) {
    bwt_tokenizer_free(t);
    return st;
  }
  for (size_t k = 0; k < t->n_added; k++)
    if (t->added[k].match_n) t->added_first[(unsigned char)t->added[k].match[0]] = 1;
  if (t->bos < 0) {
    static const char *const bos[] = {"<|begin_of_text|>", "<s>", "<bos>", "<|endoftext|>", NULL};
    t->bos = t->n_prefix ? t->prefix[0] : find_name(t, bos);
  }
  if (t->eos < 0) {
    static const char *const eos[] = {"<|end_of_text|>", "</s>", "<eos>", "<|endoftext|>", NULL};
    t->eos = t->n_suffix ? t->suffix[t->n_suffix - 1] : find_name(t, eos);
  }
  *out = t;
  return BWT_STATUS_OK;
}

/* --- encoding --- */

typedef struct {
  const bwt_tokenizer *t;
  unsigned flags;
  tok_ids out;
  tok_buf norm;
  tok_pieces a, b;
  pcre2_match_data *md;
  /* Pre-tokens seen in this call: key (in keys) to an entry of spans, [offset, count] in ids. */
  tok_strmap cache;
  tok_arena keys;
  tok_ids spans, ids;
} encoder;

#define CACHE_MAX_KEY 256

static bwt_status word(encoder *e, const char *s, size_t n) {
  int32_t hit = n <= CACHE_MAX_KEY ? tok_strmap_get(&e->cache, s, n) : -1;
  if (hit >= 0) return tok_ids_add(&e->out, e->ids.p + e->spans.p[2 * hit], (size_t)e->spans.p[2 * hit + 1]);
  size_t before = e->out.n;
  BWT_TRY(tok_bpe_word(e->t, s, n, &e->out));
  if (n > CACHE_MAX_KEY) return BWT_STATUS_OK;
  char *key = tok_arena_strdup(&e->keys, s, n);
  if (!key) return BWT_STATUS_NOMEM;
  int32_t span[2] = {(int32_t)e->ids.n, (int32_t)(e->out.n - before)};
  BWT_TRY(tok_ids_add(&e->ids, e->out.p + before, e->out.n - before));
  BWT_TRY(tok_ids_add(&e->spans, span, 2));
  return tok_strmap_put(&e->cache, key, n, (int32_t)(e->spans.n / 2 - 1));
}

static bwt_status pre_tokens(encoder *e, const char *s, size_t n, int first) {
  tok_pieces_clear(&e->a);
  BWT_TRY(tok_pieces_add(&e->a, s, n, first));
  BWT_TRY(tok_pre_tokenize(e->t, &e->a, &e->b, e->md));
  for (size_t i = 0; i < e->a.n; i++) BWT_TRY(word(e, TOK_PIECE(&e->a, i), e->a.v[i].len));
  return BWT_STATUS_OK;
}

static int ascii_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

/* The leftmost, then longest, added token in s[from, n) of the group `normalized` (special ones
 * left out for BWT_TOKENIZE_PLAIN): its span, widened over spaces by lstrip / rstrip. */
static const tok_added *find_added(const encoder *e, const char *s, size_t from, size_t n, int normalized, size_t *ms, size_t *me) {
  const bwt_tokenizer *t = e->t;
  for (size_t pos = from; pos < n; pos++) {
    if (!t->added_first[(unsigned char)s[pos]]) continue;
    const tok_added *best = NULL;
    for (size_t k = 0; k < t->n_added; k++) {
      const tok_added *a = &t->added[k];
      if (a->normalized != normalized || ((e->flags & BWT_TOKENIZE_PLAIN) && a->special)) continue;
      if (a->match_n && a->match_n <= n - pos && (!best || a->match_n > best->match_n) && memcmp(s + pos, a->match, a->match_n) == 0)
        best = a;
    }
    if (!best) continue;
    *ms = pos;
    *me = pos + best->match_n;
    while (best->lstrip && *ms > from && ascii_space(s[*ms - 1])) (*ms)--;
    while (best->rstrip && *me < n && ascii_space(s[*me])) (*me)++;
    return best;
  }
  return NULL;
}

/* Splits s(n) at the added tokens of one group, passing the text between them to `then`. */
static bwt_status split_added(encoder *e, const char *s, size_t n, int first, int normalized,
                              bwt_status (*then)(encoder *, const char *, size_t, int)) {
  size_t pos = 0;
  while (pos < n) {
    size_t ms = n, me = n;
    const tok_added *a = find_added(e, s, pos, n, normalized, &ms, &me);
    if (ms > pos) BWT_TRY(then(e, s + pos, ms - pos, first && pos == 0));
    if (!a) break;
    BWT_TRY(tok_ids_add(&e->out, &a->id, 1));
    pos = me;
  }
  return BWT_STATUS_OK;
}

/* Text between raw added tokens: normalized, then split at the normalized ones. */
static bwt_status segment(encoder *e, const char *s, size_t n, int first) {
  if (!e->t->n_norm) return split_added(e, s, n, first, 1, pre_tokens);
  BWT_TRY(tok_normalize(e->t, s, n, &e->norm));
  return split_added(e, e->norm.p, e->norm.n, first, 1, pre_tokens);
}

bwt_status bwt_tokenizer_encode(const bwt_tokenizer *t, const char *text, size_t len, unsigned flags, int32_t **ids, size_t *n) {
  *ids = NULL;
  *n = 0;
  if (!text && len) return bwt_fail(BWT_STATUS_ARG, "tokenizer: no text given");
  size_t valid = len ? tok_utf8_valid_prefix(text, len) : 0;
  if (valid != len) return bwt_fail(BWT_STATUS_ARG, "tokenizer: the text is not valid UTF-8 (at byte %zu)", valid);
  encoder e = {.t = t, .flags = flags};
  bwt_status st = BWT_STATUS_OK;
  if (!(e.md = pcre2_match_data_create(4, t->gctx))) st = bwt_fail(BWT_STATUS_NOMEM, "out of memory creating regex match data");
  if (st == BWT_STATUS_OK && (flags & BWT_TOKENIZE_SPECIAL)) st = tok_ids_add(&e.out, t->prefix, t->n_prefix);
  if (st == BWT_STATUS_OK) st = split_added(&e, text ? text : "", len, 1, 0, segment);
  if (st == BWT_STATUS_OK && (flags & BWT_TOKENIZE_SPECIAL)) st = tok_ids_add(&e.out, t->suffix, t->n_suffix);
  if (st == BWT_STATUS_OK && (flags & BWT_TOKENIZE_EOS) && t->eos >= 0 && (!e.out.n || e.out.p[e.out.n - 1] != t->eos))
    st = tok_ids_add(&e.out, &t->eos, 1);
  if (st == BWT_STATUS_OK && !e.out.p && !(e.out.p = bwt_malloc(sizeof *e.out.p, "token ids"))) st = BWT_STATUS_NOMEM;
  pcre2_match_data_free(e.md);
  free(e.norm.p);
  tok_pieces_free(&e.a);
  tok_pieces_free(&e.b);
  tok_strmap_free(&e.cache);
  tok_arena_free(&e.keys);
  free(e.spans.p);
  free(e.ids.p);
  if (st != BWT_STATUS_OK) {
    free(e.out.p);
    return st;
  }
  *ids = e.out.p;
  *n = e.out.n;
  return BWT_STATUS_OK;
}

bwt_status bwt_tokenizer_decode(const bwt_tokenizer *t, const int32_t *ids, size_t n, char **text) {
  *text = NULL;
  if (!ids && n) return bwt_fail(BWT_STATUS_ARG, "tokenizer: no ids given");
  tok_buf out = {0};
  bwt_status st = tok_decode(t, ids, n, &out);
  if (st != BWT_STATUS_OK) {
    free(out.p);
    return st;
  }
  *text = out.p;
  return BWT_STATUS_OK;
}

size_t bwt_tokenizer_vocab_size(const bwt_tokenizer *t) { return t->n_ids; }
int32_t bwt_tokenizer_bos(const bwt_tokenizer *t) { return t->bos; }
int32_t bwt_tokenizer_eos(const bwt_tokenizer *t) { return t->eos; }

int32_t bwt_tokenizer_token_id(const bwt_tokenizer *t, const char *token) {
  size_t n = strlen(token);
  for (size_t k = 0; k < t->n_added; k++)
    if (t->added[k].n == n && memcmp(t->added[k].s, token, n) == 0) return t->added[k].id;
  return tok_strmap_get(&t->vocab, token, n);
}
