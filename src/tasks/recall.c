/* Associative recall (SPEC.md §1.4, Paper I v3 "random-access binding").
 *
 * N key/value pairs with distinct keys and distinct values, F filler tokens, then M queries of
 * distinct stored keys:
 *
 *   k1 v1 k2 v2 … kN vN FILL … FILL Q kq1 Q kq2 … Q kqM
 *
 * Tokens: keys 0..KV−1, values KV..KV+VV−1 (KV, VV the key and value vocabularies), FILL = KV+VV,
 * Q = KV+VV+1. Each queried key is supervised; its target is the value bound to it, and the exact
 * posterior is a point mass there. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/rng.h"
#include "bwt/task.h"
#include "task_internal.h"

#define RECALL_MAX_VOCAB 65536
#define RECALL_MAX_LEN 1000000

static void destroy(bwt_task *task) { free(task); }

/* Moves k distinct draws from 0..n−1 to the front of perm (n entries, reset here). */
static void draw_distinct(bwt_rng *rng, int32_t *perm, int n, int k) {
  for (int i = 0; i < n; i++) perm[i] = i;
  for (int i = 0; i < k; i++) { /* partial Fisher–Yates */
    int j = i + (int)bwt_rng_below(rng, (uint32_t)(n - i)), x = perm[i];
    perm[i] = perm[j], perm[j] = x;
  }
}

/* One sequence: tok (T), pos and target (M), post (M,K); scratch holds KV + VV + N ints. */
static void sample_one(const bwt_task *task, bwt_rng *rng, void *scratch_, const task_sequence *seq) {
  int32_t *scratch = scratch_, *tok = seq->tokens, *pos = seq->pos, *target = seq->target;
  double *post = seq->post;
  const bwt_task_config *c = &task->cfg;
  int KV = c->key_vocab, VV = c->value_vocab, N = c->pairs, M = c->queries, K = task->n_classes;
  int32_t *keys = scratch, *values = keys + KV, *which = values + VV;
  draw_distinct(rng, keys, KV, N);
  draw_distinct(rng, values, VV, N);
  draw_distinct(rng, which, N, M);
  int p = 0;
  for (int i = 0; i < N; i++) {
    tok[p++] = keys[i];
    tok[p++] = KV + values[i];
  }
  for (int i = 0; i < c->fillers; i++) tok[p++] = KV + VV;
  memset(post, 0, sizeof(double) * (size_t)M * K);
  for (int j = 0; j < M; j++) {
    int i = which[j];
    tok[p++] = KV + VV + 1;
    pos[j] = p;
    tok[p++] = keys[i];
    target[j] = KV + values[i];
    post[(size_t)j * K + target[j]] = 1.0;
  }
}

static bwt_status sample(const bwt_task *task, uint64_t seed, uint64_t first, bwt_batch *out) {
  return task_sample_batch(task, seed, first, out, sizeof(int32_t) * ((size_t)task->cfg.key_vocab + task->cfg.value_vocab + task->cfg.pairs), sample_one);
}

static const bwt_task_ops recall_ops = {sample, destroy};

bwt_status bwt_recall_create(bwt_task **out, const bwt_task_config *cfg) {
  if (!out || !cfg) return bwt_fail(BWT_STATUS_ARG, "bwt_recall_create: NULL argument");
  *out = NULL;
  const bwt_task_config *c = cfg;
  if (c->key_vocab < 1 || c->key_vocab > RECALL_MAX_VOCAB || c->value_vocab < 1 || c->value_vocab > RECALL_MAX_VOCAB)
    return bwt_fail(BWT_STATUS_ARG, "recall: key-vocab and value-vocab must be in 1..%d (got %d, %d)",
                    RECALL_MAX_VOCAB, c->key_vocab, c->value_vocab);
  if (c->pairs < 1 || c->pairs > c->key_vocab || c->pairs > c->value_vocab)
    return bwt_fail(BWT_STATUS_ARG, "recall: pairs must be in 1..min(key-vocab, value-vocab) = %d (got %d)",
                    c->key_vocab < c->value_vocab ? c->key_vocab : c->value_vocab, c->pairs);
  if (c->queries < 1 || c->queries > c->pairs)
    return bwt_fail(BWT_STATUS_ARG, "recall: queries must be in 1..pairs (%d) (got %d)", c->pairs, c->queries);
  long T = 2L * c->pairs + c->fillers + 2L * c->queries;
  if (c->fillers < 0 || T > RECALL_MAX_LEN)
    return bwt_fail(BWT_STATUS_ARG, "recall: fillers must be >= 0 and the sequence at most %d tokens (got fillers %d, length %ld)",
                    RECALL_MAX_LEN, c->fillers, T);
  bwt_task *t = bwt_calloc(1, sizeof *t, "recall task");
  if (!t) return BWT_STATUS_NOMEM;
  t->ops = &recall_ops;
  t->cfg = *cfg;
  snprintf(t->cfg.name, sizeof t->cfg.name, "recall");
  t->vocab = c->key_vocab + c->value_vocab + 2;
  t->seq_len = (int)T;
  t->n_sup = c->queries;
  t->n_classes = t->vocab;
  t->answer_lo = c->key_vocab;
  t->answer_hi = c->key_vocab + c->value_vocab;
  *out = t;
  return BWT_STATUS_OK;
}
