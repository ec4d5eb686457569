/* The JSON builders behind bwt/report.h, for the library's own writers and the CLI: internal,
 * since they hand out cJSON types, which public headers do not expose. */
#ifndef BWT_IO_REPORT_JSON_H
#define BWT_IO_REPORT_JSON_H

#include <cjson/cJSON.h>

#include "bwt/eval.h"

/* A cJSON object {"n_seqs", "seed", "overall": {...}, "entropy_mae_curves", "positions": [...]}.
 * NaN (accuracy without point-mass rows) becomes null. Caller deletes. */
cJSON *bwt_eval_to_json(const bwt_eval_result *r);
/* One metrics object (the fields of bwt_metrics). */
cJSON *bwt_metrics_to_json(const bwt_metrics *m);
/* Building JSON that is whole or nothing: add item to obj under key (append it to the array arr);
 * if item is NULL or the addition fails, item is deleted and 0 returned. The *_to_json builders
 * return NULL, never a tree with a field missing, when an allocation fails. */
int bwt_json_add(cJSON *obj, const char *key, cJSON *item);
int bwt_json_push(cJSON *arr, cJSON *item);

#endif
