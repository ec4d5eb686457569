/* The text steps before the model: normalizers (Unicode forms through utf8proc, Prepend, Replace,
 * Strip) and pre-tokenizers (Split by a PCRE2 regex or a string, ByteLevel, Metaspace), with the
 * semantics of Hugging Face's tokenizers library. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "lm/tokenizer_internal.h"

const char tok_gpt2_pattern[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
const char tok_llama3_pattern[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* Unicode's White_Space, which \s means in the Rust engines the patterns were written for; PCRE2's
 * \s differs (it takes U+180E), so patterns get this class spelled out. */
#define WS_CLASS "\\t\\n\\x{0B}\\f\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"

static int is_white_space(int32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
         c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* Rewrites \s and \S (outside classes) and \s inside classes to WS_CLASS. */
static bwt_status rewrite_pattern(const char *p, tok_buf *out, const char *name) {
  int in_class = 0;
  for (size_t i = 0; p[i]; i++) {
    char c = p[i];
    if (c == '\\' && p[i + 1]) {
      char e = p[++i];
      if (e == 's') {
        BWT_TRY(tok_buf_add(out, in_class ? WS_CLASS : "[" WS_CLASS "]", strlen(in_class ? WS_CLASS : "[" WS_CLASS "]")));
      } else if (e == 'S' && !in_class) {
        BWT_TRY(tok_buf_add(out, "[^" WS_CLASS "]", strlen("[^" WS_CLASS "]")));
      } else if (e == 'S') {
        return bwt_fail(BWT_STATUS_FORMAT, "%s: unsupported \\S inside a character class of the pattern %s", name, p);
      } else {
        char two[2] = {'\\', e};
        BWT_TRY(tok_buf_add(out, two, 2));
      }
      continue;
    }
    if (c == '[' && !in_class) {
      in_class = 1;
      BWT_TRY(tok_buf_add(out, "[", 1));
      if (p[i + 1] == '^') BWT_TRY(tok_buf_add(out, &p[++i], 1));
      if (p[i + 1] == ']') BWT_TRY(tok_buf_add(out, &p[++i], 1)); /* a leading ] is literal */
      continue;
    }
    if (c == ']' && in_class) in_class = 0;
    BWT_TRY(tok_buf_add(out, &c, 1));
  }
  return BWT_STATUS_OK;
}

bwt_status tok_regex_compile(bwt_tokenizer *t, const char *pattern, pcre2_code **re, const char *name) {
  tok_buf p = {0};
  bwt_status s = rewrite_pattern(pattern, &p, name);
  if (s != BWT_STATUS_OK) {
    free(p.p);
    return s;
  }
  pcre2_compile_context *cc = pcre2_compile_context_create(t->gctx);
  if (!cc) {
    free(p.p);
    return bwt_fail(BWT_STATUS_NOMEM, "out of memory compiling the pattern of %s", name);
  }
  int err = 0;
  PCRE2_SIZE at = 0;
  *re = pcre2_compile((PCRE2_SPTR)p.p, p.n, PCRE2_UTF | PCRE2_UCP, &err, &at, cc);
  pcre2_compile_context_free(cc);
  free(p.p);
  if (*re) return BWT_STATUS_OK;
  if (err == PCRE2_ERROR_HEAP_FAILED)
    return bwt_fail(BWT_STATUS_NOMEM, "out of memory compiling the pattern of %s", name);
  PCRE2_UCHAR msg[256];
  pcre2_get_error_message(err, msg, sizeof msg);
  return bwt_fail(BWT_STATUS_FORMAT, "%s: bad pre-tokenizer pattern %s: %s at offset %zu", name, pattern, (const char *)msg, (size_t)at);
}

/* --- normalizers --- */

/* The first occurrence of a(an) in s(n), or NULL (memmem is not in POSIX). */
static const char *find(const char *s, size_t n, const char *a, size_t an) {
  if (!an || an > n) return NULL;
  for (const char *p = s, *end = s + n - an; p <= end; p++) {
    p = memchr(p, a[0], (size_t)(end - p) + 1);
    if (!p) return NULL;
    if (memcmp(p, a, an) == 0) return p;
  }
  return NULL;
}

static bwt_status unicode_form(const char *s, size_t n, utf8proc_option_t opts, tok_buf *out) {
  utf8proc_ssize_t cap = (utf8proc_ssize_t)n + 16;
  for (;;) {
    utf8proc_int32_t *cps = bwt_malloc(((size_t)cap + 1) * sizeof *cps, "Unicode normalization");
    if (!cps) return BWT_STATUS_NOMEM;
    utf8proc_ssize_t r = utf8proc_decompose((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, cps, cap, opts);
    if (r > cap) {
      free(cps);
      cap = r;
      continue;
    }
    if (r >= 0) r = utf8proc_reencode(cps, r, opts);
    bwt_status st = r < 0 ? bwt_fail(BWT_STATUS_ARG, "Unicode normalization failed: %s", utf8proc_errmsg(r))
                          : tok_buf_add(out, cps, (size_t)r);
    free(cps);
    return st;
  }
}

static bwt_status replace_all(const char *s, size_t n, const char *a, size_t an, const char *b, size_t bn, tok_buf *out) {
  size_t i = 0;
  while (i < n) {
    const char *hit = find(s + i, n - i, a, an);
    size_t keep = hit ? (size_t)(hit - (s + i)) : n - i;
    BWT_TRY(tok_buf_add(out, s + i, keep));
    i += keep;
    if (!hit) break;
    BWT_TRY(tok_buf_add(out, b, bn));
    i += an;
  }
  return BWT_STATUS_OK;
}

/* The first code point of s(n) (s valid UTF-8, n > 0). */
static int32_t first_cp(const char *s, size_t n, size_t *len) {
  utf8proc_int32_t cp = 0;
  utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &cp);
  *len = k > 0 ? (size_t)k : 1;
  return cp;
}

static bwt_status strip(const char *s, size_t n, int left, int right, tok_buf *out) {
  size_t a = 0, b = n, k;
  while (left && a < b && is_white_space(first_cp(s + a, b - a, &k))) a += k;
  while (right && b > a) {
    size_t start = b - 1;
    while (start > a && ((unsigned char)s[start] & 0xC0) == 0x80) start--;
    if (!is_white_space(first_cp(s + start, b - start, &k))) break;
    b = start;
  }
  return tok_buf_add(out, s + a, b - a);
}

static bwt_status normalize_step(const tok_norm *m, const char *s, size_t n, tok_buf *out) {
  switch (m->kind) {
    case TOK_NORM_NFC: return unicode_form(s, n, UTF8PROC_STABLE | UTF8PROC_COMPOSE, out);
    case TOK_NORM_NFD: return unicode_form(s, n, UTF8PROC_STABLE | UTF8PROC_DECOMPOSE, out);
    case TOK_NORM_NFKC: return unicode_form(s, n, UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT, out);
    case TOK_NORM_NFKD: return unicode_form(s, n, UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT, out);
    case TOK_NORM_PREPEND:
      if (n) BWT_TRY(tok_buf_add(out, m->a, m->a_len)); /* an empty string stays empty */
      return tok_buf_add(out, s, n);
    case TOK_NORM_REPLACE: return replace_all(s, n, m->a, m->a_len, m->b, m->b_len, out);
    case TOK_NORM_STRIP: return strip(s, n, m->left, m->right, out);
  }
  return BWT_STATUS_OK;
}

bwt_status tok_normalize(const bwt_tokenizer *t, const char *s, size_t n, tok_buf *out) {
  out->n = 0;
  BWT_TRY(tok_buf_add(out, s, n));
  tok_buf tmp = {0};
  bwt_status st = BWT_STATUS_OK;
  for (size_t i = 0; i < t->n_norm && st == BWT_STATUS_OK; i++) {
    tmp.n = 0;
    st = tok_buf_add(&tmp, "", 0);
    if (st == BWT_STATUS_OK) st = normalize_step(&t->norm[i], out->p, out->n, &tmp);
    tok_buf swap = *out;
    *out = tmp;
    tmp = swap;
  }
  free(tmp.p);
  return st;
}

/* --- pre-tokenizers --- */

typedef struct {
  size_t a, b;
  int match;
} span;

/* Splits s(n) at the matches of the regex (or occurrences of the literal) by `behavior` into out;
 * the first piece inherits `first` if it starts at 0. */
static bwt_status split_piece(const tok_pre *p, const char *s, size_t n, int first, tok_split_behavior behavior, int invert,
                              pcre2_match_data *md, tok_pieces *out) {
  span *v = NULL;
  size_t nv = 0, cap = 0, at = 0, pos = 0;
  bwt_status st = BWT_STATUS_OK;
#define PUSH(A, B, M)                                                                          \
  do {                                                                                         \
    if (nv + 1 > cap) {                                                                        \
      size_t cap2 = cap ? cap * 2 : 16;                                                        \
      span *w = bwt_realloc(v, cap2 * sizeof *v, "pre-tokenizer splits");                      \
      if (!w) {                                                                                \
        st = BWT_STATUS_NOMEM;                                                                 \
        goto done;                                                                             \
      }                                                                                        \
      v = w;                                                                                   \
      cap = cap2;                                                                              \
    }                                                                                          \
    v[nv++] = (span){(A), (B), (M) != invert};                                                 \
  } while (0)
  while (pos < n) {
    size_t ms, me;
    if (p->re) {
      int rc = pcre2_match(p->re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, md, NULL);
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(rc, msg, sizeof msg);
        st = bwt_fail(rc == PCRE2_ERROR_NOMEMORY || rc == PCRE2_ERROR_HEAPLIMIT ? BWT_STATUS_NOMEM : BWT_STATUS_ARG,
                      "pre-tokenizer pattern: %s", (const char *)msg);
        goto done;
      }
      PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
      ms = ov[0];
      me = ov[1];
    } else {
      const char *hit = find(s + pos, n - pos, p->lit, p->lit_len);
      if (!hit) break;
      ms = (size_t)(hit - s);
      me = ms + p->lit_len;
    }
    if (me == ms) { /* an empty match splits nothing: look again one character on */
      pos = ms + tok_utf8_len((unsigned char)s[ms]);
      continue;
    }
    if (ms > at) PUSH(at, ms, 0);
    PUSH(ms, me, 1);
    at = pos = me;
  }
  if (at < n) PUSH(at, n, 0);
#undef PUSH
  /* Behaviours, as for "the-final--countdown" split at "-": removed the|final|countdown, isolated
   * the|-|final|-|-|countdown, merged with previous the-|final-|-|countdown, merged with next
   * the|-final|-|-countdown, contiguous the|-|final|--|countdown. */
  size_t pend_a = 0, pend_b = 0;
  int pending = 0;
#define EMIT(A, B) \
  if ((st = tok_pieces_add(out, s + (A), (B) - (A), first && (A) == 0)) != BWT_STATUS_OK) goto done
  for (size_t i = 0; i < nv; i++) {
    span x = v[i];
    switch (behavior) {
      case TOK_SPLIT_REMOVED:
        if (!x.match) EMIT(x.a, x.b);
        break;
      case TOK_SPLIT_ISOLATED: EMIT(x.a, x.b); break;
      case TOK_SPLIT_MERGED_PREVIOUS:
        if (!x.match) {
          if (pending) EMIT(pend_a, pend_b);
          pending = 1, pend_a = x.a, pend_b = x.b;
        } else if (pending) {
          EMIT(pend_a, x.b);
          pending = 0;
        } else {
          EMIT(x.a, x.b);
        }
        break;
      case TOK_SPLIT_MERGED_NEXT:
        if (x.match) {
          if (pending) EMIT(pend_a, pend_b);
          pending = 1, pend_a = x.a, pend_b = x.b;
        } else if (pending) {
          EMIT(pend_a, x.b);
          pending = 0;
        } else {
          EMIT(x.a, x.b);
        }
        break;
      case TOK_SPLIT_CONTIGUOUS:
        if (x.match && i + 1 < nv && v[i + 1].match) {
          v[i + 1].a = x.a;
        } else {
          EMIT(x.a, x.b);
        }
        break;
    }
  }
  if (pending) EMIT(pend_a, pend_b);
#undef EMIT
done:
  free(v);
  return st;
}

static bwt_status byte_level(const tok_pre *p, const tok_pieces *in, pcre2_match_data *md, tok_pieces *out) {
  tok_buf prefixed = {0}, mapped = {0};
  tok_pieces parts = {0};
  bwt_status st = BWT_STATUS_OK;
  for (size_t i = 0; i < in->n && st == BWT_STATUS_OK; i++) {
    const char *s = TOK_PIECE(in, i);
    size_t n = in->v[i].len;
    if (p->add_prefix_space && s[0] != ' ') {
      prefixed.n = 0;
      if ((st = tok_buf_add(&prefixed, " ", 1)) != BWT_STATUS_OK || (st = tok_buf_add(&prefixed, s, n)) != BWT_STATUS_OK) break;
      s = prefixed.p;
      n = prefixed.n;
    }
    tok_pieces_clear(&parts);
    if (p->re)
      st = split_piece(p, s, n, in->v[i].first, TOK_SPLIT_ISOLATED, 0, md, &parts);
    else
      st = tok_pieces_add(&parts, s, n, in->v[i].first);
    for (size_t j = 0; j < parts.n && st == BWT_STATUS_OK; j++) {
      mapped.n = 0;
      const unsigned char *u = (const unsigned char *)TOK_PIECE(&parts, j);
      for (size_t k = 0; k < parts.v[j].len && st == BWT_STATUS_OK; k++) st = tok_buf_add_cp(&mapped, tok_byte_to_cp(u[k]));
      if (st == BWT_STATUS_OK) st = tok_pieces_add(out, mapped.p, mapped.n, parts.v[j].first);
    }
  }
  free(prefixed.p);
  free(mapped.p);
  tok_pieces_free(&parts);
  return st;
}

static bwt_status metaspace(const tok_pre *p, const tok_pieces *in, pcre2_match_data *md, tok_pieces *out) {
  tok_buf b = {0};
  bwt_status st = BWT_STATUS_OK;
  for (size_t i = 0; i < in->n && st == BWT_STATUS_OK; i++) {
    const char *s = TOK_PIECE(in, i);
    size_t n = in->v[i].len;
    b.n = 0;
    int starts = n >= p->lit_len && memcmp(s, p->lit, p->lit_len) == 0;
    int prepend = p->prepend == TOK_PREPEND_ALWAYS || (p->prepend == TOK_PREPEND_FIRST && in->v[i].first);
    if (prepend && !starts && s[0] != ' ') st = tok_buf_add(&b, p->lit, p->lit_len);
    if (st == BWT_STATUS_OK) st = replace_all(s, n, " ", 1, p->lit, p->lit_len, &b);
    if (st != BWT_STATUS_OK) break;
    if (p->split)
      st = split_piece(p, b.p, b.n, in->v[i].first, TOK_SPLIT_MERGED_NEXT, 0, md, out);
    else
      st = tok_pieces_add(out, b.p, b.n, in->v[i].first);
  }
  free(b.p);
  return st;
}

bwt_status tok_pre_tokenize(const bwt_tokenizer *t, tok_pieces *in, tok_pieces *tmp, pcre2_match_data *md) {
  for (size_t k = 0; k < t->n_pre; k++) {
    const tok_pre *p = &t->pre[k];
    tok_pieces_clear(tmp);
    bwt_status st = BWT_STATUS_OK;
    if (p->kind == TOK_PRE_SPLIT) {
      for (size_t i = 0; i < in->n && st == BWT_STATUS_OK; i++)
        st = split_piece(p, TOK_PIECE(in, i), in->v[i].len, in->v[i].first, p->behavior, p->invert, md, tmp);
    } else if (p->kind == TOK_PRE_BYTE_LEVEL) {
      st = byte_level(p, in, md, tmp);
    } else {
      st = metaspace(p, in, md, tmp);
    }
    if (st != BWT_STATUS_OK) return st;
    tok_pieces swap = *in;
    *in = *tmp;
    *tmp = swap;
  }
  return BWT_STATUS_OK;
}
