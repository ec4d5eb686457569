/* Capture: the forward pass with hooks that keep the activations whose names match the caller's
 * patterns ('*' matches any run of characters). */
#include <stdlib.h>
#include <string.h>

#include "lm_internal.h"

struct lm_hooks {
  const char *const *patterns;
  int n_patterns;
  char *matched; /* (n_patterns) a pattern matched some point */
  bwt_lm_capture *cap;
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
  return any;
}

bwt_status lm_hooks_put(lm_hooks *h, const char *name, const float *data, int ndim, int64_t d0,
                        int64_t d1, int64_t d2) {
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

bwt_status bwt_lm_capture_run(bwt_lm *lm, const int32_t *tokens, int T, const char *const *patterns,
                              int n_patterns, bwt_lm_capture *cap, float *logits) {
  memset(cap, 0, sizeof *cap);
  if (T < 1) return bwt_fail(BWT_STATUS_ARG, "capture needs at least one token");
  lm_hooks h = {patterns, n_patterns, bwt_calloc((size_t)n_patterns + 1, 1, "capture patterns"), cap};
  if (!h.matched) return BWT_STATUS_NOMEM;
  bwt_lm_reset(lm);
  bwt_status s = lm_forward(lm, tokens, T, logits, &h);
  for (int i = 0; s == BWT_STATUS_OK && i < n_patterns; i++)
    if (!h.matched[i])
      s = bwt_fail(BWT_STATUS_ARG, "capture point '%s' matches nothing (names as blocks.0.attn.hook_k, logits; see docs/lm.md)", patterns[i]);
  free(h.matched);
  return s;
}

void bwt_lm_capture_free(bwt_lm_capture *cap) {
  for (int i = 0; cap && i < cap->n; i++) free(cap->acts[i].data);
  if (cap) free(cap->acts);
  if (cap) memset(cap, 0, sizeof *cap);
}
