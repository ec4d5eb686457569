/* Per-block attention gradient norms and update rates for the training log (attention_log.c). */
#ifndef BWT_ATTENTION_LOG_H
#define BWT_ATTENTION_LOG_H

#include <cjson/cJSON.h>

#include "bwt/model.h"

/* Floats attention_log_save needs (0 for models without attention). */
size_t attention_log_floats(const bwt_model *m);
/* Copies the attention weights W_Q, W_K, W_V, W_O of every block into prev, before a step. */
void attention_log_save(const bwt_model *m, float *prev);
/* After the step: per block {"layer", "grad": {q,k,v,o} gradient norms (after clipping), "update":
 * {q,k,v,o} |ΔW|/|W|}; NULL if an allocation failed. */
cJSON *attention_log_json(const bwt_model *m, const float *prev);

#endif
