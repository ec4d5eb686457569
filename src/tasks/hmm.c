/* HMM state tracking (SPEC.md §1.2, Paper I "belief transport").
 *
 * Each sequence has its own HMM with S states and O symbols: every row of the transition matrix
 * (S×S) and of the emission matrix (S×O) is drawn Dirichlet(1,…,1), floored at 0.05, renormalised
 * and discretised to exact hundredths (below); the initial distribution is uniform. The sequence
 * shows the matrices, then K observations:
 *
 *   [TRANS] T00 … T(S-1)(S-1) [EMIT] E00 … E(S-1)(O-1) [SEP] [OBS] o0 [OBS] o1 … [OBS] o(K-1)
 *
 * Tokens: probability p ∈ {0.05, 0.06, …, 1.00} is token round(100p) − 5 (0..95); [TRANS] 96,
 * [EMIT] 97, [SEP] 98, [OBS] 99; symbol o is 100 + o (vocab 100 + O; 105 for O = 5). The header
 * has 3 + S² + S·O tokens (53 for S = O = 5), the sequence 3 + S² + S·O + 2K.
 *
 * Supervised: every observation symbol, at position header + 2t + 1 (54 + 2t for S = O = 5). The
 * readout has S classes; the exact posterior is the filtering distribution p(s_t | o_0..o_t)
 * under the discretised matrices (forward algorithm, normalised at each step, in double); the
 * sampled target is the true hidden state s_t, whose conditional law is that posterior.
 *
 * Discretisation of a row of n probabilities (each ≥ 0.05 after the floor) to integer cents:
 * round each to the nearest cent, raise any below 5 to 5, then while the row sums below 100 add 1
 * to entries in index order 0, 1, …, n−1, 0, … (skipping entries at 100), and while it sums above
 * 100 subtract 1 in the order n−1, …, 0, n−1, … (skipping entries at 5). SPEC.md says "ascending"
 * and "descending" order; bwt reads that as index order. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/rng.h"
#include "bwt/task.h"
#include "task_internal.h"

#define HMM_MAX_STATES 20  /* S · 0.05 ≤ 1: the floor must leave a valid row */
#define HMM_MAX_SYMBOLS 20
#define HMM_MAX_STEPS 100000
#define HMM_TOK_TRANS 96
#define HMM_TOK_EMIT 97
#define HMM_TOK_SEP 98
#define HMM_TOK_OBS 99
#define HMM_TOK_SYMBOL 100

static void destroy(bwt_task *task) { free(task); }

static int header_len(const bwt_task_config *c) { return 3 + c->S * c->S + c->S * c->O; }

/* A Dirichlet(1,…,1) row of n, floored at 0.05, renormalised, in integer cents summing to 100. */
static void draw_row_cents(bwt_rng *rng, int n, int *cents) {
  double p[HMM_MAX_STATES > HMM_MAX_SYMBOLS ? HMM_MAX_STATES : HMM_MAX_SYMBOLS], sum = 0;
  for (int j = 0; j < n; j++) sum += p[j] = -log(1.0 - bwt_rng_uniform(rng)); /* Exp(1) */
  double floored = 0;
  for (int j = 0; j < n; j++) floored += p[j] = fmax(p[j] / sum, 0.05);
  int total = 0;
  for (int j = 0; j < n; j++) {
    cents[j] = (int)lround(100.0 * p[j] / floored);
    if (cents[j] < 5) cents[j] = 5;
    total += cents[j];
  }
  for (int i = 0; total < 100; i++)
    if (cents[i % n] < 100) cents[i % n]++, total++;
  for (int i = 0; total > 100; i++)
    if (cents[n - 1 - i % n] > 5) cents[n - 1 - i % n]--, total--;
}

/* Draws from the distribution of n entries in cents (summing to 100). */
static int draw_cents(bwt_rng *rng, const int *cents, int n) {
  int u = (int)bwt_rng_below(rng, 100), acc = 0;
  for (int j = 0; j < n; j++)
    if (u < (acc += cents[j])) return j;
  return n - 1; /* unreachable when the row sums to 100 */
}

/* One sequence: tok (T), pos and target (K), post (K,S). */
static void sample_one(const bwt_task *task, bwt_rng *rng, void *scratch, const task_sequence *seq) {
  (void)scratch;
  int32_t *tok = seq->tokens, *pos = seq->pos, *target = seq->target;
  double *post = seq->post;
  const bwt_task_config *c = &task->cfg;
  int S = c->S, O = c->O, K = c->K;
  int trans[HMM_MAX_STATES * HMM_MAX_STATES], emit[HMM_MAX_STATES * HMM_MAX_SYMBOLS];
  for (int r = 0; r < S; r++) draw_row_cents(rng, S, trans + r * S);
  for (int r = 0; r < S; r++) draw_row_cents(rng, O, emit + r * O);
  int p = 0;
  tok[p++] = HMM_TOK_TRANS;
  for (int i = 0; i < S * S; i++) tok[p++] = trans[i] - 5;
  tok[p++] = HMM_TOK_EMIT;
  for (int i = 0; i < S * O; i++) tok[p++] = emit[i] - 5;
  tok[p++] = HMM_TOK_SEP;

  double alpha[HMM_MAX_STATES], next[HMM_MAX_STATES];
  int state = (int)bwt_rng_below(rng, (uint32_t)S); /* uniform initial distribution */
  for (int t = 0; t < K; t++) {
    if (t > 0) state = draw_cents(rng, trans + state * S, S);
    int o = draw_cents(rng, emit + state * O, O);
    tok[p++] = HMM_TOK_OBS;
    pos[t] = p;
    tok[p++] = HMM_TOK_SYMBOL + o;
    target[t] = state;
    /* Forward step: predict (uniform at t = 0), weigh by the emission, normalise. */
    double z = 0;
    for (int s = 0; s < S; s++) {
      double prior = 1.0 / S;
      if (t > 0) {
        prior = 0;
        for (int r = 0; r < S; r++) prior += alpha[r] * (trans[r * S + s] / 100.0);
      }
      z += next[s] = prior * (emit[s * O + o] / 100.0);
    }
    for (int s = 0; s < S; s++) alpha[s] = next[s] / z;
    memcpy(post + (size_t)t * S, alpha, sizeof(double) * S);
  }
}

static bwt_status sample(const bwt_task *task, uint64_t seed, uint64_t first, bwt_batch *out) {
  return task_sample_batch(task, seed, first, out, 0, sample_one);
}

static const bwt_task_ops hmm_ops = {sample, destroy};

bwt_status bwt_hmm_create(bwt_task **out, const bwt_task_config *cfg) {
  if (!out || !cfg) return bwt_fail(BWT_STATUS_ARG, "bwt_hmm_create: NULL argument");
  *out = NULL;
  if (cfg->S < 2 || cfg->S > HMM_MAX_STATES)
    return bwt_fail(BWT_STATUS_ARG, "hmm: S (states) must be in 2..%d (got S=%d)", HMM_MAX_STATES, cfg->S);
  if (cfg->O < 2 || cfg->O > HMM_MAX_SYMBOLS)
    return bwt_fail(BWT_STATUS_ARG, "hmm: O (symbols) must be in 2..%d (got O=%d)", HMM_MAX_SYMBOLS, cfg->O);
  if (cfg->K < 1 || cfg->K > HMM_MAX_STEPS)
    return bwt_fail(BWT_STATUS_ARG, "hmm: K (observations) must be in 1..%d (got K=%d)", HMM_MAX_STEPS, cfg->K);
  bwt_task *t = bwt_calloc(1, sizeof *t, "hmm task");
  if (!t) return BWT_STATUS_NOMEM;
  t->ops = &hmm_ops;
  t->cfg = *cfg;
  snprintf(t->cfg.name, sizeof t->cfg.name, "hmm");
  t->vocab = HMM_TOK_SYMBOL + cfg->O;
  t->seq_len = header_len(cfg) + 2 * cfg->K;
  t->n_sup = cfg->K;
  t->n_classes = cfg->S;
  t->answer_lo = 0;
  t->answer_hi = cfg->S;
  t->hyp_lo = HMM_TOK_SYMBOL; /* the observation symbols */
  t->n_hyp = cfg->O;
  *out = t;
  return BWT_STATUS_OK;
}
