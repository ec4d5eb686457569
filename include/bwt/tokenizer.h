/* Tokenizers of real language models: text to token ids and back.
 *
 * Reads Hugging Face tokenizer.json files with a BPE model: byte-level BPE (GPT-2, Pythia with its
 * NFC normalizer and added tokens, Llama 3's converted file) and SentencePiece-style BPE with byte
 * fallback (Llama 2, Mistral: Prepend/Replace normalizers or the Metaspace pre-tokenizer); and
 * Llama 3's original tokenizer.model (tiktoken format: "base64 rank" lines), read with Llama 3's
 * split pattern and its 256 special tokens numbered from the vocabulary size.
 *
 * Encoding follows Hugging Face's tokenizers library (the reference of tests/test_tokenizer.c):
 * added tokens written in the text are recognised first (longest match), the rest is normalized,
 * pre-tokenized (regular expressions through PCRE2) and merged by BPE rank. Decoding runs the
 * file's decoder chain; bytes that are not valid UTF-8 come out as U+FFFD.
 *
 * A loaded tokenizer is read-only: several threads may encode and decode with it at once. */
#ifndef BWT_TOKENIZER_H
#define BWT_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "bwt/status.h"

typedef struct bwt_tokenizer bwt_tokenizer;

/* Loads a tokenizer from path: a tokenizer.json, a tiktoken-format tokenizer.model, or a model
 * directory holding tokenizer.json, tokenizer.model or original/tokenizer.model (tried in this
 * order). A file that is neither, or uses a feature this reader lacks, fails with a one-line
 * message naming it. */
bwt_status bwt_tokenizer_load(bwt_tokenizer **out, const char *path);
void bwt_tokenizer_free(bwt_tokenizer *tok);

typedef enum {
  /* Adds the special tokens of the tokenizer's template around the text (tokenizer.json's
   * post_processor; for tokenizer.model BOS first, as Meta's encode(bos=True) does). */
  BWT_TOKENIZE_SPECIAL = 1,
  /* Ends with the EOS token too, unless the ids already end with it. */
  BWT_TOKENIZE_EOS = 2,
  /* Special tokens written in the text are ordinary text, not control tokens (non-special added
   * tokens, such as Pythia's whitespace runs, are still recognised). */
  BWT_TOKENIZE_PLAIN = 4
} bwt_tokenize_flags;

/* Encodes text(len) (UTF-8; invalid UTF-8 is refused with BWT_STATUS_ARG) into *ids(*n), a
 * malloc'd array the caller frees (an empty text gives *n 0 and a non-NULL *ids). flags: an OR of
 * bwt_tokenize_flags, 0 for the bare text. */
bwt_status bwt_tokenizer_encode(const bwt_tokenizer *tok, const char *text, size_t len, unsigned flags,
                                int32_t **ids, size_t *n);
/* Decodes ids(n) into *text, a malloc'd NUL-terminated UTF-8 string the caller frees; special
 * tokens are written out. An id outside the vocabulary is refused with BWT_STATUS_ARG. */
bwt_status bwt_tokenizer_decode(const bwt_tokenizer *tok, const int32_t *ids, size_t n, char **text);

/* The number of ids (one more than the largest id, added and special tokens included). */
size_t bwt_tokenizer_vocab_size(const bwt_tokenizer *tok);
/* The BOS / EOS ids (-1 if the tokenizer has none): the template's first and last special tokens,
 * or else the added token named like one (<|begin_of_text|>, <s>, <|endoftext|> ...). */
int32_t bwt_tokenizer_bos(const bwt_tokenizer *tok);
int32_t bwt_tokenizer_eos(const bwt_tokenizer *tok);
/* The id of a token written as text (a vocabulary entry as stored, or an added token); -1 if none. */
int32_t bwt_tokenizer_token_id(const bwt_tokenizer *tok, const char *token);

#endif
