/* Evaluation results as files other tools read: JSON (summary + per position) and CSV (one row per
 * supervised position). Both are written atomically. The cJSON builders behind them are internal
 * (src/io/report_json.h). */
#ifndef BWT_REPORT_H
#define BWT_REPORT_H

#include "bwt/eval.h"

bwt_status bwt_eval_write_json(const char *path, const bwt_eval_result *r);
/* Columns: position,n,entropy_mae,entropy_mae_renorm,model_entropy,bayes_entropy,kl_bits,tv,
 * ce_bits,excess_ce_bits,n_point_mass,accuracy. */
bwt_status bwt_eval_write_csv(const char *path, const bwt_eval_result *r);

#endif
