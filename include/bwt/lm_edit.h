/* Edits: the language-model forward pass (bwt/lm.h) with callbacks that change an activation in
 * place at a capture point, before the forward pass reads it further — interventions (ablating a
 * direction of the values, patching the residual stream) as a C caller writes them.
 *
 * An edit names a point pattern (capture names, '*' a wildcard: "blocks.5.attn.hook_v") and a
 * callback that gets the live buffer with its shape (batch dropped, as bwt_lm_capture: hook_v is
 * (T,NKV,hs), the value-cache rows of the new positions, so an edit there changes what every later
 * query of the layer reads, the cache included). Points computed aside for the observer only —
 * ln1/ln2/ln_final.hook_normalized, attn.hook_attn_scores, attn.hook_pattern — cannot be edited
 * (an error naming the point); every other point can. Captured points hold the edited values.
 * bwt_lm_forward (no hooks) is untouched by any of this.
 *
 * Letters: T positions, NKV key/value heads, hs head size. */
#ifndef BWT_LM_EDIT_H
#define BWT_LM_EDIT_H

#include <stdint.h>

#include "bwt/lm.h"

/* Changes data (shape(ndim), row-major) in place; returns 0, or non-zero to stop the forward pass
 * with an error naming the point. name is the point's full name (a pattern may match several). */
typedef int (*bwt_lm_edit_fn)(void *ctx, const char *name, float *data, int ndim, const int64_t *shape);

typedef struct {
  const char *point; /* a point name or pattern */
  bwt_lm_edit_fn fn;
  void *ctx;
} bwt_lm_edit;

/* As bwt_lm_capture_run (resets the cache, runs tokens(T) from position 0, keeps the points matching
 * patterns(n_patterns) into cap, logits (T,V) if not NULL), with edits(n_edits) applied, in order,
 * at every point each matches as the forward reaches it. cap may be NULL when n_patterns is 0.
 * Fails, naming it, for an edit or capture pattern that matches nothing and for an edit of a point
 * that cannot be edited. Free cap with bwt_lm_capture_free, also after a failure. */
bwt_status bwt_lm_edit_run(bwt_lm *lm, const int32_t *tokens, int T, const bwt_lm_edit *edits, int n_edits,
                           const char *const *patterns, int n_patterns, bwt_lm_capture *cap, float *logits);

#endif
