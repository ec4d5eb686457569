/* Gradient dynamics of attention (SPEC.md §6, Paper II). For a head with scores s_ij, weights
 * α_ij = softmax_j(s_ij), values v_j, output o_i = Σ_j α_ij v_j and upstream gradient u_i = ∂L/∂o_i:
 *   advantage-based routing law      ∂L/∂s_ij = α_ij (b_ij − Σ_k α_ik b_ik),   b_ij = u_iᵀ v_j;
 *   responsibility-weighted values   ∂L/∂v_j  = Σ_i α_ij u_i.
 * bwt_model_backward_traced (bwt/capture.h) exposes u, α, v and the gradients the real backward pass computed for
 * one block; the bwt_dynamics_* functions evaluate the two formulas from u, α and v and compare. */
#ifndef BWT_LAB_DYNAMICS_H
#define BWT_LAB_DYNAMICS_H

#include <stdint.h>

#include "bwt/capture.h"
#include "bwt/task.h"

/* The formulas for head h of sequence b from the trace's u, α and v:
 * bmat (nq,T) b_ij = u_iᵀv_j (0 for the future), adv (nq,T) α_ij (b_ij − Σ_k α_ik b_ik), and
 * resp (T,hs) Σ_i α_ij u_i. Any output may be NULL. Computed in double, stored as float. */
void bwt_dynamics_head(const bwt_attention_trace *t, int b, int h, float *bmat, float *adv, float *resp);

typedef struct {
  double score_max_abs, score_scale; /* max |∂L/∂s − advantage| and max |∂L/∂s| */
  double value_max_abs, value_scale; /* max |∂L/∂v − Σ α u| and max |∂L/∂v| */
} bwt_dynamics_check;

/* Compares the trace's kernel gradients with the formulas over every sequence and head. */
bwt_status bwt_dynamics_check_trace(const bwt_attention_trace *t, bwt_dynamics_check *out);

/* On n_batches real batches of the task (stream seed, batch sequences each): forward, the
 * cross-entropy gradient against the sampled targets, and a traced backward for every block;
 * per_layer (n_layers) gets each block's largest deviations. The forward options opt (NULL: none)
 * apply; a block whose attention they switch off is left out. */
bwt_status bwt_dynamics_verify(bwt_model *model, const bwt_task *task, const bwt_forward_options *opt,
                               uint64_t seed, int n_batches, int batch, bwt_dynamics_check *per_layer);

#endif
