/* Entropy MAE (three variants), KL, TV, accuracy and excess cross-entropy against exact posteriors.
 * Log-probabilities are taken from the logits in double precision, so KL stays finite where a float
 * softmax would underflow to 0. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/eval.h"
#include "bwt/rng.h"

#define LOG2E 1.4426950408889634

typedef struct {
  double abs_dh, abs_dh_renorm, hp, hq, kl, tv, ce, correct;
  long n, n_point;
} sums;

struct bwt_eval_acc {
  int n_pos, K, lo, hi;
  long n_seqs;
  sums *pos;     /* (n_pos) */
  double *logp;  /* (K) scratch */
};

bwt_status bwt_eval_acc_create(bwt_eval_acc **out, const bwt_task *task) {
  bwt_eval_acc *a = bwt_calloc(1, sizeof *a, "evaluation");
  if (!a) return BWT_STATUS_NOMEM;
  a->n_pos = task->n_sup;
  a->K = task->n_classes;
  a->lo = task->answer_lo;
  a->hi = task->answer_hi;
  a->pos = bwt_calloc(a->n_pos, sizeof *a->pos, "evaluation");
  a->logp = bwt_calloc(a->K, sizeof *a->logp, "evaluation");
  if (!a->pos || !a->logp) return bwt_eval_acc_free(a), BWT_STATUS_NOMEM;
  *out = a;
  return BWT_STATUS_OK;
}

void bwt_eval_acc_free(bwt_eval_acc *a) {
  if (!a) return;
  free(a->pos);
  free(a->logp);
  free(a);
}

/* log-softmax of one row in double. */
static void log_softmax(double *logp, const float *logits, int K) {
  double mx = -INFINITY, z = 0;
  for (int k = 0; k < K; k++) mx = fmax(mx, (double)logits[k]);
  for (int k = 0; k < K; k++) z += exp((double)logits[k] - mx);
  double lz = mx + log(z);
  for (int k = 0; k < K; k++) logp[k] = (double)logits[k] - lz;
}

bwt_status bwt_eval_add(bwt_eval_acc *a, const float *logits, const bwt_batch *batch) {
  int K = a->K;
  size_t n_logits = (size_t)batch->B * batch->n_sup * K;
  for (size_t i = 0; i < n_logits; i++)
    if (!isfinite(logits[i]))
      return bwt_fail(BWT_STATUS_NUMERIC, "the model's output %zu is %g: its weights or inputs are broken, and no metric of it means anything", i, (double)logits[i]);
  for (int b = 0; b < batch->B; b++)
    for (int j = 0; j < a->n_pos; j++) {
      size_t row = (size_t)b * batch->n_sup + j;
      const double *q = batch->posterior + row * K;
      double *lp = a->logp;
      log_softmax(lp, logits + row * K, K);
      double hp = 0, hq = 0, kl = 0, tv = 0, slice = 0, qmax = 0;
      int argp = 0, argq = 0;
      for (int k = 0; k < K; k++) {
        double p = exp(lp[k]);
        if (p > 0) hp -= p * lp[k];
        if (q[k] > 0) {
          hq -= q[k] * log(q[k]);
          kl += q[k] * (log(q[k]) - lp[k]);
        }
        tv += fabs(q[k] - p);
        if (k >= a->lo && k < a->hi) slice += p;
        if (lp[k] > lp[argp]) argp = k;
        if (q[k] > qmax) qmax = q[k], argq = k;
      }
      /* Entropy of p renormalised over the answer slice: H = log S − (1/S)Σ p log p. */
      double hr = 0;
      for (int k = a->lo; k < a->hi; k++) {
        double p = exp(lp[k]) / slice;
        if (p > 0) hr -= p * log(p);
      }
      sums *s = &a->pos[j];
      s->n++;
      s->abs_dh += fabs(hp - hq) * LOG2E;
      s->abs_dh_renorm += fabs(hr - hq) * LOG2E;
      s->hp += hp * LOG2E;
      s->hq += hq * LOG2E;
      s->kl += kl * LOG2E;
      s->tv += 0.5 * tv;
      s->ce += -lp[batch->target[row]] * LOG2E;
      if (qmax >= 1.0 - 1e-12) {
        s->n_point++;
        s->correct += argp == argq;
      }
    }
  a->n_seqs += batch->B;
  return BWT_STATUS_OK;
}

static bwt_metrics finish(const sums *s) {
  bwt_metrics m;
  memset(&m, 0, sizeof m);
  double n = (double)(s->n ? s->n : 1);
  m.n = s->n;
  m.entropy_mae = s->abs_dh / n;
  m.entropy_mae_renorm = s->abs_dh_renorm / n;
  m.model_entropy = s->hp / n;
  m.bayes_entropy = s->hq / n;
  m.kl_bits = s->kl / n;
  m.tv = s->tv / n;
  m.ce_bits = s->ce / n;
  m.excess_ce_bits = m.ce_bits - m.bayes_entropy;
  m.n_point_mass = s->n_point;
  m.accuracy = s->n_point ? s->correct / (double)s->n_point : NAN;
  return m;
}

bwt_status bwt_eval_finish(const bwt_eval_acc *a, bwt_eval_result *out) {
  memset(out, 0, sizeof *out);
  out->n_pos = a->n_pos;
  out->n_seqs = a->n_seqs;
  out->pos = bwt_calloc(a->n_pos, sizeof *out->pos, "evaluation result");
  if (!out->pos) return BWT_STATUS_NOMEM;
  sums total;
  memset(&total, 0, sizeof total);
  double curves = 0;
  for (int j = 0; j < a->n_pos; j++) {
    const sums *s = &a->pos[j];
    out->pos[j] = finish(s);
    curves += fabs(out->pos[j].model_entropy - out->pos[j].bayes_entropy);
    total.abs_dh += s->abs_dh;
    total.abs_dh_renorm += s->abs_dh_renorm;
    total.hp += s->hp;
    total.hq += s->hq;
    total.kl += s->kl;
    total.tv += s->tv;
    total.ce += s->ce;
    total.correct += s->correct;
    total.n += s->n;
    total.n_point += s->n_point;
  }
  out->overall = finish(&total);
  out->entropy_mae_curves = curves / a->n_pos;
  return BWT_STATUS_OK;
}

void bwt_eval_result_free(bwt_eval_result *r) {
  free(r->pos);
  r->pos = NULL;
}

uint64_t bwt_eval_stream_seed(uint64_t eval_seed) {
  /* A stream of its own: training batches use bwt_hash2(seed, step) with small step numbers. */
  return bwt_hash2(eval_seed, 0x65766131ULL);
}

bwt_status bwt_eval_sample(const bwt_task *task, uint64_t eval_seed, long first, bwt_batch *batch) {
  return bwt_task_sample_at(task, bwt_eval_stream_seed(eval_seed), (uint64_t)first, batch);
}

bwt_status bwt_evaluate(bwt_model *model, const bwt_task *task, uint64_t eval_seed, int n_seqs,
                        int batch_size, bwt_eval_result *out) {
  return bwt_evaluate_with(model, task, NULL, eval_seed, n_seqs, batch_size, out);
}

bwt_status bwt_evaluate_with(bwt_model *model, const bwt_task *task, const bwt_forward_options *opt,
                             uint64_t eval_seed, int n_seqs, int batch_size, bwt_eval_result *out) {
  if (n_seqs < 1 || batch_size < 1) return bwt_fail(BWT_STATUS_ARG, "evaluation needs at least one sequence (got %d, batch %d)", n_seqs, batch_size);
  BWT_TRY(bwt_model_check_task(model, task));
  bwt_eval_acc *acc = NULL;
  bwt_batch batch;
  memset(&batch, 0, sizeof batch);
  bwt_status s = bwt_eval_acc_create(&acc, task);
  int B = batch_size < n_seqs ? batch_size : n_seqs;
  if (s == BWT_STATUS_OK) s = bwt_batch_alloc(&batch, task, B);
  for (int done = 0; s == BWT_STATUS_OK && done < n_seqs; done += B) {
    if (bwt_stop_requested()) {
      s = bwt_fail(BWT_STATUS_STOPPED, "stopped during an evaluation (%d of %d sequences scored)", done, n_seqs);
      break;
    }
    int full_B = batch.B;
    batch.B = n_seqs - done < B ? n_seqs - done : B; /* the last batch: only the sequences left */
    const float *logits = NULL;
    s = bwt_eval_sample(task, eval_seed, done, &batch);
    if (s == BWT_STATUS_OK) s = bwt_model_forward_with(model, &batch, opt, &logits);
    if (s == BWT_STATUS_OK) s = bwt_eval_add(acc, logits, &batch);
    batch.B = full_B;
  }
  if (s == BWT_STATUS_OK) s = bwt_eval_finish(acc, out);
  if (s == BWT_STATUS_OK) out->seed = eval_seed;
  bwt_batch_free(&batch);
  bwt_eval_acc_free(acc);
  return s;
}
