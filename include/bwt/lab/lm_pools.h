/* Prompt pools for language-model geometry (Paper III): candidate prompts by domain, and the
 * entropy-quintile stratified draw. docs/lm.md ("Geometry") lists the sources.
 *
 * Built-in pools (seeded; candidates are prefixes cut at a word boundary, for code and prose also
 * windows starting at a random word):
 *   math   generated arithmetic and algebra statements ("17 + 25 = 42", "If 3x + 4 = 19, then x = 5.")
 *   code   C and Python lines written for this project
 *   prose  English sentences written for this project
 *   legal  sentences of the licence texts in /usr/share/common-licenses (Debian's base-files)
 *   mixed  equal shares of the four (legal left out where the licences are absent)
 *   ids    token ids, for models without a tokenizer: each candidate is BOS (when the config has
 *          one) and a uniformly drawn start token followed by a continuation sampled from the model
 *          itself at temperature 1, 8 to 24 tokens in all
 * Text pools need the model's tokenizer. User pools: JSON lines {"text": …, "domain": …} or
 * {"tokens": [ids…], "domain": …} (domain optional, "user" when absent). */
#ifndef BWT_LAB_LM_POOLS_H
#define BWT_LAB_LM_POOLS_H

#include <stdint.h>

#include "bwt/lm.h"
#include "bwt/tokenizer.h"

#define BWT_LM_DOMAIN_MAX 24

typedef struct {
  int32_t *ids;
  int n;
  char domain[BWT_LM_DOMAIN_MAX];
} bwt_lm_prompt;

typedef struct {
  int n;
  bwt_lm_prompt *p;
} bwt_lm_pool;

/* "mixed, math, code, prose, legal, ids". */
const char *bwt_lm_pool_names(void);
/* Builds the built-in pool `name` with (up to) n candidates, distinct, each at most the model's
 * max_pos tokens. tok may be NULL for "ids". Fails for an unknown name, a text pool without a
 * tokenizer, a token id outside the model's vocabulary, or (legal) missing licence files. */
bwt_status bwt_lm_pool_builtin(bwt_lm_pool *out, const char *name, bwt_lm *lm, const bwt_tokenizer *tok,
                               int n, uint64_t seed);
/* Reads a JSON-lines pool; text lines through tok (NULL: a text line is an error). Token ids are
 * checked against the model's vocabulary and length. */
bwt_status bwt_lm_pool_read(bwt_lm_pool *out, const char *path, bwt_lm *lm, const bwt_tokenizer *tok);
void bwt_lm_pool_free(bwt_lm_pool *p);

/* Entropy in bits of softmax(logits(V)). */
double bwt_lm_entropy_bits(const float *logits, int V);
/* The model's next-token entropy (bits) after each candidate's final token: entropy (pool->n). */
bwt_status bwt_lm_pool_entropy(bwt_lm *lm, const bwt_lm_pool *pool, double *entropy);

/* The entropy-quintile stratified draw: candidates ranked by entropy (ties by index) are split into
 * five equal-count quintiles (rank r of n goes to quintile ⌊5r/n⌋) and per_quintile are drawn from
 * each without replacement (all of a quintile holding fewer). idx (5·per_quintile) gets candidate
 * indices in quintile order, quintile their quintile 0..4; *n_out how many. */
bwt_status bwt_lm_stratified_draw(const double *entropy, int n, int per_quintile, uint64_t seed, int *idx,
                                  int *quintile, int *n_out);

/* The prompts of an experiment: pool (a built-in name, or a JSON-lines file when it names a path or
 * ends in .jsonl/.json) with `candidates` candidates, their next-token entropies and the stratified
 * draw of per_quintile from each quintile into sel, quintile (*quintile, allocated) of each. A pool
 * of fewer than 3 candidates is an error. */
bwt_status bwt_lm_pool_draw(bwt_lm *lm, const bwt_tokenizer *tok, const char *pool, int candidates, int per_quintile,
                            uint64_t seed, bwt_lm_pool *sel, int **quintile);

#endif
