/* The fp32 backward of the language-model forward (bwt/lm_grad.h): the forward runs once with every
 * capture point kept, then the blocks are walked backward from ∂L/∂logits as kernel calls, the
 * inverse of lm_forward.c's sequence:
 *
 *   dlogits → head (Headᵀ) → final norm → per block, last first:
 *     sequential: MLP branch (down, activation, gate/up) → norm2 → + residual;
 *                 attention branch (o projection → GQA attention → RoPE⁻¹ → q/k/v projections) →
 *                 norm1 → + residual
 *     parallel:   both branches from the block's output gradient, the MLP's norm being norm2 (NeoX)
 *                 or norm1 itself (Phi), then + residual
 *
 * Norm outputs (the projections' inputs) are recomputed from the saved residual stream; everything
 * else the backward reads is a saved capture point. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/lm_grad.h"
#include "lm_internal.h"

const bwt_lm_activation *bwt_lm_grad_act(const bwt_lm_grad *g, const char *name) {
  for (int i = 0; i < g->acts.n; i++)
    if (strcmp(g->acts.acts[i].name, name) == 0) return &g->acts.acts[i];
  return NULL;
}

/* blocks.{l}.{suffix}'s data (l < 0: suffix alone), NULL when absent. */
static const float *act(const bwt_lm_grad *g, int l, const char *suffix) {
  char name[BWT_LM_NAME_MAX];
  if (l >= 0) snprintf(name, sizeof name, "blocks.%d.%s", l, suffix);
  else snprintf(name, sizeof name, "%s", suffix);
  const bwt_lm_activation *a = bwt_lm_grad_act(g, name);
  return a ? a->data : NULL;
}

static void free_list(float **x, int n) {
  for (int i = 0; x && i < n; i++) free(x[i]);
  free(x);
}

void bwt_lm_grad_free(bwt_lm_grad *g) {
  if (!g) return;
  bwt_lm_capture_free(&g->acts);
  free(g->logits);
  free(g->dlogits);
  float **lists[] = {g->dz, g->dpattern, g->dscores, g->dq, g->dk, g->dv, g->dWq, g->dWk, g->dWv, g->dWo};
  for (size_t i = 0; i < sizeof lists / sizeof *lists; i++) free_list(lists[i], g->L);
  free_list(g->dresid, g->L + 1);
  memset(g, 0, sizeof *g);
}

/* (L) arrays of n floats each, zeroed; NULL for want of memory. */
static float **alloc_list(int L, size_t n) {
  float **x = bwt_calloc((size_t)L + 1, sizeof *x, "gradient list");
  for (int l = 0; x && l < L; l++)
    if (!(x[l] = bwt_calloc(n ? n : 1, sizeof(float), "gradients"))) {
      free_list(x, l);
      return NULL;
    }
  return x;
}

bwt_status bwt_lm_grad_forward(bwt_lm *lm, const int32_t *tokens, int T, bwt_lm_grad *g) {
  memset(g, 0, sizeof *g);
  const bwt_lm_config *c = &lm->cfg;
  g->T = T, g->L = c->L, g->loss = NAN;
  if (lm->layerwise)
    return bwt_fail(BWT_STATUS_ARG, "gradients need the weights converted to fp32 at open (this model converts layer by layer: set BWT_LM_CONVERT=open)");
  if (T < 1) return bwt_fail(BWT_STATUS_ARG, "gradients need at least one token");
  g->logits = bwt_calloc((size_t)T * c->V, sizeof(float), "logits");
  if (!g->logits) return BWT_STATUS_NOMEM;
  const char *all[] = {"*"};
  return bwt_lm_capture_run(lm, tokens, T, all, 1, &g->acts, g->logits);
}

typedef struct {
  float *a, *da, *dx, *dbranch, *dm, *dh, *dgate, *dup, *dqr, *dkr, *dsplit, *dqkv, *dwf, *dwt, *mean, *rstd;
  int32_t *pos;
} bscratch;

static void bscratch_free(bscratch *s) {
  free(s->a), free(s->da), free(s->dx), free(s->dbranch), free(s->dm), free(s->dh), free(s->dgate), free(s->dup);
  free(s->dqr), free(s->dkr), free(s->dsplit), free(s->dqkv), free(s->dwf), free(s->dwt), free(s->mean), free(s->rstd);
  free(s->pos);
}

static bwt_status bscratch_alloc(bscratch *s, const bwt_lm_config *c, int T) {
  size_t TC = (size_t)T * c->C, TF = (size_t)T * c->F, Q = (size_t)c->NH * c->hs, K = (size_t)c->NKV * c->hs;
  size_t QKV = Q + 2 * K, W = (QKV > (size_t)c->C ? QKV : (size_t)c->C) * (Q > (size_t)c->C ? Q : (size_t)c->C);
  memset(s, 0, sizeof *s);
  s->a = bwt_calloc(TC, sizeof(float), "backward");
  s->da = bwt_calloc(TC, sizeof(float), "backward");
  s->dx = bwt_calloc(TC, sizeof(float), "backward");
  s->dbranch = bwt_calloc(TC, sizeof(float), "backward");
  s->dm = bwt_calloc(TC, sizeof(float), "backward");
  s->dh = bwt_calloc(TF, sizeof(float), "backward");
  s->dgate = bwt_calloc(TF, sizeof(float), "backward");
  s->dup = bwt_calloc(TF, sizeof(float), "backward");
  s->dqr = bwt_calloc((size_t)T * Q, sizeof(float), "backward");
  s->dkr = bwt_calloc((size_t)T * K, sizeof(float), "backward");
  s->dsplit = bwt_calloc((size_t)T * QKV, sizeof(float), "backward");
  s->dqkv = bwt_calloc((size_t)T * QKV, sizeof(float), "backward");
  s->dwf = bwt_calloc(W, sizeof(float), "backward");
  s->dwt = bwt_calloc(W, sizeof(float), "backward");
  s->mean = bwt_calloc((size_t)T, sizeof(float), "backward");
  s->rstd = bwt_calloc((size_t)T, sizeof(float), "backward");
  s->pos = bwt_calloc((size_t)T, sizeof(int32_t), "backward");
  int ok = s->a && s->da && s->dx && s->dbranch && s->dm && s->dh && s->dgate && s->dup && s->dqr && s->dkr &&
           s->dsplit && s->dqkv && s->dwf && s->dwt && s->mean && s->rstd && s->pos;
  for (int t = 0; ok && t < T; t++) s->pos[t] = t;
  return ok ? BWT_STATUS_OK : BWT_STATUS_NOMEM;
}

/* out (n,C) = the model's norm of x with weight w and bias b. */
static void norm_forward(const bwt_lm_config *c, float *out, const float *x, const float *w, const float *b, int n) {
  if (c->layer_norm) bwt_layernorm_eps_forward(out, x, w, b, (float)c->norm_eps, n, c->C);
  else bwt_rmsnorm_eps_forward(out, NULL, x, w, (float)c->norm_eps, n, c->C);
}

/* dx (n,C) += the norm's input gradient from dout (n,C); s->a is overwritten. */
static void norm_backward(const bwt_lm_config *c, bscratch *s, float *dx, const float *dout, const float *x,
                          const float *w, int n) {
  if (c->layer_norm) {
    bwt_layernorm_eps_backward(dx, NULL, NULL, dout, x, w, (float)c->norm_eps, s->mean, s->rstd, n, c->C);
  } else {
    bwt_rmsnorm_eps_forward(s->a, s->rstd, x, NULL, (float)c->norm_eps, n, c->C);
    bwt_rmsnorm_backward(dx, NULL, dout, x, w, s->rstd, n, c->C);
  }
}

/* The backward of the forward's linear(out(n,OC) = inp(n,IC) W): dinp += ..., dweight (in the
 * checkpoint's layout) += ... (either may be NULL). */
static void linear_backward(const bwt_lm *lm, float *dinp, float *dweight, const float *dout, const float *inp,
                            const float *w, int n, int IC, int OC) {
  if (lm->arch->in_out) bwt_matmul_in_out_backward(dinp, dweight, NULL, dout, inp, w, n, IC, OC);
  else bwt_matmul_backward(dinp, dweight, NULL, dout, inp, w, n, IC, OC);
}

/* A projection's weight gradient (OC, IC) in torch's layout into dst, from the checkpoint's. */
static void weight_grad(const bwt_lm *lm, bscratch *s, float *dst, const float *dout, const float *inp, const float *w,
                        int n, int IC, int OC, float *dinp) {
  if (!lm->arch->in_out) {
    linear_backward(lm, dinp, dst, dout, inp, w, n, IC, OC);
    return;
  }
  memset(s->dwf, 0, sizeof(float) * (size_t)IC * OC);
  linear_backward(lm, dinp, s->dwf, dout, inp, w, n, IC, OC);
  bwt_transpose(dst, s->dwf, IC, OC, 1);
}

/* The MLP branch: dm (n,C) += ∂L/∂(its input) from dout (n,C). */
static void mlp_backward(const bwt_lm *lm, const bwt_lm_grad *g, bscratch *s, int l, const float *dout, float *dm, int n) {
  const bwt_lm_config *c = &lm->cfg;
  const float *const *w = lm->layers[l].w;
  size_t nf = (size_t)n * c->F;
  memset(s->dh, 0, sizeof(float) * nf);
  memset(s->dgate, 0, sizeof(float) * nf);
  linear_backward(lm, s->dh, NULL, dout, act(g, l, "mlp.hook_post"), w[LM_DOWN_W], n, c->F, c->C);
  const float *pre = act(g, l, "mlp.hook_pre");
  if (c->act == BWT_LM_ACT_SWIGLU) {
    memset(s->dup, 0, sizeof(float) * nf);
    bwt_swiglu_backward(s->dgate, s->dup, s->dh, pre, act(g, l, "mlp.hook_pre_linear"), nf);
    linear_backward(lm, dm, NULL, s->dup, NULL, w[LM_UP_W], n, c->C, c->F);
  } else if (c->act == BWT_LM_ACT_GELU) {
    bwt_gelu_backward(s->dgate, s->dh, pre, nf);
  } else {
    bwt_gelu_tanh_backward(s->dgate, s->dh, pre, nf);
  }
  linear_backward(lm, dm, NULL, s->dgate, NULL, w[LM_GATE_W], n, c->C, c->F);
}

/* The attention branch: da (n,C) += ∂L/∂(the normed input a = norm1(x), recomputed into s->a) from
 * dout (n,C), filling layer l's attention and projection gradients. */
static bwt_status attn_backward(const bwt_lm *lm, bwt_lm_grad *g, bscratch *s, int l, const float *dout, const float *x,
                                float *da, int n) {
  const bwt_lm_config *c = &lm->cfg;
  const float *const *w = lm->layers[l].w;
  int Q = c->NH * c->hs, K = c->NKV * c->hs, QKV = Q + 2 * K;
  weight_grad(lm, s, g->dWo[l], dout, act(g, l, "attn.hook_z"), w[LM_O_W], n, Q, c->C, g->dz[l]);
  const float *q = act(g, l, c->R ? "attn.hook_rot_q" : "attn.hook_q"), *k = act(g, l, c->R ? "attn.hook_rot_k" : "attn.hook_k");
  memset(s->dqr, 0, sizeof(float) * (size_t)n * Q);
  memset(s->dkr, 0, sizeof(float) * (size_t)n * K);
  BWT_TRY(bwt_gqa_attention_backward(s->dqr, s->dkr, g->dv[l], g->dscores[l], g->dpattern[l], g->dz[l],
                                     act(g, l, "attn.hook_pattern"), q, k, act(g, l, "attn.hook_v"), 1, n, n, c->NH,
                                     c->NKV, c->hs, c->sliding_window, 1.0f / sqrtf((float)c->hs)));
  if (c->R) {
    bwt_rope_backward(g->dq[l], s->dqr, lm->inv_freq, s->pos, n, c->NH, c->hs, c->R);
    bwt_rope_backward(g->dk[l], s->dkr, lm->inv_freq, s->pos, n, c->NKV, c->hs, c->R);
  } else {
    bwt_add_inplace(g->dq[l], s->dqr, (size_t)n * Q);
    bwt_add_inplace(g->dk[l], s->dkr, (size_t)n * K);
  }
  norm_forward(c, s->a, x, w[LM_LN1_W], w[LM_LN1_B], n);
  if (lm->arch->qkv == LM_QKV_SEPARATE) {
    weight_grad(lm, s, g->dWq[l], g->dq[l], s->a, w[LM_Q_W], n, c->C, Q, da);
    weight_grad(lm, s, g->dWk[l], g->dk[l], s->a, w[LM_K_W], n, c->C, K, da);
    weight_grad(lm, s, g->dWv[l], g->dv[l], s->a, w[LM_V_W], n, c->C, K, da);
    return BWT_STATUS_OK;
  }
  /* The fused projection: (3, ·) blocks back to the projection's output order, one gradient for
   * the fused weight, its rows dealt out to q, k, v as the forward's split reads them. */
  bwt_copy(s->dsplit, g->dq[l], (size_t)n * Q);
  bwt_copy(s->dsplit + (size_t)n * Q, g->dk[l], (size_t)n * K);
  bwt_copy(s->dsplit + (size_t)n * (Q + K), g->dv[l], (size_t)n * K);
  if (lm->arch->qkv == LM_QKV_BLOCKS) bwt_transpose(s->dqkv, s->dsplit, 3, n, Q);
  else bwt_transpose(s->dqkv, s->dsplit, 3, n * c->NH, c->hs);
  memset(s->dwt, 0, sizeof(float) * (size_t)QKV * c->C);
  weight_grad(lm, s, s->dwt, s->dqkv, s->a, w[LM_QKV_W], n, c->C, QKV, da);
  for (int o = 0; o < QKV; o++) {
    int part, ch;
    if (lm->arch->qkv == LM_QKV_BLOCKS) part = o / Q, ch = o % Q;
    else part = o / c->hs % 3, ch = o / (3 * c->hs) * c->hs + o % c->hs;
    float *dst = (part == 0 ? g->dWq[l] : part == 1 ? g->dWk[l] : g->dWv[l]) + (size_t)ch * c->C;
    memcpy(dst, s->dwt + (size_t)o * c->C, sizeof(float) * c->C);
  }
  return BWT_STATUS_OK;
}

/* dx (n,C): ∂L/∂resid_post of block l on entry, ∂L/∂resid_pre on return. */
static bwt_status block_backward(const bwt_lm *lm, bwt_lm_grad *g, bscratch *s, int l, float *dx, int n) {
  const bwt_lm_config *c = &lm->cfg;
  const float *const *w = lm->layers[l].w;
  size_t nc = (size_t)n * c->C;
  const float *x = act(g, l, "hook_resid_pre");
  memset(s->da, 0, sizeof(float) * nc);
  if (c->parallel_residual) {
    memset(s->dm, 0, sizeof(float) * nc);
    mlp_backward(lm, g, s, l, dx, s->dm, n);
    if (w[LM_LN2_W]) norm_backward(c, s, s->dbranch, s->dm, x, w[LM_LN2_W], n);
    else bwt_add_inplace(s->da, s->dm, nc); /* Phi: the MLP reads ln1's output */
    BWT_TRY(attn_backward(lm, g, s, l, dx, x, s->da, n));
    bwt_add_inplace(dx, s->dbranch, nc); /* dbranch holds norm2's input gradient (zero for Phi) */
    memset(s->dbranch, 0, sizeof(float) * nc);
    norm_backward(c, s, dx, s->da, x, w[LM_LN1_W], n);
    return BWT_STATUS_OK;
  }
  memset(s->dm, 0, sizeof(float) * nc);
  mlp_backward(lm, g, s, l, dx, s->dm, n);
  norm_backward(c, s, dx, s->dm, act(g, l, "hook_resid_mid"), w[LM_LN2_W], n); /* dx: ∂L/∂resid_mid */
  BWT_TRY(attn_backward(lm, g, s, l, dx, x, s->da, n));
  norm_backward(c, s, dx, s->da, x, w[LM_LN1_W], n);
  return BWT_STATUS_OK;
}

bwt_status bwt_lm_grad_backward(bwt_lm *lm, bwt_lm_grad *g, const float *dlogits) {
  const bwt_lm_config *c = &lm->cfg;
  int T = g->T, L = c->L, Q = c->NH * c->hs, K = c->NKV * c->hs;
  if (!g->logits || g->acts.n == 0 || g->L != L) return bwt_fail(BWT_STATUS_ARG, "backward without its forward");
  size_t TC = (size_t)T * c->C, att = (size_t)c->NH * T * T;
  if (!g->dz) { /* first backward: the gradient arrays */
    g->dlogits = bwt_calloc((size_t)T * c->V, sizeof(float), "dlogits");
    g->dz = alloc_list(L, (size_t)T * Q), g->dq = alloc_list(L, (size_t)T * Q);
    g->dk = alloc_list(L, (size_t)T * K), g->dv = alloc_list(L, (size_t)T * K);
    g->dpattern = alloc_list(L, att), g->dscores = alloc_list(L, att);
    g->dWq = alloc_list(L, (size_t)Q * c->C), g->dWk = alloc_list(L, (size_t)K * c->C);
    g->dWv = alloc_list(L, (size_t)K * c->C), g->dWo = alloc_list(L, (size_t)c->C * Q);
    g->dresid = alloc_list(L + 1, TC);
    if (!g->dlogits || !g->dz || !g->dq || !g->dk || !g->dv || !g->dpattern || !g->dscores || !g->dWq || !g->dWk ||
        !g->dWv || !g->dWo || !g->dresid)
      return BWT_STATUS_NOMEM;
  }
  for (int l = 0; l < L; l++) { /* the backward accumulates: start from zero */
    bwt_zero(g->dz[l], (size_t)T * Q), bwt_zero(g->dq[l], (size_t)T * Q);
    bwt_zero(g->dk[l], (size_t)T * K), bwt_zero(g->dv[l], (size_t)T * K);
    bwt_zero(g->dWq[l], (size_t)Q * c->C), bwt_zero(g->dWk[l], (size_t)K * c->C);
    bwt_zero(g->dWv[l], (size_t)K * c->C), bwt_zero(g->dWo[l], (size_t)c->C * Q);
  }
  for (int l = 0; l <= L; l++) bwt_zero(g->dresid[l], TC);
  if (dlogits != g->dlogits) bwt_copy(g->dlogits, dlogits, (size_t)T * c->V);
  bscratch s;
  bwt_status st = bscratch_alloc(&s, c, T);
  if (st == BWT_STATUS_OK) {
    /* Head then final norm: dresid[L] = ∂L/∂(the final norm's input). */
    memset(s.dm, 0, sizeof(float) * TC);
    bwt_matmul_backward(s.dm, NULL, NULL, g->dlogits, NULL, lm->head, T, c->C, c->V);
    const float *xf = L > 0 ? act(g, L - 1, "hook_resid_post") : NULL;
    if (!xf) st = bwt_fail(BWT_STATUS_ARG, "gradients need a model with at least one block");
    else norm_backward(c, &s, g->dresid[L], s.dm, xf, lm->final_norm, T);
  }
  for (int l = L - 1; st == BWT_STATUS_OK && l >= 0; l--) {
    bwt_copy(g->dresid[l], g->dresid[l + 1], TC);
    st = block_backward(lm, g, &s, l, g->dresid[l], T);
  }
  bscratch_free(&s);
  return st;
}

bwt_status bwt_lm_grad_xent(bwt_lm *lm, const int32_t *tokens, int T, const int32_t *targets, bwt_lm_grad *g) {
  BWT_TRY(bwt_lm_grad_forward(lm, tokens, T, g));
  int V = lm->cfg.V, n = 0;
  for (int t = 0; t < T; t++) {
    if (targets[t] >= V || targets[t] < -1)
      return bwt_fail(BWT_STATUS_ARG, "target %d at position %d is outside the vocabulary 0..%d (-1: none)", targets[t], t, V - 1);
    n += targets[t] >= 0;
  }
  if (n == 0) return bwt_fail(BWT_STATUS_ARG, "cross-entropy gradients need at least one target (all are -1)");
  float *dl = bwt_calloc((size_t)T * V, sizeof(float), "dlogits"), *probs = bwt_calloc((size_t)V, sizeof(float), "probs");
  if (!dl || !probs) {
    free(dl), free(probs);
    return BWT_STATUS_NOMEM;
  }
  double loss = 0;
  for (int t = 0; t < T; t++) {
    if (targets[t] < 0) continue;
    const float *row = g->logits + (size_t)t * V;
    loss += bwt_xent_loss(row, targets + t, NULL, 1, V);
    bwt_softmax_forward(probs, row, 1, V);
    bwt_xent_backward(dl + (size_t)t * V, probs, targets + t, NULL, 1.0f / (float)n, 1, V);
  }
  g->n_sup = n;
  bwt_status s = bwt_lm_grad_backward(lm, g, dl);
  g->loss = loss / n;
  free(dl), free(probs);
  return s;
}
