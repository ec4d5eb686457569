/* The tokenizer's containers: an arena of fixed blocks, growable buffers, open-addressing hash maps
 * keyed by strings and by id pairs; UTF-8 checks and GPT-2's byte-to-unicode alphabet. */
#include <stdlib.h>
#include <string.h>

#include "lm/tokenizer_internal.h"

/* --- arena --- */

struct tok_block {
  tok_block *next;
  size_t used, cap;
  _Alignas(8) char data[];
};

void *tok_arena_alloc(tok_arena *a, size_t n) {
  n = (n + 7) & ~(size_t)7;
  tok_block *b = a->head;
  if (!b || b->cap - b->used < n) {
    size_t cap = n > 65536 ? n : 65536;
    b = bwt_malloc(sizeof *b + cap, "tokenizer strings");
    if (!b) return NULL;
    b->next = a->head;
    b->used = 0;
    b->cap = cap;
    a->head = b;
  }
  void *p = b->data + b->used;
  b->used += n;
  return p;
}

char *tok_arena_strdup(tok_arena *a, const char *s, size_t n) {
  char *p = tok_arena_alloc(a, n + 1);
  if (!p) return NULL;
  if (n) memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

void tok_arena_free(tok_arena *a) {
  for (tok_block *b = a->head, *next; b; b = next) {
    next = b->next;
    free(b);
  }
  a->head = NULL;
}

/* --- buffers --- */

static bwt_status grow(void **p, size_t *cap, size_t need, size_t elem, const char *what) {
  if (need <= *cap) return BWT_STATUS_OK;
  size_t cap2 = *cap ? *cap : 64;
  while (cap2 < need) cap2 *= 2;
  void *q = bwt_realloc(*p, cap2 * elem, what);
  if (!q) return BWT_STATUS_NOMEM;
  *p = q;
  *cap = cap2;
  return BWT_STATUS_OK;
}

bwt_status tok_buf_add(tok_buf *b, const void *s, size_t n) {
  BWT_TRY(grow((void **)&b->p, &b->cap, b->n + n + 1, 1, "tokenizer text"));
  if (n) memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = '\0';
  return BWT_STATUS_OK;
}

bwt_status tok_buf_add_cp(tok_buf *b, int32_t cp) {
  char u[4];
  size_t n;
  if (cp < 0x80) {
    u[0] = (char)cp;
    n = 1;
  } else if (cp < 0x800) {
    u[0] = (char)(0xC0 | (cp >> 6));
    u[1] = (char)(0x80 | (cp & 0x3F));
    n = 2;
  } else if (cp < 0x10000) {
    u[0] = (char)(0xE0 | (cp >> 12));
    u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    u[2] = (char)(0x80 | (cp & 0x3F));
    n = 3;
  } else {
    u[0] = (char)(0xF0 | (cp >> 18));
    u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    u[3] = (char)(0x80 | (cp & 0x3F));
    n = 4;
  }
  return tok_buf_add(b, u, n);
}

bwt_status tok_ids_add(tok_ids *v, const int32_t *ids, size_t n) {
  BWT_TRY(grow((void **)&v->p, &v->cap, v->n + n, sizeof *v->p, "token ids"));
  if (n) memcpy(v->p + v->n, ids, n * sizeof *ids);
  v->n += n;
  return BWT_STATUS_OK;
}

bwt_status tok_pieces_add(tok_pieces *p, const char *s, size_t n, int first) {
  if (n == 0) return BWT_STATUS_OK;
  BWT_TRY(grow((void **)&p->v, &p->cap, p->n + 1, sizeof *p->v, "pre-tokens"));
  size_t off = p->text.n;
  BWT_TRY(tok_buf_add(&p->text, s, n));
  p->v[p->n++] = (tok_span){off, n, first};
  return BWT_STATUS_OK;
}

void tok_pieces_clear(tok_pieces *p) {
  p->n = 0;
  p->text.n = 0;
}

void tok_pieces_free(tok_pieces *p) {
  free(p->text.p);
  free(p->v);
  *p = (tok_pieces){0};
}

/* --- hash maps --- */

/* splitmix64's finalizer: every input bit reaches the low bits that pick a slot. */
static uint64_t mix(uint64_t h) {
  h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9ull;
  h = (h ^ (h >> 27)) * 0x94D049BB133111EBull;
  return h ^ (h >> 31);
}

static uint64_t hash_bytes(const char *s, size_t n) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
  return mix(h);
}

static bwt_status strmap_grow(tok_strmap *m) {
  size_t cap = m->cap ? m->cap * 2 : 1024;
  tok_strmap_slot *slots = bwt_calloc(cap, sizeof *slots, "tokenizer vocabulary map");
  if (!slots) return BWT_STATUS_NOMEM;
  for (size_t i = 0; i < m->cap; i++) {
    if (!m->slots[i].s) continue;
    size_t j = hash_bytes(m->slots[i].s, m->slots[i].n) & (cap - 1);
    while (slots[j].s) j = (j + 1) & (cap - 1);
    slots[j] = m->slots[i];
  }
  free(m->slots);
  m->slots = slots;
  m->cap = cap;
  return BWT_STATUS_OK;
}

bwt_status tok_strmap_put(tok_strmap *m, const char *s, size_t n, int32_t v) {
  if ((m->count + 1) * 2 > m->cap) BWT_TRY(strmap_grow(m));
  size_t j = hash_bytes(s, n) & (m->cap - 1);
  for (; m->slots[j].s; j = (j + 1) & (m->cap - 1))
    if (m->slots[j].n == n && memcmp(m->slots[j].s, s, n) == 0) {
      m->slots[j].v = v;
      return BWT_STATUS_OK;
    }
  m->slots[j] = (tok_strmap_slot){s, (uint32_t)n, v};
  m->count++;
  return BWT_STATUS_OK;
}

int32_t tok_strmap_get(const tok_strmap *m, const char *s, size_t n) {
  if (!m->cap) return -1;
  for (size_t j = hash_bytes(s, n) & (m->cap - 1); m->slots[j].s; j = (j + 1) & (m->cap - 1))
    if (m->slots[j].n == n && memcmp(m->slots[j].s, s, n) == 0) return m->slots[j].v;
  return -1;
}

void tok_strmap_free(tok_strmap *m) {
  free(m->slots);
  *m = (tok_strmap){0};
}

#define PAIR_EMPTY UINT64_MAX

static uint64_t pair_key(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b; }

static size_t pair_slot(uint64_t key, size_t cap) { return (size_t)mix(key) & (cap - 1); }

static bwt_status pairmap_grow(tok_pairmap *m) {
  size_t cap = m->cap ? m->cap * 2 : 1024;
  tok_pair_slot *slots = bwt_malloc(cap * sizeof *slots, "tokenizer merge map");
  if (!slots) return BWT_STATUS_NOMEM;
  for (size_t i = 0; i < cap; i++) slots[i].key = PAIR_EMPTY;
  for (size_t i = 0; i < m->cap; i++) {
    if (m->slots[i].key == PAIR_EMPTY) continue;
    size_t j = pair_slot(m->slots[i].key, cap);
    while (slots[j].key != PAIR_EMPTY) j = (j + 1) & (cap - 1);
    slots[j] = m->slots[i];
  }
  free(m->slots);
  m->slots = slots;
  m->cap = cap;
  return BWT_STATUS_OK;
}

bwt_status tok_pairmap_put(tok_pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t merged) {
  if ((m->count + 1) * 2 > m->cap) BWT_TRY(pairmap_grow(m));
  uint64_t key = pair_key(a, b);
  size_t j = pair_slot(key, m->cap);
  for (; m->slots[j].key != PAIR_EMPTY; j = (j + 1) & (m->cap - 1))
    if (m->slots[j].key == key) return BWT_STATUS_OK;
  m->slots[j] = (tok_pair_slot){key, rank, merged};
  m->count++;
  return BWT_STATUS_OK;
}

const tok_pair_slot *tok_pairmap_get(const tok_pairmap *m, int32_t a, int32_t b) {
  if (!m->cap) return NULL;
  uint64_t key = pair_key(a, b);
  for (size_t j = pair_slot(key, m->cap); m->slots[j].key != PAIR_EMPTY; j = (j + 1) & (m->cap - 1))
    if (m->slots[j].key == key) return &m->slots[j];
  return NULL;
}

void tok_pairmap_free(tok_pairmap *m) {
  free(m->slots);
  *m = (tok_pairmap){0};
}

/* --- UTF-8 --- */

size_t tok_utf8_len(unsigned char c) {
  if (c < 0xC2) return 1;
  if (c < 0xE0) return 2;
  if (c < 0xF0) return 3;
  return c < 0xF5 ? 4 : 1;
}

/* The length of the well-formed character at s(n) (Unicode's table 3-7), or 0 if there is none. */
static size_t utf8_char(const unsigned char *s, size_t n) {
  unsigned char c = s[0];
  if (c < 0x80) return 1;
  size_t need = tok_utf8_len(c);
  if (need == 1) return 0;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c == 0xE0) lo = 0xA0;
  if (c == 0xED) hi = 0x9F;
  if (c == 0xF0) lo = 0x90;
  if (c == 0xF4) hi = 0x8F;
  for (size_t k = 1; k < need; k++) {
    if (k >= n || s[k] < lo || s[k] > hi) return 0;
    lo = 0x80;
    hi = 0xBF;
  }
  return need;
}

size_t tok_utf8_valid_prefix(const char *s, size_t n) {
  const unsigned char *u = (const unsigned char *)s;
  size_t i = 0;
  while (i < n) {
    size_t k = utf8_char(u + i, n - i);
    if (!k) break;
    i += k;
  }
  return i;
}

bwt_status tok_utf8_lossy(tok_buf *b, const char *s, size_t n) {
  const unsigned char *u = (const unsigned char *)s;
  size_t i = 0;
  while (i < n) {
    size_t valid = tok_utf8_valid_prefix(s + i, n - i);
    BWT_TRY(tok_buf_add(b, s + i, valid));
    i += valid;
    if (i >= n) break;
    /* A maximal subpart: the lead byte and the continuation bytes that could still follow it. */
    size_t need = tok_utf8_len(u[i]), k = 1;
    unsigned char lo = 0x80, hi = 0xBF;
    if (u[i] == 0xE0) lo = 0xA0;
    if (u[i] == 0xED) hi = 0x9F;
    if (u[i] == 0xF0) lo = 0x90;
    if (u[i] == 0xF4) hi = 0x8F;
    while (need > 1 && k < need && i + k < n && u[i + k] >= lo && u[i + k] <= hi) {
      k++;
      lo = 0x80;
      hi = 0xBF;
    }
    BWT_TRY(tok_buf_add(b, "\xEF\xBF\xBD", 3));
    i += k;
  }
  return BWT_STATUS_OK;
}

/* GPT-2 keeps the printable bytes ('!'..'~', 0xA1..0xAC, 0xAE..0xFF) as themselves and numbers the
 * others from 256 in byte order: 0x00..0x20, then 0x7F..0xA0, then 0xAD. */
int32_t tok_byte_to_cp(unsigned b) {
  if (b <= 0x20) return 256 + (int32_t)b;
  if (b >= 0x7F && b <= 0xA0) return 256 + 33 + (int32_t)(b - 0x7F);
  if (b == 0xAD) return 256 + 33 + 34;
  return (int32_t)b;
}

int tok_cp_to_byte(int32_t cp) {
  if ((cp >= 0x21 && cp <= 0x7E) || (cp >= 0xA1 && cp <= 0xFF && cp != 0xAD)) return cp;
  if (cp >= 256 && cp < 256 + 33) return cp - 256;
  if (cp >= 256 + 33 && cp < 256 + 67) return 0x7F + (cp - 256 - 33);
  if (cp == 256 + 67) return 0xAD;
  return -1;
}
