/* Decoding: ids to their token texts, then the decoder chain of tokenizer.json (ByteLevel,
 * Metaspace, Replace, ByteFallback, Fuse, Strip), each step mapping a list of strings to a new
 * list as Hugging Face's decode_chain does; tiktoken's tokens are raw bytes. */
#include <stdlib.h>
#include <string.h>

#include "lm/tokenizer_internal.h"

/* Every occurrence of a(an) in s(n) replaced by b(bn), appended to out. */
static bwt_status replace(const char *s, size_t n, const char *a, size_t an, const char *b, size_t bn, tok_buf *out) {
  size_t i = 0;
  while (i < n) {
    if (an && n - i >= an && memcmp(s + i, a, an) == 0) {
      BWT_TRY(tok_buf_add(out, b, bn));
      i += an;
    } else {
      BWT_TRY(tok_buf_add(out, s + i, 1));
      i++;
    }
  }
  return BWT_STATUS_OK;
}

/* Bytes of a token of the byte-level alphabet; a token with a character outside it stays as it is. */
static bwt_status byte_level_token(const char *s, size_t n, tok_buf *raw) {
  size_t start = raw->n;
  for (size_t i = 0; i < n;) {
    unsigned char c = (unsigned char)s[i];
    size_t k = tok_utf8_len(c);
    int32_t cp = k == 1 ? c : k == 2 && i + 1 < n ? ((c & 0x1F) << 6) | (s[i + 1] & 0x3F) : -1;
    int b = tok_cp_to_byte(cp);
    if (b < 0) {
      raw->n = start;
      return tok_buf_add(raw, s, n);
    }
    unsigned char byte = (unsigned char)b;
    BWT_TRY(tok_buf_add(raw, &byte, 1));
    i += k;
  }
  return BWT_STATUS_OK;
}

/* The byte of a "<0xNN>" token, or -1. */
static int fallback_byte(const char *s, size_t n) {
  if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
  int v = 0;
  for (int i = 3; i < 5; i++) {
    char c = s[i];
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

static bwt_status flush_bytes(tok_buf *bytes, tok_pieces *out) {
  if (!bytes->n) return BWT_STATUS_OK;
  if (tok_utf8_valid_prefix(bytes->p, bytes->n) == bytes->n) {
    BWT_TRY(tok_pieces_add(out, bytes->p, bytes->n, 0));
  } else { /* one U+FFFD per byte token */
    for (size_t i = 0; i < bytes->n; i++) BWT_TRY(tok_pieces_add(out, "\xEF\xBF\xBD", 3, 0));
  }
  bytes->n = 0;
  return BWT_STATUS_OK;
}

static bwt_status decode_step(const tok_dec *d, const tok_pieces *in, tok_pieces *out) {
  tok_buf b = {0};
  bwt_status st = BWT_STATUS_OK;
  switch (d->kind) {
    case TOK_DEC_BYTE_LEVEL:
    case TOK_DEC_BYTES: { /* one string of all the bytes, decoded leniently */
      tok_buf raw = {0};
      for (size_t i = 0; i < in->n && st == BWT_STATUS_OK; i++)
        st = d->kind == TOK_DEC_BYTES ? tok_buf_add(&raw, TOK_PIECE(in, i), in->v[i].len)
                                      : byte_level_token(TOK_PIECE(in, i), in->v[i].len, &raw);
      if (st == BWT_STATUS_OK) st = tok_utf8_lossy(&b, raw.p, raw.n);
      if (st == BWT_STATUS_OK) st = tok_pieces_add(out, b.p, b.n, 0);
      free(raw.p);
      break;
    }
    case TOK_DEC_FUSE:
      for (size_t i = 0; i < in->n && st == BWT_STATUS_OK; i++) st = tok_buf_add(&b, TOK_PIECE(in, i), in->v[i].len);
      if (st == BWT_STATUS_OK) st = tok_pieces_add(out, b.p, b.n, 0);
      break;
    case TOK_DEC_METASPACE:
    case TOK_DEC_REPLACE:
      for (size_t i = 0; i < in->n && st == BWT_STATUS_OK; i++) {
        b.n = 0;
        /* Metaspace drops the replacement in the first token (its prepended space), else spaces. */
        int drop = d->kind == TOK_DEC_METASPACE && i == 0 && d->prepend != TOK_PREPEND_NEVER;
        const char *to = d->kind == TOK_DEC_METASPACE ? " " : d->b;
        size_t to_len = d->kind == TOK_DEC_METASPACE ? (drop ? 0 : 1) : d->b_len;
        st = replace(TOK_PIECE(in, i), in->v[i].len, d->a, d->a_len, to, to_len, &b);
        if (st == BWT_STATUS_OK) st = tok_pieces_add(out, b.p, b.n, 0);
      }
      break;
    case TOK_DEC_BYTE_FALLBACK:
      for (size_t i = 0; i < in->n && st == BWT_STATUS_OK; i++) {
        int v = fallback_byte(TOK_PIECE(in, i), in->v[i].len);
        if (v >= 0) {
          unsigned char byte = (unsigned char)v;
          st = tok_buf_add(&b, &byte, 1);
        } else if ((st = flush_bytes(&b, out)) == BWT_STATUS_OK) {
          st = tok_pieces_add(out, TOK_PIECE(in, i), in->v[i].len, 0);
        }
      }
      if (st == BWT_STATUS_OK) st = flush_bytes(&b, out);
      break;
    case TOK_DEC_STRIP:
      for (size_t i = 0; i < in->n && st == BWT_STATUS_OK; i++) {
        const char *s = TOK_PIECE(in, i);
        size_t a = 0, e = in->v[i].len;
        for (int k = 0; k < d->start && e - a >= d->a_len && memcmp(s + a, d->a, d->a_len) == 0; k++) a += d->a_len;
        for (int k = 0; k < d->stop && e - a >= d->a_len && memcmp(s + e - d->a_len, d->a, d->a_len) == 0; k++) e -= d->a_len;
        st = tok_pieces_add(out, s + a, e - a, 0);
      }
      break;
  }
  free(b.p);
  return st;
}

bwt_status tok_decode(const bwt_tokenizer *t, const int32_t *ids, size_t n, tok_buf *out) {
  tok_pieces a = {0}, b = {0};
  bwt_status st = BWT_STATUS_OK;
  for (size_t i = 0; i < n && st == BWT_STATUS_OK; i++) {
    if (ids[i] < 0 || (size_t)ids[i] >= t->n_ids || !t->tok_str[ids[i]])
      st = bwt_fail(BWT_STATUS_ARG, "token id %ld (position %zu) is not in the vocabulary of %zu ids", (long)ids[i], i, t->n_ids);
    else
      st = tok_pieces_add(&a, t->tok_str[ids[i]], t->tok_len[ids[i]], 0);
  }
  for (size_t k = 0; k < t->n_dec && st == BWT_STATUS_OK; k++) {
    tok_pieces_clear(&b);
    st = decode_step(&t->dec[k], &a, &b);
    tok_pieces swap = a;
    a = b;
    b = swap;
  }
  out->n = 0;
  if (st == BWT_STATUS_OK) st = tok_buf_add(out, "", 0);
  for (size_t i = 0; i < a.n && st == BWT_STATUS_OK; i++) {
    if (i && t->dec_join_space) st = tok_buf_add(out, " ", 1);
    if (st == BWT_STATUS_OK) st = tok_buf_add(out, TOK_PIECE(&a, i), a.v[i].len);
  }
  tok_pieces_free(&a);
  tok_pieces_free(&b);
  return st;
}
