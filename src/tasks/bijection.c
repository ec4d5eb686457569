/* Bijection elimination (SPEC.md §1.1, Paper I "belief accumulation").
 *
 * A fresh random permutation π of {0..V-1} per sequence; keys are tokens 0..V-1, value v is token
 * V+v. Sep-vocab layout: k1, V+π(k1), …, k_{L-1}, V+π(k_{L-1}), k_L (T = 2L−1); each key position
 * 2t is supervised with target V+π(k_{t+1}). Paired layout (query): all L pairs, then a query key
 * drawn from the context (T = 2L+1, one more supervised position).
 *
 * Exact posterior at a key: a point mass on its value if that key was shown before (only with
 * replacement, or at the query); otherwise uniform over the values not yet revealed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/rng.h"
#include "bwt/task.h"
#include "task_internal.h"

#define BIJECTION_MAX_V 4096
#define BIJECTION_MAX_L 100000
/* At most this many posterior entries (n_sup * 2V doubles, 512 MiB) per sequence. */
#define BIJECTION_MAX_POST_PER_SEQ (1L << 26)

static void destroy(bwt_task *task) { free(task); }

/* Per-sequence scratch: the permutation, which values are revealed, and each key's value if seen. */
typedef struct {
  int32_t perm[BIJECTION_MAX_V], keys[BIJECTION_MAX_V];
  uint8_t revealed[BIJECTION_MAX_V], key_seen[BIJECTION_MAX_V];
} scratch;

static void posterior_at_key(double *q, const bwt_task *task, const scratch *s, int key, int n_revealed) {
  int V = task->cfg.V;
  memset(q, 0, sizeof(double) * task->n_classes);
  if (s->key_seen[key]) {
    q[V + s->perm[key]] = 1.0;
    return;
  }
  double u = 1.0 / (V - n_revealed);
  for (int v = 0; v < V; v++)
    if (!s->revealed[v]) q[V + v] = u;
}

/* One sequence: tok (T), pos and target (N), post (N,K). */
static void sample_one(const bwt_task *task, bwt_rng *rng, void *scratch_, const task_sequence *seq) {
  scratch *s = scratch_;
  int32_t *tok = seq->tokens, *pos = seq->pos, *target = seq->target;
  double *post = seq->post;
  int V = task->cfg.V, L = task->cfg.L, K = task->n_classes;
  for (int i = 0; i < V; i++) s->perm[i] = s->keys[i] = i;
  memset(s->revealed, 0, V);
  memset(s->key_seen, 0, V);
  for (int i = V - 1; i > 0; i--) { /* Fisher–Yates */
    int j = (int)bwt_rng_below(rng, (uint32_t)i + 1), x = s->perm[i];
    s->perm[i] = s->perm[j], s->perm[j] = x;
  }
  int n_revealed = 0;
  for (int t = 0; t < L; t++) {
    int key;
    if (task->cfg.with_replacement) {
      key = (int)bwt_rng_below(rng, (uint32_t)V);
    } else { /* partial Fisher–Yates: keys distinct */
      int j = t + (int)bwt_rng_below(rng, (uint32_t)(V - t));
      key = s->keys[j], s->keys[j] = s->keys[t], s->keys[t] = key;
    }
    tok[2 * t] = key;
    pos[t] = 2 * t;
    target[t] = V + s->perm[key];
    posterior_at_key(post + (size_t)t * K, task, s, key, n_revealed);
    if (2 * t + 1 < task->seq_len) tok[2 * t + 1] = V + s->perm[key];
    if (!s->key_seen[key]) {
      s->key_seen[key] = 1;
      s->revealed[s->perm[key]] = 1;
      n_revealed++;
    }
  }
  if (task->cfg.query) { /* a key drawn uniformly from the L context positions */
    int t = (int)bwt_rng_below(rng, (uint32_t)L);
    int key = tok[2 * t];
    tok[2 * L] = key;
    pos[L] = 2 * L;
    target[L] = V + s->perm[key];
    posterior_at_key(post + (size_t)L * K, task, s, key, n_revealed);
  }
}

static bwt_status sample(const bwt_task *task, uint64_t seed, uint64_t first, bwt_batch *out) {
  return task_sample_batch(task, seed, first, out, sizeof(scratch), sample_one);
}

static const bwt_task_ops bijection_ops = {sample, destroy};

bwt_status bwt_bijection_create(bwt_task **out, const bwt_task_config *cfg) {
  if (!out || !cfg) return bwt_fail(BWT_STATUS_ARG, "bwt_bijection_create: NULL argument");
  *out = NULL;
  int V = cfg->V, L = cfg->L;
  if (V < 2 || V > BIJECTION_MAX_V)
    return bwt_fail(BWT_STATUS_ARG, "bijection: V must be in 2..%d (got V=%d)", BIJECTION_MAX_V, V);
  if (L < 1 || L > BIJECTION_MAX_L)
    return bwt_fail(BWT_STATUS_ARG, "bijection: L must be in 1..%d (got L=%d)", BIJECTION_MAX_L, L);
  if (!cfg->with_replacement && L > V)
    return bwt_fail(BWT_STATUS_ARG, "bijection: L=%d > V=%d is impossible without replacement (use --with-replacement)", L, V);
  long n_sup = cfg->query ? (long)L + 1 : L;
  if (n_sup * 2 * V > BIJECTION_MAX_POST_PER_SEQ)
    return bwt_fail(BWT_STATUS_ARG, "bijection: V=%d, L=%d needs %ld posterior entries per sequence (limit %ld)", V,
                    L, n_sup * 2 * V, BIJECTION_MAX_POST_PER_SEQ);
  bwt_task *t = bwt_calloc(1, sizeof *t, "bijection task");
  if (!t) return BWT_STATUS_NOMEM;
  t->ops = &bijection_ops;
  t->cfg = *cfg;
  t->cfg.with_replacement = cfg->with_replacement != 0;
  t->cfg.query = cfg->query != 0;
  snprintf(t->cfg.name, sizeof t->cfg.name, "bijection");
  t->vocab = 2 * V;
  t->input_dim = 0;
  t->seq_len = cfg->query ? 2 * L + 1 : 2 * L - 1;
  t->n_sup = cfg->query ? L + 1 : L;
  t->n_classes = 2 * V;
  t->answer_lo = V;
  t->answer_hi = 2 * V;
  *out = t;
  return BWT_STATUS_OK;
}
