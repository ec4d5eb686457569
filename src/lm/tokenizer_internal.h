/* Private to src/lm/tokenizer*.c: the loaded tokenizer, its pipeline steps, and the small
 * containers they share (an arena, growable buffers, hash maps keyed by strings and id pairs). */
#ifndef BWT_LM_TOKENIZER_INTERNAL_H
#define BWT_LM_TOKENIZER_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stddef.h>
#include <stdint.h>

#include "bwt/tokenizer.h"

/* --- containers (tokenizer_util.c) ------------------------------------------------------- */

/* Blocks that are never moved: strings carved from it keep their address until tok_arena_free. */
typedef struct tok_block tok_block;
typedef struct {
  tok_block *head;
} tok_arena;
void *tok_arena_alloc(tok_arena *a, size_t n);
/* A copy of s(n), NUL-terminated. */
char *tok_arena_strdup(tok_arena *a, const char *s, size_t n);
void tok_arena_free(tok_arena *a);

typedef struct {
  char *p;
  size_t n, cap;
} tok_buf;
bwt_status tok_buf_add(tok_buf *b, const void *s, size_t n);
/* Appends the UTF-8 encoding of code point cp. */
bwt_status tok_buf_add_cp(tok_buf *b, int32_t cp);

typedef struct {
  int32_t *p;
  size_t n, cap;
} tok_ids;
bwt_status tok_ids_add(tok_ids *v, const int32_t *ids, size_t n);

/* Strings (keys not owned: they must outlive the map) to int32 values, open addressing. */
typedef struct {
  const char *s;
  uint32_t n;
  int32_t v;
} tok_strmap_slot;
typedef struct {
  tok_strmap_slot *slots;
  size_t cap, count;
} tok_strmap;
/* Inserts or overwrites. */
bwt_status tok_strmap_put(tok_strmap *m, const char *s, size_t n, int32_t v);
/* The value of s(n), or -1. */
int32_t tok_strmap_get(const tok_strmap *m, const char *s, size_t n);
void tok_strmap_free(tok_strmap *m);

/* A merge: the pair (a, b) of ids becomes `merged`, with priority `rank` (lower first). */
typedef struct {
  uint64_t key;
  int32_t rank, merged;
} tok_pair_slot;
typedef struct {
  tok_pair_slot *slots;
  size_t cap, count;
} tok_pairmap;
/* Inserts unless present (a merge listed twice keeps its first, lower rank). */
bwt_status tok_pairmap_put(tok_pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t merged);
const tok_pair_slot *tok_pairmap_get(const tok_pairmap *m, int32_t a, int32_t b);
void tok_pairmap_free(tok_pairmap *m);

/* A list of strings held in one buffer; `first` marks a piece that starts the whole input (the
 * Metaspace pre-tokenizer's "first" scheme needs it). Empty pieces are never added. */
typedef struct {
  size_t off, len;
  int first;
} tok_span;
typedef struct {
  tok_buf text;
  tok_span *v;
  size_t n, cap;
} tok_pieces;
bwt_status tok_pieces_add(tok_pieces *p, const char *s, size_t n, int first);
void tok_pieces_clear(tok_pieces *p);
void tok_pieces_free(tok_pieces *p);
#define TOK_PIECE(list, i) ((list)->text.p + (list)->v[i].off)

/* --- UTF-8 and the byte-level alphabet (tokenizer_util.c) --------------------------------- */

/* The length of the valid UTF-8 text at the start of s(n): n when all of it is valid. */
size_t tok_utf8_valid_prefix(const char *s, size_t n);
/* The byte length of the UTF-8 character starting with lead byte c (1 for a stray byte). */
size_t tok_utf8_len(unsigned char c);
/* Appends s(n) to b, each maximal invalid subsequence replaced by U+FFFD (as Rust's
 * String::from_utf8_lossy and the WHATWG decoder do). */
bwt_status tok_utf8_lossy(tok_buf *b, const char *s, size_t n);
/* GPT-2's byte-to-unicode map: the code point standing for byte b, and back (-1: none). */
int32_t tok_byte_to_cp(unsigned b);
int tok_cp_to_byte(int32_t cp);

/* --- the tokenizer ------------------------------------------------------------------------ */

typedef enum { TOK_NORM_NFC, TOK_NORM_NFD, TOK_NORM_NFKC, TOK_NORM_NFKD, TOK_NORM_PREPEND, TOK_NORM_REPLACE, TOK_NORM_STRIP } tok_norm_kind;
typedef struct {
  tok_norm_kind kind;
  const char *a, *b; /* PREPEND: a; REPLACE: a by b */
  size_t a_len, b_len;
  int left, right; /* STRIP */
} tok_norm;

typedef enum { TOK_SPLIT_REMOVED, TOK_SPLIT_ISOLATED, TOK_SPLIT_MERGED_PREVIOUS, TOK_SPLIT_MERGED_NEXT, TOK_SPLIT_CONTIGUOUS } tok_split_behavior;
typedef enum { TOK_PRE_SPLIT, TOK_PRE_BYTE_LEVEL, TOK_PRE_METASPACE } tok_pre_kind;
typedef enum { TOK_PREPEND_ALWAYS, TOK_PREPEND_FIRST, TOK_PREPEND_NEVER } tok_prepend_scheme;
typedef struct {
  tok_pre_kind kind;
  pcre2_code *re;       /* SPLIT by a regex, BYTE_LEVEL with use_regex (NULL: none) */
  const char *lit;      /* SPLIT by a literal string, METASPACE's replacement */
  size_t lit_len;
  tok_split_behavior behavior;
  int invert;           /* SPLIT */
  int add_prefix_space; /* BYTE_LEVEL */
  tok_prepend_scheme prepend; /* METASPACE */
  int split;                  /* METASPACE */
} tok_pre;

typedef enum { TOK_DEC_BYTE_LEVEL, TOK_DEC_METASPACE, TOK_DEC_REPLACE, TOK_DEC_BYTE_FALLBACK, TOK_DEC_FUSE, TOK_DEC_STRIP, TOK_DEC_BYTES } tok_dec_kind;
typedef struct {
  tok_dec_kind kind;
  const char *a, *b; /* REPLACE: a by b; METASPACE: a is the replacement; STRIP: a is the character */
  size_t a_len, b_len;
  int start, stop; /* STRIP */
  tok_prepend_scheme prepend; /* METASPACE */
} tok_dec;

typedef struct {
  const char *s; /* the token's text, as decoded */
  size_t n;
  const char *match; /* the text matched: s, through the normalizer if the token is `normalized` */
  size_t match_n;
  int32_t id;
  int special, normalized, lstrip, rstrip;
} tok_added;

struct bwt_tokenizer {
  tok_arena arena; /* every string below */
  pcre2_general_context *gctx;

  size_t n_ids;
  const char **tok_str; /* [n_ids] the text of each id (NULL: no such id) */
  uint32_t *tok_len;

  /* The BPE model: vocab (token text to id) and merges (id pair to rank and result). */
  tok_strmap vocab;
  tok_pairmap merges;
  int byte_input;        /* symbols are bytes (tiktoken), not UTF-8 characters */
  int32_t byte_sym[256]; /* byte_input: each byte's id */
  int byte_fallback, fuse_unk, ignore_merges;
  int32_t unk;           /* -1: none */
  int32_t byte_tok[256]; /* the <0xNN> ids (-1: absent) */

  tok_added *added;
  size_t n_added;
  unsigned char added_first[256]; /* 1 for the first bytes of added tokens (a quick filter) */

  tok_norm *norm;
  size_t n_norm;
  tok_pre *pre;
  size_t n_pre;
  tok_dec *dec;
  size_t n_dec;
  int dec_join_space; /* no decoder: tokens are joined by spaces */

  int32_t *prefix, *suffix; /* the template around the text */
  size_t n_prefix, n_suffix;
  int32_t bos, eos;
};

/* Loaders (tokenizer_json.c, tokenizer_tiktoken.c) fill a zeroed tokenizer from a file's
 * contents; `name` is used in messages. */
bwt_status tok_load_json(bwt_tokenizer *t, const char *data, size_t n, const char *name);
bwt_status tok_load_tiktoken(bwt_tokenizer *t, const char *data, size_t n, const char *name);
/* Allocates the id tables for n_ids ids. */
bwt_status tok_ids_alloc(bwt_tokenizer *t, size_t n_ids);

/* Pipeline steps (tokenizer_text.c). */
bwt_status tok_regex_compile(bwt_tokenizer *t, const char *pattern, pcre2_code **re, const char *name);
bwt_status tok_normalize(const bwt_tokenizer *t, const char *s, size_t n, tok_buf *out);
/* Runs the pre-tokenizers over in (replaced by the result; tmp is scratch). */
bwt_status tok_pre_tokenize(const bwt_tokenizer *t, tok_pieces *in, tok_pieces *tmp, pcre2_match_data *md);
/* The BPE model over one pre-token (tokenizer_bpe.c): appends its ids. */
bwt_status tok_bpe_word(const bwt_tokenizer *t, const char *s, size_t n, tok_ids *out);
/* The decoder chain (tokenizer_decode.c). */
bwt_status tok_decode(const bwt_tokenizer *t, const int32_t *ids, size_t n, tok_buf *out);

/* GPT-2's pre-tokenizer pattern (the ByteLevel pre-tokenizer's use_regex) and Llama 3's. */
extern const char tok_gpt2_pattern[];
extern const char tok_llama3_pattern[];

#endif
