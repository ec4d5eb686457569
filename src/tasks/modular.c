/* Modular recurrence (SPEC.md §1.5, the "π experiment" at the construction boundary).
 *
 * With probability 1/2 a sequence is a program x_{t+1} = (a·x_t + b) mod p with a, b, x_0 uniform
 * on Z_p (p = 17 in the papers; any p ≥ 2 works, the counts below make no use of primality); otherwise its tokens are i.i.d. uniform on Z_p. Next-token prediction over the p values:
 * the row at position t (t = 0 .. length−2) predicts x_{t+1} from x_0..x_t.
 *
 * Exact predictive after a prefix of k tokens: with C the number of pairs (a, b) consistent with
 * the prefix (p² while k ≤ 1) the posterior that the sequence is a program is
 *   w = C·p^{k−3} / (1 + C·p^{k−3}),
 * and q(y) = w·n_y/C + (1−w)/p, where n_y counts the consistent pairs that continue with y (the
 * fixed-point prefixes x_0 = x_1 = … leave C = p pairs that all continue with x_0). The pairs are
 * tracked by filtering the list of all p² pairs as tokens arrive.
 *
 * Encodings: integer tokens (token = value, vocab p), or opaque tokens: a fresh random relabelling
 * σ of Z_p per sequence, shown first as a header σ(0) … σ(p−1) and a separator token p, after
 * which the sequence is σ(x_0) … σ(x_{length−1}); the readout's classes are then the symbols σ(y).
 * The sampled target is the actual next token. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/rng.h"
#include "bwt/task.h"
#include "task_internal.h"

#define MODULAR_MAX_P 257
#define MODULAR_MAX_LENGTH 4096

static void destroy(bwt_task *task) { free(task); }

/* One sequence: tok (T), pos and target (N), post (N,p); pairs (p²) is scratch for the (a, b)
 * pairs, packed a·p + b, the consistent ones first. */
static void sample_one(const bwt_task *task, bwt_rng *rng, void *scratch, const task_sequence *seq) {
  int32_t *pairs = scratch, *tok = seq->tokens, *pos = seq->pos, *target = seq->target;
  double *post = seq->post;
  int p = task->cfg.p, len = task->cfg.length, opaque = task->cfg.opaque;
  int sigma[MODULAR_MAX_P], x[MODULAR_MAX_LENGTH];
  for (int v = 0; v < p; v++) sigma[v] = v;
  int off = 0;
  if (opaque) {
    for (int i = p - 1; i > 0; i--) { /* Fisher–Yates */
      int j = (int)bwt_rng_below(rng, (uint32_t)i + 1), s = sigma[i];
      sigma[i] = sigma[j], sigma[j] = s;
    }
    for (int v = 0; v < p; v++) tok[v] = sigma[v];
    tok[p] = p; /* separator */
    off = p + 1;
  }
  int program = bwt_rng_below(rng, 2) == 0;
  int a = (int)bwt_rng_below(rng, (uint32_t)p), b = (int)bwt_rng_below(rng, (uint32_t)p);
  x[0] = (int)bwt_rng_below(rng, (uint32_t)p);
  for (int t = 1; t < len; t++) x[t] = program ? (a * x[t - 1] + b) % p : (int)bwt_rng_below(rng, (uint32_t)p);
  for (int t = 0; t < len; t++) tok[off + t] = sigma[x[t]];

  int n_pairs = p * p;
  for (int i = 0; i < n_pairs; i++) pairs[i] = i;
  for (int t = 0; t + 1 < len; t++) { /* the row at position t: prefix x_0..x_t, k = t + 1 */
    if (t > 0) { /* keep the pairs that map x_{t-1} to x_t */
      int kept = 0;
      for (int i = 0; i < n_pairs; i++) {
        int pa = pairs[i] / p, pb = pairs[i] % p;
        if ((pa * x[t - 1] + pb) % p == x[t]) pairs[kept++] = pairs[i];
      }
      n_pairs = kept;
    }
    double *q = post + (size_t)t * p;
    double bf = n_pairs * pow((double)p, (double)(t + 1) - 3.0), w = bf / (1.0 + bf);
    for (int y = 0; y < p; y++) q[y] = (1.0 - w) / p;
    for (int i = 0; i < n_pairs; i++) {
      int y = (pairs[i] / p * x[t] + pairs[i] % p) % p;
      q[sigma[y]] += w / n_pairs;
    }
    pos[t] = off + t;
    target[t] = sigma[x[t + 1]];
  }
}

static bwt_status sample(const bwt_task *task, uint64_t seed, uint64_t first, bwt_batch *out) {
  return task_sample_batch(task, seed, first, out, sizeof(int32_t) * (size_t)task->cfg.p * task->cfg.p, sample_one);
}

static const bwt_task_ops modular_ops = {sample, destroy};

bwt_status bwt_modular_create(bwt_task **out, const bwt_task_config *cfg) {
  if (!out || !cfg) return bwt_fail(BWT_STATUS_ARG, "bwt_modular_create: NULL argument");
  *out = NULL;
  int p = cfg->p;
  if (p < 2 || p > MODULAR_MAX_P)
    return bwt_fail(BWT_STATUS_ARG, "modular: p must be in 2..%d (got p=%d)", MODULAR_MAX_P, p);
  if (cfg->length < 2 || cfg->length > MODULAR_MAX_LENGTH)
    return bwt_fail(BWT_STATUS_ARG, "modular: length must be in 2..%d (got %d)", MODULAR_MAX_LENGTH, cfg->length);
  bwt_task *t = bwt_calloc(1, sizeof *t, "modular task");
  if (!t) return BWT_STATUS_NOMEM;
  t->ops = &modular_ops;
  t->cfg = *cfg;
  t->cfg.opaque = cfg->opaque != 0;
  snprintf(t->cfg.name, sizeof t->cfg.name, "modular");
  t->vocab = t->cfg.opaque ? p + 1 : p;
  t->seq_len = (t->cfg.opaque ? p + 1 : 0) + cfg->length;
  t->n_sup = cfg->length - 1;
  t->n_classes = p;
  t->answer_lo = 0;
  t->answer_hi = p;
  *out = t;
  return BWT_STATUS_OK;
}
