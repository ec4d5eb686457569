/* Evaluation results as files other tools read: JSON (summary + per position) and CSV (one row per
 * supervised position). Both are written atomically. */
#ifndef BWT_REPORT_H
#define BWT_REPORT_H

#include <cjson/cJSON.h>

#include "bwt/eval.h"

/* A cJSON object {"n_seqs", "seed", "overall": {...}, "entropy_mae_curves", "positions": [...]}.
 * NaN (accuracy without point-mass rows) becomes null. Caller deletes. */
cJSON *bwt_eval_to_json(const bwt_eval_result *r);
/* One metrics object (the fields of bwt_metrics). */
cJSON *bwt_metrics_to_json(const bwt_metrics *m);
bwt_status bwt_eval_write_json(const char *path, const bwt_eval_result *r);
/* Columns: position,n,entropy_mae,entropy_mae_renorm,model_entropy,bayes_entropy,kl_bits,tv,
 * ce_bits,excess_ce_bits,n_point_mass,accuracy. */
bwt_status bwt_eval_write_csv(const char *path, const bwt_eval_result *r);

/* Building JSON that is whole or nothing: add item to obj under key (append it to the array arr);
 * if item is NULL or the addition fails, item is deleted and 0 returned. The *_to_json builders
 * return NULL, never a tree with a field missing, when an allocation fails. */
int bwt_json_add(cJSON *obj, const char *key, cJSON *item);
int bwt_json_push(cJSON *arr, cJSON *item);

#endif
