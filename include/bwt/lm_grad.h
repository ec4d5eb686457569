/* Gradients through a Hugging Face language model (bwt/lm.h): an fp32 backward of the forward pass
 * of one sequence, for the gradient-dynamics instruments (SPEC.md §6, docs/lm.md "Gradients").
 * No weight is updated.
 *
 * bwt_lm_grad_forward runs tokens(T) from position 0 with every capture point kept (the saved
 * activations, g->acts, named as in bwt/lm.h) and the logits; bwt_lm_grad_backward takes an upstream
 * ∂L/∂logits and walks the blocks backward; bwt_lm_grad_xent does both for the mean cross-entropy
 * of next-token targets. Then, per layer l and head (letters of bwt/lm.h):
 *   dz[l]       (T,NH,hs)  u = ∂L/∂hook_z, the head outputs before the o projection
 *   dpattern[l] (NH,T,T)   ∂L/∂hook_pattern, u_iᵀ v_j (0 where masked)
 *   dscores[l]  (NH,T,T)   ∂L/∂hook_attn_scores (the scaled scores; 0 where masked)
 *   dq[l]       (T,NH,hs)  ∂L/∂hook_q, dk[l], dv[l] (T,NKV,hs) ∂L/∂hook_k, ∂L/∂hook_v (before RoPE; a
 *                          key/value head's gradient sums over the query heads of its group)
 *   dresid[l]   (T,C)      ∂L/∂blocks.{l}.hook_resid_pre; dresid[L] the gradient of the last block's
 *                          resid_post (the final norm's input); dresid[0] is also ∂L/∂hook_embed
 *                          (and ∂L/∂hook_pos_embed)
 *   dWq[l] (NH·hs, C), dWk[l], dWv[l] (NKV·hs, C), dWo[l] (C, NH·hs): the projections' weight
 *                          gradients in torch.nn.Linear's (out, in) layout whatever the checkpoint's
 *                          (GPT-2's Conv1D (in, out) transposed; fused q/k/v split as the forward
 *                          splits it: GPT-2's q|k|v blocks, NeoX's per-head triples); row h·hs + d
 *                          of dWq is query head h's channel d.
 * Memory: the saved activations, about L·(T·(12C + 4F + 3·NH·hs) + 2·NH·T²) + T·V floats, and as
 * much again for the gradients plus 4 projection matrices per layer: fine for sequences of a few
 * hundred tokens on small models. A model converted layer by layer (bwt_lm_config.converted_bytes
 * over 1 GiB of F16/BF16 weights) is refused. Deterministic for a fixed thread count. */
#ifndef BWT_LM_GRAD_H
#define BWT_LM_GRAD_H

#include <stdint.h>

#include "bwt/lm.h"

typedef struct {
  int T, L;
  double loss;     /* bwt_lm_grad_xent's mean cross-entropy in nats (NAN otherwise) */
  int n_sup;       /* positions with a target */
  bwt_lm_capture acts; /* every capture point of the forward ("*") */
  float *logits;   /* (T,V) */
  float *dlogits;  /* (T,V) the upstream gradient the backward ran from */
  float **dz, **dpattern, **dscores, **dq, **dk, **dv; /* (L) each, shapes above */
  float **dresid;  /* (L+1) (T,C) */
  float **dWq, **dWk, **dWv, **dWo; /* (L) each */
} bwt_lm_grad;

/* The forward of tokens(T) with the activations saved (resets the model's cache). Free g with
 * bwt_lm_grad_free, also after a failure. */
bwt_status bwt_lm_grad_forward(bwt_lm *lm, const int32_t *tokens, int T, bwt_lm_grad *g);
/* The backward from dlogits (T,V) after bwt_lm_grad_forward on the same model; overwrites the
 * gradients of an earlier backward. */
bwt_status bwt_lm_grad_backward(bwt_lm *lm, bwt_lm_grad *g, const float *dlogits);
/* Forward and backward of L = mean over positions t with targets[t] >= 0 of −log softmax(logits_t)
 * [targets[t]] (targets (T), −1: unsupervised; a target outside 0..V−1 or none at all fails). */
bwt_status bwt_lm_grad_xent(bwt_lm *lm, const int32_t *tokens, int T, const int32_t *targets, bwt_lm_grad *g);
void bwt_lm_grad_free(bwt_lm_grad *g);
/* The saved activation named name (NULL when the model has no such point). */
const bwt_lm_activation *bwt_lm_grad_act(const bwt_lm_grad *g, const char *name);

#endif
