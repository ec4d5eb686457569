/* Wind-tunnel sequences as JSON lines, so other frameworks can train and test on them. */
#ifndef BWT_SAMPLE_EXPORT_H
#define BWT_SAMPLE_EXPORT_H

#include <stdint.h>
#include <stdio.h>

#include "bwt/task.h"

/* Writes one line per sequence b of batch (sequences first_index.. of the stream `seed`, as
 * bwt_task_sample_at(task, seed, first_index, batch) draws them):
 *   {"index": first_index+b, "seed": "<seed>", "stream": first_index+b, "task": name, "tokens": [T ints],
 *    "supervised": [{"pos", "target", "posterior": [K probabilities], "entropy_bits"}, ...]}
 * The seed is a decimal string (a 64-bit value does not fit a JSON double); the sequence is the
 * rng stream (seed, stream). Doubles are
 * printed with up to 17 significant digits, so they read back bit-exact. Continuous-input tasks
 * write "inputs" (T rows of input_dim numbers) instead of "tokens".
 * Fails with BWT_STATUS_ARG if the batch does not fit the task, BWT_STATUS_NOMEM, or
 * BWT_STATUS_IO if writing (including the final fflush) fails. */
bwt_status bwt_batch_write_jsonl(FILE *f, const bwt_task *task, const bwt_batch *batch,
                                 uint64_t seed, int first_index);

#endif
