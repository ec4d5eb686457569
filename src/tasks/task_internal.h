/* Private to src/tasks: the shared batch sampler every task's `sample` goes through. */
#ifndef BWT_TASK_INTERNAL_H
#define BWT_TASK_INTERNAL_H

#include <stddef.h>

#include "bwt/rng.h"
#include "bwt/task.h"

/* One sequence's slices of a batch. */
typedef struct {
  int32_t *tokens;  /* (T), or NULL for continuous inputs */
  float *inputs;    /* (T, input_dim), or NULL for tokens */
  int32_t *pos;     /* (N) supervised positions */
  int32_t *target;  /* (N) sampled targets */
  double *post;     /* (N, K) exact posteriors */
} task_sequence;

/* Draws one sequence from rng; scratch is the calling thread's (scratch_bytes, or NULL). */
typedef void (*task_sample_fn)(const bwt_task *task, bwt_rng *rng, void *scratch, const task_sequence *seq);

/* Fills out: sequence b from the stream (seed, first + b), on OpenMP threads, so that a batch never
 * depends on the thread count or on how a stream is cut into batches; each thread gets
 * scratch_bytes of scratch. */
bwt_status task_sample_batch(const bwt_task *task, uint64_t seed, uint64_t first, bwt_batch *out,
                             size_t scratch_bytes, task_sample_fn fn);

#endif
