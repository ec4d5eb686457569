/* The BPE model over one pre-token: start from one symbol per character (or per byte for tiktoken),
 * then repeatedly merge the adjacent pair of lowest rank, the leftmost of equal ones. A min-heap of
 * candidate pairs keyed by (rank, position) makes that O(n log n); candidates whose symbols changed
 * since they were pushed are skipped when popped. Same result as Hugging Face's BPE::merge_word and
 * tiktoken's byte_pair_merge (whose ranks are those of the merged tokens). */
#include <stdlib.h>

#include "lm/tokenizer_internal.h"

typedef struct {
  int32_t id; /* -1: merged into its left neighbour */
  int32_t prev, next;
} sym;

typedef struct {
  int32_t rank, pos, right, left_id, right_id, merged;
} cand;

typedef struct {
  sym *s;
  size_t n, cap;
  cand *h;
  size_t hn, hcap;
} word;

static int cand_less(const cand *a, const cand *b) { return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos; }

static bwt_status heap_push(word *w, cand c) {
  if (w->hn == w->hcap) {
    size_t cap = w->hcap ? w->hcap * 2 : 32;
    cand *h = bwt_realloc(w->h, cap * sizeof *h, "BPE merge queue");
    if (!h) return BWT_STATUS_NOMEM;
    w->h = h;
    w->hcap = cap;
  }
  size_t i = w->hn++;
  while (i > 0 && cand_less(&c, &w->h[(i - 1) / 2])) {
    w->h[i] = w->h[(i - 1) / 2];
    i = (i - 1) / 2;
  }
  w->h[i] = c;
  return BWT_STATUS_OK;
}

static cand heap_pop(word *w) {
  cand top = w->h[0], last = w->h[--w->hn];
  size_t i = 0;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= w->hn) break;
    if (c + 1 < w->hn && cand_less(&w->h[c + 1], &w->h[c])) c++;
    if (!cand_less(&w->h[c], &last)) break;
    w->h[i] = w->h[c];
    i = c;
  }
  if (w->hn) w->h[i] = last;
  return top;
}

static bwt_status add_sym(word *w, int32_t id) {
  if (w->n == w->cap) {
    size_t cap = w->cap ? w->cap * 2 : 32;
    sym *s = bwt_realloc(w->s, cap * sizeof *s, "BPE symbols");
    if (!s) return BWT_STATUS_NOMEM;
    w->s = s;
    w->cap = cap;
  }
  w->s[w->n] = (sym){id, (int32_t)w->n - 1, -1};
  if (w->n) w->s[w->n - 1].next = (int32_t)w->n;
  w->n++;
  return BWT_STATUS_OK;
}

/* Pushes the pair starting at symbol pos, if it has a right neighbour and the pair is a merge. */
static bwt_status push_pair(const bwt_tokenizer *t, word *w, int32_t pos) {
  if (pos < 0) return BWT_STATUS_OK;
  int32_t r = w->s[pos].next;
  if (r < 0) return BWT_STATUS_OK;
  const tok_pair_slot *m = tok_pairmap_get(&t->merges, w->s[pos].id, w->s[r].id);
  if (!m) return BWT_STATUS_OK;
  return heap_push(w, (cand){m->rank, pos, r, w->s[pos].id, w->s[r].id, m->merged});
}

/* The initial symbols of a UTF-8 pre-token: each character's id, else its <0xNN> byte tokens
 * (byte fallback), else the unknown token, consecutive ones fused into one with fuse_unk. As in
 * Hugging Face's BPE, byte-fallback tokens do not end a pending run of unknowns: those follow. */
static bwt_status char_symbols(const bwt_tokenizer *t, const char *s, size_t n, word *w) {
  int unk_pending = 0;
  for (size_t i = 0; i < n;) {
    size_t k = tok_utf8_len((unsigned char)s[i]);
    if (k > n - i) k = n - i;
    int32_t id = tok_strmap_get(&t->vocab, s + i, k);
    if (id >= 0) {
      if (unk_pending) BWT_TRY(add_sym(w, t->unk));
      unk_pending = 0;
      BWT_TRY(add_sym(w, id));
      i += k;
      continue;
    }
    if (t->byte_fallback) {
      size_t b = 0;
      while (b < k && t->byte_tok[(unsigned char)s[i + b]] >= 0) b++;
      if (b == k) {
        for (b = 0; b < k; b++) BWT_TRY(add_sym(w, t->byte_tok[(unsigned char)s[i + b]]));
        i += k;
        continue;
      }
    }
    if (t->unk >= 0) {
      if (unk_pending && !t->fuse_unk) BWT_TRY(add_sym(w, t->unk));
      unk_pending = 1;
    }
    i += k;
  }
  if (unk_pending) BWT_TRY(add_sym(w, t->unk));
  return BWT_STATUS_OK;
}

static bwt_status merge_word(const bwt_tokenizer *t, const char *s, size_t n, word *w, tok_ids *out) {
  if (t->byte_input) {
    for (size_t i = 0; i < n; i++)
      if (t->byte_sym[(unsigned char)s[i]] >= 0) BWT_TRY(add_sym(w, t->byte_sym[(unsigned char)s[i]]));
  } else {
    BWT_TRY(char_symbols(t, s, n, w));
  }
  for (int32_t i = 0; i + 1 < (int32_t)w->n; i++) BWT_TRY(push_pair(t, w, i));
  while (w->hn) {
    cand c = heap_pop(w);
    sym *l = &w->s[c.pos];
    if (l->id != c.left_id || l->next != c.right || w->s[c.right].id != c.right_id) continue; /* stale */
    int32_t after = w->s[c.right].next;
    l->id = c.merged;
    l->next = after;
    if (after >= 0) w->s[after].prev = c.pos;
    w->s[c.right].id = -1;
    BWT_TRY(push_pair(t, w, l->prev));
    BWT_TRY(push_pair(t, w, c.pos));
  }
  for (int32_t i = w->n ? 0 : -1; i >= 0; i = w->s[i].next) BWT_TRY(tok_ids_add(out, &w->s[i].id, 1));
  return BWT_STATUS_OK;
}

bwt_status tok_bpe_word(const bwt_tokenizer *t, const char *s, size_t n, tok_ids *out) {
  if (t->ignore_merges) { /* a pre-token that is itself a token is taken whole */
    int32_t id = tok_strmap_get(&t->vocab, s, n);
    if (id >= 0) return tok_ids_add(out, &id, 1);
  }
  word w = {0};
  bwt_status st = merge_word(t, s, n, &w, out);
  free(w.s);
  free(w.h);
  return st;
}
