/* The sticky Markov chain (SPEC.md §1.3, Paper II), with continuous inputs.
 *
 * Eight symbols. Transition row i: P[i,i] = 0.3, P[i,j] = 1/dcirc(i,j) for j ≠ i with
 * dcirc = min(|i−j|, 8−|i−j|); then row ← row/sum(row)·0.7 + 0.3·e_i, renormalised (as the
 * reference computes it: the self-transition is 0.3498). A chain y_0 … y_n has y_0 uniform and
 * y_t ~ P[y_{t−1}]. Position i of a sequence (i = 0 … n−1, n = chain_len) shows the 20-dimensional
 * input x = μ[y_i] + N(0, I) and is supervised with the next symbol y_{i+1}, where μ (8×20) are
 * fixed Gaussian symbol embeddings drawn once from STICKY_MU_SEED, the same for every run.
 *
 * Exact posterior of y_{i+1} given the inputs up to position i: the forward algorithm over the
 * hidden y_0 … y_i with Gaussian emissions (the filter α_i(y_i) ∝ Σ_r α_{i−1}(r) P[r, y_i] ·
 * exp(−|x_i − μ[y_i]|²/2), normalised at each step in double), then one transition:
 * q(y) = Σ_r α_i(r) P[r, y]. The floor of any predictor that knew y_i exactly is the mean row
 * entropy of P, 1.82919 nats (2.6390 bits); bwt_sticky_floor_bits returns it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/rng.h"
#include "bwt/task.h"
#include "task_internal.h"

#define STICKY_SYMBOLS 8
#define STICKY_DIM 20
#define STICKY_MU_SEED 2512224730ULL /* arXiv 2512.22473, Paper II */
#define STICKY_MAX_LEN 1000000

typedef struct {
  double P[STICKY_SYMBOLS][STICKY_SYMBOLS];
  double mu[STICKY_SYMBOLS][STICKY_DIM];
} sticky_params;

void bwt_sticky_transitions(double P[8][8]) {
  for (int i = 0; i < STICKY_SYMBOLS; i++) {
    double sum = 0;
    for (int j = 0; j < STICKY_SYMBOLS; j++) {
      int d = abs(i - j);
      if (STICKY_SYMBOLS - d < d) d = STICKY_SYMBOLS - d;
      sum += P[i][j] = i == j ? 0.3 : 1.0 / d;
    }
    double total = 0;
    for (int j = 0; j < STICKY_SYMBOLS; j++) total += P[i][j] = P[i][j] / sum * 0.7 + (i == j ? 0.3 : 0.0);
    for (int j = 0; j < STICKY_SYMBOLS; j++) P[i][j] /= total;
  }
}

double bwt_sticky_floor_bits(void) {
  double P[8][8], h = 0;
  bwt_sticky_transitions(P);
  for (int i = 0; i < STICKY_SYMBOLS; i++) h += bwt_entropy_bits(P[i], STICKY_SYMBOLS);
  return h / STICKY_SYMBOLS;
}

void bwt_sticky_embeddings(double mu[8][20]) {
  bwt_rng rng;
  bwt_rng_seed(&rng, STICKY_MU_SEED, 0);
  for (int i = 0; i < STICKY_SYMBOLS; i++)
    for (int d = 0; d < STICKY_DIM; d++) mu[i][d] = bwt_rng_normal(&rng);
}

static void destroy(bwt_task *task) {
  free(task->impl);
  free(task);
}

/* One sequence: inputs (n,20), pos and target (n), post (n,8). */
static void sample_one(const bwt_task *task, bwt_rng *rng, void *scratch, const task_sequence *seq) {
  (void)scratch;
  float *inputs = seq->inputs;
  int32_t *pos = seq->pos, *target = seq->target;
  double *post = seq->post;
  const sticky_params *sp = task->impl;
  int n = task->cfg.chain_len;
  double alpha[STICKY_SYMBOLS] = {0}, next[STICKY_SYMBOLS];
  int y = (int)bwt_rng_below(rng, STICKY_SYMBOLS);
  for (int i = 0; i < n; i++) {
    float *x = inputs + (size_t)i * STICKY_DIM;
    for (int d = 0; d < STICKY_DIM; d++) x[d] = (float)(sp->mu[y][d] + bwt_rng_normal(rng));
    /* Filter y_i on the input as the model sees it (float). */
    double z = 0, logw[STICKY_SYMBOLS], top = -INFINITY;
    for (int s = 0; s < STICKY_SYMBOLS; s++) {
      double d2 = 0;
      for (int d = 0; d < STICKY_DIM; d++) d2 += (x[d] - sp->mu[s][d]) * (x[d] - sp->mu[s][d]);
      logw[s] = -0.5 * d2;
      if (logw[s] > top) top = logw[s];
    }
    for (int s = 0; s < STICKY_SYMBOLS; s++) {
      double prior = 1.0 / STICKY_SYMBOLS;
      if (i > 0) {
        prior = 0;
        for (int r = 0; r < STICKY_SYMBOLS; r++) prior += alpha[r] * sp->P[r][s];
      }
      z += next[s] = prior * exp(logw[s] - top);
    }
    for (int s = 0; s < STICKY_SYMBOLS; s++) alpha[s] = next[s] / z;
    double *q = post + (size_t)i * STICKY_SYMBOLS;
    for (int s = 0; s < STICKY_SYMBOLS; s++) {
      q[s] = 0;
      for (int r = 0; r < STICKY_SYMBOLS; r++) q[s] += alpha[r] * sp->P[r][s];
    }
    /* The next symbol: drawn from P[y] by inversion of one uniform. */
    double u = bwt_rng_uniform(rng), acc = 0;
    int ny = STICKY_SYMBOLS - 1;
    for (int s = 0; s < STICKY_SYMBOLS; s++)
      if (u < (acc += sp->P[y][s])) {
        ny = s;
        break;
      }
    pos[i] = i;
    target[i] = ny;
    y = ny;
  }
}

static bwt_status sample(const bwt_task *task, uint64_t seed, uint64_t first, bwt_batch *out) {
  return task_sample_batch(task, seed, first, out, 0, sample_one);
}

static const bwt_task_ops sticky_ops = {sample, destroy};

bwt_status bwt_sticky_create(bwt_task **out, const bwt_task_config *cfg) {
  if (!out || !cfg) return bwt_fail(BWT_STATUS_ARG, "bwt_sticky_create: NULL argument");
  *out = NULL;
  if (cfg->chain_len < 1 || cfg->chain_len > STICKY_MAX_LEN)
    return bwt_fail(BWT_STATUS_ARG, "sticky: chain-len must be in 1..%d (got %d)", STICKY_MAX_LEN, cfg->chain_len);
  bwt_task *t = bwt_calloc(1, sizeof *t, "sticky task");
  sticky_params *sp = bwt_calloc(1, sizeof *sp, "sticky task");
  if (!t || !sp) return free(t), free(sp), BWT_STATUS_NOMEM;
  bwt_sticky_transitions(sp->P);
  bwt_sticky_embeddings(sp->mu);
  t->ops = &sticky_ops;
  t->impl = sp;
  t->cfg = *cfg;
  snprintf(t->cfg.name, sizeof t->cfg.name, "sticky");
  t->vocab = 0;
  t->input_dim = STICKY_DIM;
  t->seq_len = cfg->chain_len;
  t->n_sup = cfg->chain_len;
  t->n_classes = STICKY_SYMBOLS;
  t->answer_lo = 0;
  t->answer_hi = STICKY_SYMBOLS;
  *out = t;
  return BWT_STATUS_OK;
}
