/* Wind-tunnel sequences as JSON lines, so other frameworks can train and test on them. */
#ifndef BWT_SAMPLE_EXPORT_H
#define BWT_SAMPLE_EXPORT_H

#include <stdint.h>
#include <stdio.h>

#include "bwt/task.h"

/* Writes one line per sequence of batch:
 *   {"index": first_index+b, "seed": "<batch seed>", "task": name, "tokens": [...],
 *    "supervised": [{"pos", "target", "entropy_bits", "posterior": [K probabilities]}, ...]}
 * Continuous-input tasks write "inputs" (T rows of input_dim numbers) instead of "tokens". */
bwt_status bwt_batch_write_jsonl(FILE *f, const bwt_task *task, const bwt_batch *batch,
                                 uint64_t seed, int first_index);

#endif
