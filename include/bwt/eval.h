/* Metrics of a model's predictive distribution p against the exact posterior q (SPEC.md §4).
 * All entropies, KL and cross-entropies are in bits. */
#ifndef BWT_EVAL_H
#define BWT_EVAL_H

#include <stdint.h>

#include "bwt/model.h"
#include "bwt/task.h"

typedef struct {
  long n;                    /* rows (sequence, supervised position) */
  double entropy_mae;        /* mean |H(p) − H(q)|, p the full predictive (the headline) */
  double entropy_mae_renorm; /* the same with p renormalised over the task's answer slice */
  double model_entropy;      /* mean H(p) */
  double bayes_entropy;      /* mean H(q): the Bayes floor of the cross-entropy */
  double kl_bits;            /* mean KL(q‖p) */
  double tv;                 /* mean ½Σ|q − p| */
  double ce_bits;            /* mean −log2 p(sampled target) */
  double excess_ce_bits;     /* ce_bits − bayes_entropy */
  long n_point_mass;         /* rows whose posterior is a point mass */
  double accuracy;           /* argmax p == the point mass, over those rows; NaN if none */
} bwt_metrics;

typedef struct {
  int n_pos;         /* supervised positions per sequence */
  long n_seqs;
  uint64_t seed;     /* the held-out stream's seed */
  bwt_metrics overall;
  double entropy_mae_curves; /* mean over positions of |mean H(p) − mean H(q)| ("curves first") */
  bwt_metrics *pos;  /* (n_pos) per supervised position */
} bwt_eval_result;

/* Running sums; feed batches with bwt_eval_add, then bwt_eval_finish. */
typedef struct bwt_eval_acc bwt_eval_acc;
bwt_status bwt_eval_acc_create(bwt_eval_acc **out, const bwt_task *task);
/* logits (B·n_sup, K) as returned by bwt_model_forward for batch. A logit that is not finite fails
 * with BWT_STATUS_NUMERIC (the model is broken; no metric of it would mean anything). */
bwt_status bwt_eval_add(bwt_eval_acc *acc, const float *logits, const bwt_batch *batch);
bwt_status bwt_eval_finish(const bwt_eval_acc *acc, bwt_eval_result *out);
void bwt_eval_acc_free(bwt_eval_acc *acc);

/* Evaluates on the held-out sequences 0..n_seqs-1 of the stream eval_seed (disjoint from training
 * batches), batch_size at a time. Which sequences are scored depends only on eval_seed and n_seqs;
 * batch_size is memory and speed (the sums may differ in the last bits across batch sizes and
 * thread counts, as BLAS blocks its products differently). Stops early with BWT_STATUS_STOPPED on
 * bwt_request_stop. */
bwt_status bwt_evaluate(bwt_model *model, const bwt_task *task, uint64_t eval_seed, int n_seqs,
                        int batch_size, bwt_eval_result *out);
/* The same with forward options (ablations; NULL: none). */
bwt_status bwt_evaluate_with(bwt_model *model, const bwt_task *task, const bwt_forward_options *opt,
                             uint64_t eval_seed, int n_seqs, int batch_size, bwt_eval_result *out);
void bwt_eval_result_free(bwt_eval_result *r);

/* The held-out stream: held-out sequence j of eval_seed is sequence j of the task stream
 * bwt_eval_stream_seed(eval_seed) (a stream of its own, disjoint from the training batches'). */
uint64_t bwt_eval_stream_seed(uint64_t eval_seed);
/* Fills batch (its B sequences) with held-out sequences first .. first + B − 1. */
bwt_status bwt_eval_sample(const bwt_task *task, uint64_t eval_seed, long first, bwt_batch *batch);

#endif
