/* bwt_model_capture: allocation of the requested capture points and dispatch to the architecture. */
#include <stdlib.h>
#include <string.h>

#include "bwt/kernels.h"
#include "model_internal.h"

/* The points' names, in bit order (bwt/capture.h). */
static const char *const point_names[] = {"embed", "normed_in", "queries", "keys", "values", "scores",
                                          "attention", "block_out", "final_norm", "scan_state", "router_probs", "expert"};
enum { N_POINTS = sizeof point_names / sizeof *point_names };
_Static_assert(N_POINTS == 12 && BWT_CAPTURE_ALL == (1u << N_POINTS) - 1,
               "one name per capture point");

/* Floats of a scan state per row: Di·Ns (Mamba's defaults where the config says 0), 0 without a scan. */
static int scan_state_size(const bwt_model_config *c) {
  if (!bwt_arch_has(c->arch, BWT_CAP_SSM)) return 0;
  return (c->ssm_expand ? c->ssm_expand : 2) * c->d_model * (c->ssm_state ? c->ssm_state : 16);
}

unsigned bwt_model_capture_points(const bwt_model *m) {
  const model_impl *impl = m->impl;
  unsigned moe = BWT_CAPTURE_ROUTER_PROBS | BWT_CAPTURE_EXPERT;
  unsigned points = bwt_model_has(m, BWT_CAP_CAPTURE) && impl->ops->capture ? impl->ops->capture_points : 0;
  return m->cfg.experts > 0 ? points : points & ~moe;
}

bwt_status bwt_model_capture(bwt_model *m, const bwt_batch *batch, const bwt_forward_options *opt, unsigned points,
                             bwt_capture *cap, const float **logits) {
  memset(cap, 0, sizeof *cap);
  const model_impl *impl = m->impl;
  unsigned avail = bwt_model_capture_points(m);
  if (!avail)
    return bwt_fail(BWT_STATUS_ARG, "capture points need a transformer or Mamba (this model is %s)",
                    bwt_arch_name(m->cfg.arch));
  if (points & ~(unsigned)BWT_CAPTURE_ALL) return bwt_fail(BWT_STATUS_ARG, "unknown capture point in mask 0x%x", points);
  for (int i = 0; i < N_POINTS; i++)
    if (points & ~avail & (1u << i))
      return bwt_fail(BWT_STATUS_ARG, "a %s model has no '%s' capture point", bwt_arch_name(m->cfg.arch), point_names[i]);
  const float *out = NULL;
  BWT_TRY(bwt_model_forward_with(m, batch, opt, &out));
  if (logits) *logits = out;
  int L = m->cfg.n_layers, C = m->cfg.d_model, NH = m->cfg.n_heads, S = scan_state_size(&m->cfg);
  int E = m->cfg.experts, k = E > 0 ? m->cfg.expert_top_k : 0;
  *cap = (bwt_capture){.points = points, .L = L, .B = batch->B, .T = batch->T, .n_sup = batch->n_sup,
                       .C = C, .NH = NH, .S = S, .E = E, .top_k = k};
  size_t M = (size_t)batch->B * batch->n_sup, N = (size_t)batch->B * batch->T;
  size_t att = (size_t)L * batch->B * NH * batch->n_sup * batch->T;
  struct {
    unsigned point;
    float **dst;
    size_t n;
  } want[] = {
      {BWT_CAPTURE_EMBED, &cap->embed, M * C},           {BWT_CAPTURE_NORMED_IN, &cap->normed_in, L * M * C},
      {BWT_CAPTURE_QUERIES, &cap->queries, L * M * C},   {BWT_CAPTURE_KEYS, &cap->keys, L * N * C},
      {BWT_CAPTURE_VALUES, &cap->values, L * N * C},     {BWT_CAPTURE_SCORES, &cap->scores, att},
      {BWT_CAPTURE_ATTENTION, &cap->attention, att},     {BWT_CAPTURE_BLOCK_OUT, &cap->block_out, L * M * C},
      {BWT_CAPTURE_FINAL_NORM, &cap->final_norm, M * C}, {BWT_CAPTURE_SCAN_STATE, &cap->scan_state, L * M * S},
      {BWT_CAPTURE_ROUTER_PROBS, &cap->router_probs, L * M * E}, {BWT_CAPTURE_EXPERT, &cap->expert, L * M * k},
  };
  for (size_t i = 0; i < sizeof want / sizeof *want; i++)
    if (points & want[i].point) {
      *want[i].dst = bwt_buffer_alloc(want[i].n, "capture point");
      if (!*want[i].dst) return BWT_STATUS_NOMEM;
    }
  return impl->ops->capture(m, batch, cap);
}

void bwt_capture_free(bwt_capture *cap) {
  float **all[] = {&cap->embed, &cap->normed_in, &cap->queries, &cap->keys, &cap->values,
                   &cap->scores, &cap->attention, &cap->block_out, &cap->final_norm, &cap->scan_state,
                   &cap->router_probs, &cap->expert};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) {
    bwt_buffer_free(*all[i]);
    *all[i] = NULL;
  }
  cap->points = 0;
}

bwt_status bwt_model_backward_traced(bwt_model *m, const bwt_batch *batch, const float *dlogits, int layer,
                                     bwt_attention_trace *tr) {
  memset(tr, 0, sizeof *tr);
  const bwt_model_config *c = &m->cfg;
  if (!bwt_model_has(m, BWT_CAP_TRACE))
    return bwt_fail(BWT_STATUS_ARG, "attention traces need a transformer (this model is %s)", bwt_arch_name(c->arch));
  if (layer < 0 || layer >= c->n_layers)
    return bwt_fail(BWT_STATUS_ARG, "no block %d to trace (the model has %d)", layer, c->n_layers);
  if (model_skip_attn(m, layer)) return bwt_fail(BWT_STATUS_ARG, "block %d's attention is switched off", layer);
  int last = layer + 1 == c->n_layers, nq = last ? batch->n_sup : batch->T;
  *tr = (bwt_attention_trace){layer, batch->B, batch->T, c->d_model, c->n_heads, nq, last ? batch->sup_pos : NULL,
                              NULL, NULL, NULL, NULL, NULL};
  size_t rows = (size_t)batch->B * nq * c->d_model, NC = (size_t)batch->B * batch->T * c->d_model;
  size_t att = (size_t)batch->B * c->n_heads * nq * batch->T;
  tr->u = bwt_buffer_alloc(rows, "attention trace");
  tr->att = bwt_buffer_alloc(att, "attention trace");
  tr->dscore = bwt_buffer_alloc(att, "attention trace");
  tr->v = bwt_buffer_alloc(NC, "attention trace");
  tr->dv = bwt_buffer_alloc(NC, "attention trace");
  if (!tr->u || !tr->att || !tr->dscore || !tr->v || !tr->dv) return BWT_STATUS_NOMEM;
  return ((model_impl *)m->impl)->ops->backward(m, batch, dlogits, tr);
}

void bwt_attention_trace_free(bwt_attention_trace *tr) {
  bwt_buffer_free(tr->u);
  bwt_buffer_free(tr->att);
  bwt_buffer_free(tr->dscore);
  bwt_buffer_free(tr->v);
  bwt_buffer_free(tr->dv);
  memset(tr, 0, sizeof *tr);
}
