/* Capture and edits: the forward pass with hooks that keep the activations whose names match the
 * caller's patterns ('*' matches any run of characters), after first handing the points that match
 * an edit's pattern to its callback, which may change them in place (bwt/lm_edit.h). */
#include <stdlib.h>
#include <string.h>

#include "bwt/lm_edit.h"
#include "lm_internal.h"

struct lm_hooks {
  const char *const *patterns;
  int n_patterns;
  char *matched; /* (n_patterns) a pattern matched some point */
  bwt_lm_capture *cap;
  const bwt_lm_edit *edits;
  int n_edits;
  char *edit_matched; /* (n_edits) an edit's pattern matched some point */
};

int bwt_lm_point_matches(const char *p, const char *s) {
  for (; *p; p++, s++) {
    if (*p == '*') {
      for (const char *t = s;; t++) {
        if (bwt_lm_point_matches(p + 1, t)) return 1;
        if (!*t) return 0;
      }
    }
    if (*p != *s) return 0;
  }
  return *s == '\0';
}

int lm_hooks_want(lm_hooks *h, const char *name) {
  int any = 0;
  for (int i = 0; i < h->n_patterns; i++)
    if (bwt_lm_point_matches(h->patterns[i], name)) any = h->matched[i] = 1;
  for (int i = 0; i < h->n_edits; i++)
    if (bwt_lm_point_matches(h->edits[i].point, name)) any = h->edit_matched[i] = 1;
  return any;
}

bwt_status lm_hooks_put(lm_hooks *h, const char *name, float *data, int editable, int ndim, int64_t d0,
                        int64_t d1, int64_t d2) {
  int64_t shape[3] = {d0, ndim > 1 ? d1 : 0, ndim > 2 ? d2 : 0};
  for (int i = 0; i < h->n_edits; i++) {
    if (!bwt_lm_point_matches(h->edits[i].point, name)) continue;
    if (!editable)
      return bwt_fail(BWT_STATUS_ARG, "point '%s' cannot be edited: the forward pass does not read it back (see docs/lm.md)", name);
    if (h->edits[i].fn(h->edits[i].ctx, name, data, ndim, shape) != 0)
      return bwt_fail(BWT_STATUS_ARG, "the edit at '%s' failed", name);
  }
  int keep = 0;
  for (int i = 0; i < h->n_patterns && !keep; i++) keep = bwt_lm_point_matches(h->patterns[i], name);
  if (!keep) return BWT_STATUS_OK;
  bwt_lm_capture *cap = h->cap;
  bwt_lm_activation *acts = bwt_realloc(cap->acts, (size_t)(cap->n + 1) * sizeof *acts, "capture list");
  if (!acts) return BWT_STATUS_NOMEM;
  cap->acts = acts;
  bwt_lm_activation *a = &acts[cap->n];
  memset(a, 0, sizeof *a);
  size_t n = (size_t)d0 * (ndim > 1 ? (size_t)d1 : 1) * (ndim > 2 ? (size_t)d2 : 1);
  a->data = bwt_malloc(n * sizeof(float), name);
  if (!a->data) return BWT_STATUS_NOMEM;
  strncpy(a->name, name, sizeof a->name - 1);
  a->ndim = ndim;
  a->shape[0] = d0;
  a->shape[1] = ndim > 1 ? d1 : 0;
  a->shape[2] = ndim > 2 ? d2 : 0;
  bwt_copy(a->data, data, n);
  cap->n++;
  return BWT_STATUS_OK;
}

bwt_status bwt_lm_edit_run(bwt_lm *lm, const int32_t *tokens, int T, const bwt_lm_edit *edits, int n_edits,
                           const char *const *patterns, int n_patterns, bwt_lm_capture *cap, float *logits) {
  bwt_lm_capture none;
  if (!cap) cap = &none;
  memset(cap, 0, sizeof *cap);
  if (T < 1) return bwt_fail(BWT_STATUS_ARG, "capture needs at least one token");
  if (n_patterns < 0 || n_edits < 0 || (n_patterns > 0 && cap == &none))
    return bwt_fail(BWT_STATUS_ARG, "capture patterns need a capture to fill");
  for (int i = 0; i < n_edits; i++)
    if (!edits[i].point || !edits[i].fn) return bwt_fail(BWT_STATUS_ARG, "edit %d has no point or no callback", i);
  lm_hooks h = {patterns, n_patterns, bwt_calloc((size_t)n_patterns + 1, 1, "capture patterns"), cap,
                edits, n_edits, bwt_calloc((size_t)n_edits + 1, 1, "edit patterns")};
  if (!h.matched || !h.edit_matched) {
    free(h.matched);
    free(h.edit_matched);
    return BWT_STATUS_NOMEM;
  }
  bwt_lm_reset(lm);
  bwt_status s = lm_forward(lm, tokens, T, logits, &h);
  for (int i = 0; s == BWT_STATUS_OK && i < n_patterns; i++)
    if (!h.matched[i])
      s = bwt_fail(BWT_STATUS_ARG, "capture point '%s' matches nothing (names as blocks.0.attn.hook_k, logits; see docs/lm.md)", patterns[i]);
  for (int i = 0; s == BWT_STATUS_OK && i < n_edits; i++)
    if (!h.edit_matched[i])
      s = bwt_fail(BWT_STATUS_ARG, "edit point '%s' matches nothing (names as blocks.0.attn.hook_v; see docs/lm.md)", edits[i].point);
  free(h.matched);
  free(h.edit_matched);
  if (cap == &none) bwt_lm_capture_free(&none);
  return s;
}

bwt_status bwt_lm_capture_run(bwt_lm *lm, const int32_t *tokens, int T, const char *const *patterns,
                              int n_patterns, bwt_lm_capture *cap, float *logits) {
  return bwt_lm_edit_run(lm, tokens, T, NULL, 0, patterns, n_patterns, cap, logits);
}

void bwt_lm_capture_free(bwt_lm_capture *cap) {
  for (int i = 0; cap && i < cap->n; i++) free(cap->acts[i].data);
  if (cap) free(cap->acts);
  if (cap) memset(cap, 0, sizeof *cap);
}
