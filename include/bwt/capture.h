/* Capture points: the transformer's internal activations on a batch, for the geometry diagnostics
 * (SPEC.md §5). The caller names the points it needs; bwt_model_capture runs the ordinary forward
 * pass (the logits are bit-identical to bwt_model_forward's) and copies out only those. Nothing is
 * kept between calls.
 *
 * Row-wise points are taken at the supervised rows (M = B·n_sup, row b·n_sup + j for position
 * sup_pos[b·n_sup + j]), the rows the readout and the exact posteriors refer to; keys and values at
 * every position, since every supervised query attends over them. A block whose attention branch is
 * switched off (bwt_forward_options.skip_attn) has NAN in its normed input, queries, keys, values, scores and weights.
 * The traced backward (bottom) records one block's attention for the gradient-dynamics checks
 * (bwt/lab/dynamics.h).
 * Letters: L layers, B batch, T positions, n = n_sup, C width, NH heads (head h owns channels
 * [h·hs, (h+1)·hs)). */
#ifndef BWT_CAPTURE_H
#define BWT_CAPTURE_H

#include <stdint.h>

#include "bwt/model.h"

typedef enum {
  BWT_CAPTURE_EMBED = 1 << 0,      /* embed (M,C): token (or input projection) + position */
  BWT_CAPTURE_NORMED_IN = 1 << 1,  /* normed_in (L,M,C): each block's attention-norm output */
  BWT_CAPTURE_QUERIES = 1 << 2,    /* queries (L,M,C), with bias */
  BWT_CAPTURE_KEYS = 1 << 3,       /* keys (L,B,T,C), with bias */
  BWT_CAPTURE_VALUES = 1 << 4,     /* values (L,B,T,C), with bias */
  BWT_CAPTURE_SCORES = 1 << 5,     /* scores (L,B,NH,n,T): q·k/√hs, −inf for future positions */
  BWT_CAPTURE_ATTENTION = 1 << 6,  /* attention (L,B,NH,n,T): softmax weights (0 for the future),
                                      before any head mask */
  BWT_CAPTURE_BLOCK_OUT = 1 << 7,  /* block_out (L,M,C): the residual stream after each block */
  BWT_CAPTURE_FINAL_NORM = 1 << 8, /* final_norm (M,C): the final norm's output, the readout input */
  BWT_CAPTURE_SCAN_STATE = 1 << 9, /* scan_state (L,M,S): Mamba's selective-scan state h_t after each
                                      supervised row, S = Di·Ns floats, channel d's states at [d·Ns, (d+1)·Ns) */
  /* A mixture of experts' (cfg.experts > 0; docs/moe.md), NAN where the block's MLP is switched off: */
  BWT_CAPTURE_ROUTER_PROBS = 1 << 10, /* router_probs (L,M,E): softmax of each block's router logits
                                         (blocks.l.mlp.hook_router_probs) */
  BWT_CAPTURE_EXPERT = 1 << 11,       /* expert (L,M,k): the chosen experts, best first, as floats
                                         0..E−1 (blocks.l.mlp.hook_expert) */
  BWT_CAPTURE_ALL = (1 << 12) - 1
} bwt_capture_point;

typedef struct {
  unsigned points; /* what was captured (the others are NULL) */
  int L, B, T, n_sup, C, NH, S;
  int E, top_k; /* experts and choices per row (0 without experts) */
  float *embed, *normed_in, *queries, *keys, *values, *scores, *attention, *block_out, *final_norm, *scan_state;
  float *router_probs, *expert;
} bwt_capture;

/* The points model's architecture provides (0: none): the transformer's are all but the scan state
 * (the router's two only with experts); Mamba's the embeddings, block outputs, final norm and scan
 * state. */
unsigned bwt_model_capture_points(const bwt_model *model);

/* Runs the forward pass on batch and fills *cap with the requested points
 * (a mask of bwt_capture_point; one the architecture lacks is an error naming it), with the forward
 * options opt (NULL: none). *logits, if not NULL, gets the forward's logits as
 * bwt_model_forward would. Free with bwt_capture_free, also after a failure. */
bwt_status bwt_model_capture(bwt_model *model, const bwt_batch *batch, const bwt_forward_options *opt,
                             unsigned points, bwt_capture *cap, const float **logits);
void bwt_capture_free(bwt_capture *cap);

/* One block's attention during a backward pass. Query rows: nq per sequence, every position
 * (nq = T) except in the last block, whose queries are the supervised rows (nq = n_sup, positions
 * qpos). Head h owns channels [h·hs, (h+1)·hs). */
typedef struct {
  int layer, B, T, C, NH, nq;
  const int32_t *qpos; /* (B,nq) query positions (NULL: row j is position j); the batch's */
  float *u;            /* (B,nq,C) ∂L/∂o: the gradient reaching the attention output, head mask applied */
  float *att;          /* (B,NH,nq,T) α (0 for the future) */
  float *v;            /* (B,T,C) values */
  float *dscore;       /* (B,NH,nq,T) ∂L/∂s from the backward kernel */
  float *dv;           /* (B,T,C) ∂L/∂v from the backward kernel */
} bwt_attention_trace;

/* Backward of the forward just run on batch (transformer models), as bwt_model_backward (gradients
 * accumulate into model->grads), recording block `layer`'s attention into *trace. Free with
 * bwt_attention_trace_free, also after a failure. */
bwt_status bwt_model_backward_traced(bwt_model *model, const bwt_batch *batch, const float *dlogits,
                                     int layer, bwt_attention_trace *trace);
void bwt_attention_trace_free(bwt_attention_trace *trace);

#endif
