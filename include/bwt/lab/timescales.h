/* Two timescales (issue 6): how fast a transformer's routing (W_Q, W_K) learns beside its content
 * (W_V, W_O), read from a run's training log. bwt train logs, at every log step and for every block,
 * the gradient norm (after clipping) and the relative update |ΔW|/|W| of the four attention matrices
 * (metrics.jsonl, "attention"). */
#ifndef BWT_LAB_TIMESCALES_H
#define BWT_LAB_TIMESCALES_H

#include "bwt/status.h"

enum { BWT_TS_Q, BWT_TS_K, BWT_TS_V, BWT_TS_O, BWT_TS_PARTS };

typedef struct {
  int L, n;           /* blocks, logged steps */
  int steps;          /* the run's total steps */
  int *step;          /* (n) */
  double *grad;       /* (n, L, 4) gradient norms of W_Q, W_K, W_V, W_O */
  double *update;     /* (n, L, 4) |ΔW|/|W| */
  /* Per block, medians over the logged steps of the early phase (the first 10% of the run, at least
   * the first logged step) and of the whole run. */
  double *qv_early, *qv_all;         /* (L) |∇W_Q| / |∇W_V| */
  double *kv_early, *kv_all;         /* (L) |∇W_K| / |∇W_V| */
  double *upd_qv_early, *upd_qv_all; /* (L) update rate of W_Q / that of W_V */
} bwt_timescales;

/* Reads run_dir/metrics.jsonl (a transformer run written by this bwt). */
bwt_status bwt_timescales_read(const char *run_dir, int total_steps, bwt_timescales *out);
void bwt_timescales_free(bwt_timescales *t);
char *bwt_timescales_to_json(const bwt_timescales *t);
/* |∇W_Q|/|∇W_V| per block against the step, as dir/timescales.{png,svg}. */
bwt_status bwt_timescales_figure(const bwt_timescales *t, const char *dir);

#endif
