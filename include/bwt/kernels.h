/* Ops: forward/backward pairs over flat float32 row-major arrays.
 *
 * Letters: B batch, T time, C channels (model width), NH heads, hs = C/NH head size, IC/OC input and
 * output channels, N rows, K classes, n element count.
 *
 * Conventions: outputs first; a backward *accumulates* (+=) into every gradient it is given, and any
 * gradient pointer may be NULL when that gradient is not needed; zeroing is the caller's job.
 * Linear weights are stored (OC, IC) like torch.nn.Linear. Every kernel is deterministic for a fixed
 * thread count: reductions run in a fixed order. The naive reference versions (suffix _naive) are
 * the tests' oracle for the fast ones. */
#ifndef BWT_KERNELS_H
#define BWT_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "bwt/status.h"

/* out(N,OC) = inp(N,IC) · weight(OC,IC)ᵀ + bias(OC); bias may be NULL. */
void bwt_matmul_forward(float *out, const float *inp, const float *weight, const float *bias, int N,
                        int IC, int OC);
void bwt_matmul_forward_naive(float *out, const float *inp, const float *weight, const float *bias,
                              int N, int IC, int OC);
/* dinp(N,IC) += dout·weight; dweight(OC,IC) += doutᵀ·inp; dbias(OC) += Σ_rows dout. */
void bwt_matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                         const float *inp, const float *weight, int N, int IC, int OC);

/* out(B,T,C) = wte[tokens[b,t]] + wpe[row]; wte (V,C), wpe (maxT,C); wpe may be NULL (no positions).
 * row = t, or t + offset[b] for t >= from when offset (B) is given: the training's position jitter
 * shifts each sequence after its first `from` tokens. */
void bwt_embedding_forward(float *out, const int32_t *tokens, const float *wte, const float *wpe,
                           const int32_t *offset, int from, int B, int T, int C);
void bwt_embedding_backward(float *dwte, float *dwpe, const float *dout, const int32_t *tokens,
                            const int32_t *offset, int from, int B, int T, int C);

/* RMSNorm (eps 1e-5): out = inp / sqrt(mean(inp²) + eps) * weight; rstd(N) is saved. */
void bwt_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int N,
                         int C);
void bwt_rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                          const float *weight, const float *rstd, int N, int C);

/* LayerNorm (eps 1e-5): out = (inp - mean) * rstd * weight + bias; mean(N), rstd(N) are saved. */
void bwt_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                           const float *weight, const float *bias, int N, int C);
void bwt_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                            const float *inp, const float *weight, const float *mean,
                            const float *rstd, int N, int C);

/* GELU, exact erf form: x · Φ(x). */
void bwt_gelu_forward(float *out, const float *inp, size_t n);
void bwt_gelu_backward(float *dinp, const float *dout, const float *inp, size_t n);

/* Causal multi-head attention over already-projected k, v (B,T,C), head h owning channels
 * [h·hs, (h+1)·hs), scale 1/sqrt(hs). Queries: nq rows per sequence, q and out (B,nq,C), row j at
 * position qpos[b·nq + j] (qpos (B,nq), increasing in each sequence), or every position when qpos
 * is NULL (nq = T). att (B,NH,nq,T) saves the softmax weights α (row j uses columns 0..its
 * position; the rest are 0). head_mask(NH), if not NULL, multiplies head h's weights:
 * out[b,j,h] = mask[h] · Σ_s α[b,h,j,s] v[b,s,h]. The fast versions fail only for want of a few
 * KB of scratch (BWT_STATUS_NOMEM, before writing anything). */
bwt_status bwt_attention_forward(float *out, float *att, const float *q, const float *k,
                                 const float *v, const float *head_mask, int B, int T, int C,
                                 int NH, int nq, const int32_t *qpos);
/* The oracle, every position a query (nq = T). */
void bwt_attention_forward_naive(float *out, float *att, const float *q, const float *k,
                                 const float *v, const float *head_mask, int B, int T, int C,
                                 int NH);
/* Accumulates dq (B,nq,C), dk and dv (B,T,C) (any may be NULL) from dout (B,nq,C). dscore, if not
 * NULL, gets (B,NH,nq,T) the gradient of the scores s = q·k/sqrt(hs) (0 for the future): the
 * instrument of the gradient-dynamics checks (SPEC.md §6). */
bwt_status bwt_attention_backward(float *dq, float *dk, float *dv, const float *dout,
                                  const float *att, const float *q, const float *k, const float *v,
                                  const float *head_mask, int B, int T, int C, int NH, int nq,
                                  const int32_t *qpos, float *dscore);

/* The attention's scores s = q·k/sqrt(hs), for inspection: scores (B,NH,nq,T) from q (B,nq,C) at
 * positions qpos (B,nq) and k (B,T,C); −∞ for the future (s > the query's position). */
void bwt_attention_scores(float *scores, const float *q, const float *k, const int32_t *qpos, int B,
                          int T, int C, int NH, int nq);

/* LSTM recurrence over T steps of B rows, time-major (row t·B + b), hidden size H, gate order
 * i, f, g, o as torch.nn.LSTM. gates (T,B,4H) holds x_t W_ihᵀ + b_ih on entry and the activated
 * gates (i, f, g, o) on return; h and c (T,B,H) get the hidden and cell states; w_hh (4H,H),
 * b_hh (4H). */
void bwt_lstm_forward(float *h, float *c, float *gates, const float *w_hh, const float *b_hh, int T,
                      int B, int H);
/* Backward through time: dh (T,B,H) holds ∂L/∂h_t from above on entry (the recurrent paths are
 * added into it as it goes); dgates (T,B,4H) gets ∂L/∂a_t, the gradient of the gates'
 * pre-activations, from which the caller forms the weight, bias and input gradients. dc (B,H) is
 * scratch. */
void bwt_lstm_backward(float *dgates, float *dh, float *dc, const float *gates, const float *c,
                       const float *w_hh, int T, int B, int H);

/* Row softmax: probs(N,K) = softmax(logits(N,K)), computed stably. */
void bwt_softmax_forward(float *probs, const float *logits, int N, int K);
/* Mean cross-entropy in nats over N rows of logits(N,K) against hard targets(N) when soft is NULL,
 * else against soft targets soft(N,K): −Σ_k soft[k]·log softmax(logits)[k] (0·log 0 = 0). Log-sum-exp
 * and sums in double. */
double bwt_xent_loss(const float *logits, const int32_t *targets, const double *soft, int N, int K);
/* dlogits(N,K) += scale · (probs − y), y the one-hot target or the soft row. Use scale = 1/N for the
 * gradient of the mean loss. */
void bwt_xent_backward(float *dlogits, const float *probs, const int32_t *targets,
                       const double *soft, float scale, int N, int K);

/* The other objectives (bwt train --loss; src/kernels/cpu/losses.c). A row's target is the one-hot of
 * targets[n] when soft is NULL, else soft's row y. */
/* Mean over N rows of Σ_k (p_k − y_k)², p = probs (a softmax); NaN for an out-of-range target. */
double bwt_mse_loss(const float *probs, const int32_t *targets, const double *soft, int N, int K);
/* dlogits(N,K) += scale · ∂/∂logits of Σ_k (p_k − y_k)² per row, through the softmax. */
void bwt_mse_backward(float *dlogits, const float *probs, const int32_t *targets, const double *soft, float scale, int N, int K);
/* out[n] ~ probs' row n, drawn from the stream (seed, first_row + n): the draws of a row depend on
 * neither the batch split nor the threads. */
void bwt_sample_rows(int32_t *out, const float *probs, int N, int K, uint64_t seed, uint64_t first_row);
/* REINFORCE's rewards: reward[n] = y_n[a_n] (1 for the right answer of a hard target, else 0; the
 * exact posterior's probability of the answer for a soft one) and expected[n] = Σ_k p_k y_k, the
 * model's own expected reward of that row. */
void bwt_pg_rewards(double *reward, double *expected, const float *probs, const int32_t *actions, const int32_t *targets,
                    const double *soft, int N, int K);
/* dlogits(N,K) += scale · weights[n] · (p − onehot(actions[n])): the gradient of the surrogate
 * −Σ_n weights[n] log p_n[a_n] (rows of weight 0 get none). */
void bwt_pg_backward(float *dlogits, const float *probs, const int32_t *actions, const double *weights, float scale, int N, int K);

/* Mixture-of-experts routing (src/kernels/cpu/moe.c; docs/moe.md). N rows, E experts, k = 1 or 2
 * choices per row. From router logits (N,E): probs (N,E) = softmax(logits); expert (N,k) the k
 * largest logits in decreasing order (ties: the lower index first); gate (N,k) = probs at the choice
 * for k = 1 (Switch Transformer: the router gets a gradient), the softmax over the chosen logits for
 * k = 2 (Mixtral). */
void bwt_moe_route_forward(float *probs, int32_t *expert, float *gate, const float *logits, int N, int E, int k);
/* The Switch Transformer's load-balancing loss weight·E·Σ_e f_e·P_e: f_e the share of rows whose
 * first choice is e (no gradient), P_e the mean over rows of probs[:,e]. Returns it (summed in
 * double in a fixed order); coef (E), if not NULL, gets its gradient with respect to each probs[n,e],
 * weight·E·f_e/N, the same for every row. */
double bwt_moe_balance_loss(float *coef, const float *probs, const int32_t *expert, double weight, int N, int E, int k);
/* dlogits(N,E) += the gradient through the gates from dgate (N,k), plus, when coef (E) is not
 * NULL, that of Σ_n Σ_e coef[e]·probs[n,e] (the balance loss). */
void bwt_moe_route_backward(float *dlogits, const float *dgate, const float *coef, const float *probs,
                            const int32_t *expert, const float *gate, int N, int E, int k);
/* The experts' outputs back into the rows: out row slot[i]/k += gate[slot[i]] · y row i, for n rows
 * y (n,C) of one expert (slot[i] = row·k + choice; one expert's rows are distinct). */
void bwt_moe_combine_forward(float *out, const float *y, const float *gate, const int32_t *slot, int k, int n, int C);
/* Its backward: dy row i += gate[slot[i]] · dout row slot[i]/k; dgate[slot[i]] += dout row · y row i. */
void bwt_moe_combine_backward(float *dy, float *dgate, const float *dout, const float *y, const float *gate,
                              const int32_t *slot, int k, int n, int C);

/* ---- memory: the only code that allocates, moves or writes parameter, gradient, optimiser and
 * activation floats outside the ops above (src/kernels/cpu/memory.c). A backend owns its buffers. */

/* A buffer of n floats, zeroed and 64-byte aligned; NULL (out of memory recorded, naming `what`)
 * on failure. Counted by the fault injection as one allocation (src/core/fault.h). */
float *bwt_buffer_alloc(size_t n, const char *what);
/* Releases a buffer from bwt_buffer_alloc (NULL: nothing). */
void bwt_buffer_free(float *x);

/* x(n) = value; bwt_zero is value 0. In parallel for large n. */
void bwt_fill(float *x, float value, size_t n);
void bwt_zero(float *x, size_t n);
/* dst(n) = src(n); the two do not overlap. */
void bwt_copy(float *dst, const float *src, size_t n);

/* out(N,C) row i = src row idx[i], or zeros where idx[i] < 0 (src has any number of rows). */
void bwt_gather_rows(float *out, const float *src, const int32_t *idx, int N, int C);
/* out(N,C) row i += src row idx[i] (nothing where idx[i] < 0). */
void bwt_gather_rows_add(float *out, const float *src, const int32_t *idx, int N, int C);
/* The backward of the gathers: dst row idx[i] += src(N,C) row i, for i in increasing order (an
 * index may repeat: its rows add up in that order for any thread count); idx[i] < 0 is skipped. */
void bwt_scatter_add_rows(float *dst, const float *src, const int32_t *idx, int N, int C);
void bwt_scatter_add_rows_naive(float *dst, const float *src, const int32_t *idx, int N, int C);

/* out(B,A,C) = inp(A,B,C) with the two leading axes swapped: out[b,a,:] = inp[a,b,:] (batch-major
 * (B,T,C) to time-major (T,B,C) with A = B, B = T, and back). out and inp do not overlap. */
void bwt_transpose(float *out, const float *inp, int A, int B, int C);
void bwt_transpose_naive(float *out, const float *inp, int A, int B, int C);

/* ---- element-wise (src/kernels/cpu/elementwise.c) ---- */

/* y(n) += x(n). */
void bwt_add_inplace(float *y, const float *x, size_t n);
/* x(n) *= s. */
void bwt_scale(float *x, float s, size_t n);
/* out(N,C) = inp(N,C) with head h's channels [h·hs, (h+1)·hs) times head_mask[h] (NH heads); a
 * copy when head_mask is NULL. */
void bwt_scale_heads(float *out, const float *inp, const float *head_mask, int N, int C, int NH);

/* Σ x² in double precision, summed in a fixed order. */
double bwt_sumsq(const float *x, size_t n);

/* One AdamW step (decoupled weight decay, bias-corrected moments) on n parameters; t is the
 * 1-based step count. */
void bwt_adamw_update(float *param, const float *grad, float *m, float *v, size_t n, float lr,
                      float beta1, float beta2, float eps, float weight_decay, int t);

/* State-space ops of Mamba (src/kernels/cpu/ssm.c). Layout channels-last: x (B,T,D).
 * Causal depthwise convolution with K taps, as torch's Conv1d(D, D, K, groups=D, padding=K−1)
 * truncated to the first T steps: out[b,t,d] = bias[d] + Σ_k weight[d,k] · inp[b, t−(K−1)+k, d]
 * (zero before the start); weight (D,K), bias (D) or NULL. */
void bwt_conv1d_causal_forward(float *out, const float *inp, const float *weight, const float *bias, int B,
                               int T, int D, int K);
void bwt_conv1d_causal_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                                const float *weight, int B, int T, int D, int K);
/* softplus(x) = log(1 + eˣ) (x for x > 20, as torch). */
void bwt_softplus_forward(float *out, const float *inp, size_t n);
void bwt_softplus_backward(float *dinp, const float *dout, const float *inp, size_t n);
/* Selective scan over T steps, state size N per channel: with u, delta (B,T,D), A (D,N), Bm, Cm
 * (B,T,N), Dskip (D) or NULL,
 *   h_t[d,n] = exp(Δ_t[d] A[d,n]) h_{t−1}[d,n] + Δ_t[d] Bm_t[n] u_t[d]   (h_{−1} = 0),
 *   y_t[d]   = Σ_n Cm_t[n] h_t[d,n] + Dskip[d] u_t[d].
 * h (B,T,D,N) saves the states for the backward (and the mechanism view). */
void bwt_selective_scan_forward(float *y, float *h, const float *u, const float *delta, const float *A,
                                const float *Bm, const float *Cm, const float *Dskip, int B, int T, int D,
                                int N);
/* Backward through time; g (B,T,D,N) is scratch (it gets ∂L/∂h). Any gradient may be NULL. */
void bwt_selective_scan_backward(float *du, float *ddelta, float *dA, float *dB, float *dC, float *dD, float *g,
                                 const float *dy, const float *h, const float *u, const float *delta,
                                 const float *A, const float *Bm, const float *Cm, const float *Dskip, int B,
                                 int T, int D, int N);

/* Mamba's decay rates A = −exp(A_log) (n), and dA_log += dA ⊙ A. */
void bwt_ssm_decay_forward(float *A, const float *A_log, size_t n);
void bwt_ssm_decay_backward(float *dA_log, const float *dA, const float *A, size_t n);

/* The reference repository's simplified Mamba (src/kernels/cpu/ssm_clamped.c). Each clamp passes the
 * gradient where its input is within the bounds, ends included (torch.clamp).
 * Δ = clamp(softplus(x), lo, hi) (n). */
void bwt_softplus_clamp_forward(float *out, const float *inp, float lo, float hi, size_t n);
void bwt_softplus_clamp_backward(float *dinp, const float *dout, const float *inp, float lo, float hi, size_t n);
/* One decay per state shared by the D channels: A (D,N) = −exp(min(A_log[n], max)), A_log (N). */
void bwt_ssm_shared_decay_forward(float *A, const float *A_log, float max, int D, int N);
void bwt_ssm_shared_decay_backward(float *dA_log, const float *dA, const float *A_log, const float *A, float max,
                                   int D, int N);
/* out (rows,D) += scale[d] · x: the skip D·u added after the simplified block's LayerNorm. */
void bwt_ssm_skip_forward(float *out, const float *x, const float *scale, int rows, int D);
void bwt_ssm_skip_backward(float *dx, float *dscale, const float *dout, const float *x, const float *scale, int rows,
                           int D);
/* The clamped scan (no skip term), layouts as bwt_selective_scan_forward:
 *   h_t = clamp(exp(clamp(Δ_t A, −20, 0)) h_{t−1} + clamp(Δ_t B_t u_t, ±10), ±100),  y_t = Σ_n C_t h_t.
 * The backward's g (B,T,D,N) is scratch; any gradient may be NULL. */
void bwt_selective_scan_clamped_forward(float *y, float *h, const float *u, const float *delta, const float *A,
                                        const float *Bm, const float *Cm, int B, int T, int D, int N);
void bwt_selective_scan_clamped_backward(float *du, float *ddelta, float *dA, float *dB, float *dC, float *g,
                                         const float *dy, const float *h, const float *u, const float *delta,
                                         const float *A, const float *Bm, const float *Cm, int B, int T, int D,
                                         int N);

/* SiLU x·σ(x) (src/kernels/cpu/silu.c); Mamba's output gate y · SiLU(z) is bwt_swiglu (below). */
void bwt_silu_forward(float *out, const float *inp, size_t n);
void bwt_silu_backward(float *dinp, const float *dout, const float *inp, size_t n);

/* Language-model ops (src/lm). Letters as above, plus NKV key/value heads (NH a multiple of NKV),
 * hs any head size (not necessarily C/NH), R rotated channels per head (even, R <= hs) and F the
 * MLP width. Forward only where no model trains through them yet. */

/* RoPE frequency rules: Hugging Face's rope_scaling (none, "linear", "llama3"). */
typedef enum { BWT_ROPE_DEFAULT, BWT_ROPE_LINEAR, BWT_ROPE_LLAMA3 } bwt_rope_type;
typedef struct {
  bwt_rope_type type;
  double factor;                            /* linear and llama3: the context stretch */
  double low_freq_factor, high_freq_factor; /* llama3 */
  int original_max_pos;                     /* llama3: original_max_position_embeddings */
} bwt_rope_scaling;
/* inv_freq(R/2): 1 / theta^(2i/R), then the scaling rule (scaling NULL: none). */
void bwt_rope_inv_freq(double *inv_freq, int R, double theta, const bwt_rope_scaling *scaling);
/* Rotate-half RoPE on x (N,NH,hs), row n at position pos(N): in each head channels i and i + R/2
 * (i < R/2) turn by a = pos[n]·inv_freq[i], (x_i, x_{i+R/2}) -> (x_i cos a - x_{i+R/2} sin a,
 * x_{i+R/2} cos a + x_i sin a); channels R..hs-1 are copied. out may alias inp. */
void bwt_rope_forward(float *out, const float *inp, const double *inv_freq, const int32_t *pos,
                      int N, int NH, int hs, int R);
/* dinp(N,NH,hs) += the transposed rotation of dout. */
void bwt_rope_backward(float *dinp, const float *dout, const double *inv_freq, const int32_t *pos,
                       int N, int NH, int hs, int R);

/* Causal grouped-query attention. Queries are the last nq of T positions (row j at position
 * t = T - nq + j): q and out (B,nq,NH*hs); k and v (B,T,NKV*hs), query head h reading key/value head
 * h / (NH/NKV). Query t sees keys s <= t and, when window > 0, t - s < window (Mistral's sliding
 * window). att (B,NH,nq,T) gets the softmax weights (0 where unseen); scores, if not NULL,
 * (B,NH,nq,T) the scores q·k·scale (-inf where unseen). Fails (BWT_STATUS_ARG) for impossible sizes. */
bwt_status bwt_gqa_attention_forward(float *out, float *att, float *scores, const float *q,
                                     const float *k, const float *v, int B, int T, int nq, int NH,
                                     int NKV, int hs, int window, float scale);
/* The oracle, in double. */
void bwt_gqa_attention_forward_naive(float *out, float *att, float *scores, const float *q,
                                     const float *k, const float *v, int B, int T, int nq, int NH,
                                     int NKV, int hs, int window, float scale);

/* The SiLU-gated MLP activation: out(n) = silu(gate) * up, silu(g) = g·sigmoid(g). */
void bwt_swiglu_forward(float *out, const float *gate, const float *up, size_t n);
/* dgate(n) += dout * up * silu'(gate); dup(n) += dout * silu(gate) (either may be NULL). */
void bwt_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
                         const float *up, size_t n);
/* GELU, tanh form (GPT-2's "gelu_new"): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
void bwt_gelu_tanh_forward(float *out, const float *inp, size_t n);
void bwt_gelu_tanh_backward(float *dinp, const float *dout, const float *inp, size_t n);
/* RMSNorm with the model's eps: out(N,C) = inp * rstd * weight, rstd = 1/sqrt(mean(inp^2) + eps);
 * weight NULL: no weight (the normalised input alone); rstd(N) saved when not NULL. */
void bwt_rmsnorm_eps_forward(float *out, float *rstd, const float *inp, const float *weight,
                             float eps, int N, int C);
/* LayerNorm with the model's eps: out(N,C) = (inp - mean) * rstd * weight + bias (mean and variance
 * in double); weight NULL: neither weight nor bias (the normalised input alone); bias may be NULL. */
void bwt_layernorm_eps_forward(float *out, const float *inp, const float *weight, const float *bias,
                               float eps, int N, int C);
/* out(N,OC) = inp(N,IC) · weight(IC,OC) + bias(OC): a linear layer whose weight is stored (in, out),
 * as GPT-2's Conv1D; bias may be NULL. */
void bwt_matmul_in_out_forward(float *out, const float *inp, const float *weight, const float *bias,
                               int N, int IC, int OC);

/* Backward ops of the language models (bwt/lm_grad.h), conventions as above. */
/* The backward of bwt_gqa_attention_forward, from its saved att and its inputs q (B,nq,NH*hs), k, v
 * (B,T,NKV*hs): dq, dk, dv accumulate (any may be NULL); a key/value head's dk and dv sum over the
 * query heads of its group. dscores, if not NULL, gets (B,NH,nq,T) the gradient of the scaled
 * scores and dpattern, if not NULL, that of the softmax weights, ∂L/∂α_ij = u_iᵀ v_j (both 0 where
 * unseen): the routing law's instruments. Fails (BWT_STATUS_ARG) for impossible sizes. */
bwt_status bwt_gqa_attention_backward(float *dq, float *dk, float *dv, float *dscores, float *dpattern,
                                      const float *dout, const float *att, const float *q, const float *k,
                                      const float *v, int B, int T, int nq, int NH, int NKV, int hs, int window,
                                      float scale);
/* The backward of bwt_layernorm_eps_forward (with weight): the statistics are recomputed into
 * mean(N), rstd(N) (scratch the caller gives), then bwt_layernorm_backward. */
void bwt_layernorm_eps_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                                const float *weight, float eps, float *mean, float *rstd, int N, int C);
/* The backward of bwt_matmul_in_out_forward: dinp(N,IC) += dout·weightᵀ, dweight(IC,OC) += inpᵀ·dout,
 * dbias(OC) += Σ_rows dout. (RMSNorm with the model's eps: bwt_rmsnorm_backward with the rstd of
 * bwt_rmsnorm_eps_forward; RoPE, SwiGLU, both GELUs: their backward ops above.) */
void bwt_matmul_in_out_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                                const float *weight, int N, int IC, int OC);

#endif
