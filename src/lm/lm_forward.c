/* The forward pass of every architecture in the table, fp32, as a sequence of kernel calls:
 *
 *   x = embed[tokens] (+ wpe[positions]: GPT-2)
 *   per block: a = norm1(x) (RMSNorm·w, or LayerNorm·w + b);
 *              q, k, v = a Wqᵀ, a Wkᵀ, a Wvᵀ, or one fused projection split by its layout;
 *              RoPE on the first R channels of each q and k head (R = 0: none);
 *              z = GQA-attention(q, k, v) over the cache; attn = z Woᵀ
 *              sequential: x += attn; m = norm2(x); x += mlp(m)
 *              parallel:   x += attn + mlp(norm2(x_before)), norm2 = norm1 when there is one norm (Phi)
 *              mlp(m) = (silu(m Wgᵀ) · m Wuᵀ) Wdᵀ, or gelu(m Wfcᵀ) Wprojᵀ
 *   logits = norm_f(x) Headᵀ (+ head bias: Phi)
 *
 * Rotated keys and values go straight into the cache rows of their positions, so a later call
 * attends over everything before it. Hooks (lm_capture.c) see each point as it is made. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "lm_internal.h"

/* Queries per pass: bounds the (NH, n, T) attention buffer on long inputs. */
#define LM_CHUNK 512

/* Reports blocks.{l}.{suffix} (l < 0: suffix alone) when it is wanted. editable: x is the live
 * buffer the forward goes on reading, which an edit may change in place (bwt/lm_edit.h). */
static bwt_status hook_at(lm_hooks *h, int l, const char *suffix, float *x, int editable, int ndim, int64_t d0,
                          int64_t d1, int64_t d2) {
  if (!h) return BWT_STATUS_OK;
  char name[BWT_LM_NAME_MAX];
  if (l >= 0) snprintf(name, sizeof name, "blocks.%d.%s", l, suffix);
  else snprintf(name, sizeof name, "%s", suffix);
  return lm_hooks_want(h, name) ? lm_hooks_put(h, name, x, editable, ndim, d0, d1, d2) : BWT_STATUS_OK;
}

/* A live point (editable). */
static bwt_status hook(lm_hooks *h, int l, const char *suffix, float *x, int ndim, int64_t d0, int64_t d1, int64_t d2) {
  return hook_at(h, l, suffix, x, 1, ndim, d0, d1, d2);
}

/* A point computed aside for the observer only (hook_normalized, the scores, the pattern after
 * its use): captured, never edited. */
static bwt_status hook_view(lm_hooks *h, int l, const char *suffix, float *x, int ndim, int64_t d0, int64_t d1, int64_t d2) {
  return hook_at(h, l, suffix, x, 0, ndim, d0, d1, d2);
}

static int wanted(lm_hooks *h, int l, const char *suffix) {
  if (!h) return 0;
  char name[BWT_LM_NAME_MAX];
  if (l >= 0) snprintf(name, sizeof name, "blocks.%d.%s", l, suffix);
  else snprintf(name, sizeof name, "%s", suffix);
  return lm_hooks_want(h, name);
}

/* The model's norm into out, reporting the normalised input before the weight (TransformerLens's
 * hook_normalized; for LayerNorm before weight and bias, as its LayerNormPre) under suffix when
 * wanted, computed into spare only then. */
static bwt_status norm(float *out, float *spare, const float *x, const float *w, const float *b, lm_hooks *h,
                       int l, const char *suffix, const bwt_lm_config *c, int n) {
  float eps = (float)c->norm_eps;
  if (c->layer_norm) bwt_layernorm_eps_forward(out, x, w, b, eps, n, c->C);
  else bwt_rmsnorm_eps_forward(out, NULL, x, w, eps, n, c->C);
  if (!wanted(h, l, suffix)) return BWT_STATUS_OK;
  if (c->layer_norm) bwt_layernorm_eps_forward(spare, x, NULL, NULL, eps, n, c->C);
  else bwt_rmsnorm_eps_forward(spare, NULL, x, NULL, eps, n, c->C);
  return hook_view(h, l, suffix, spare, 2, n, c->C, 0);
}

/* A linear layer with the weight as the architecture stores it. */
static void linear(const bwt_lm *lm, float *out, const float *inp, const float *w, const float *b, int n, int IC, int OC) {
  if (lm->arch->in_out) bwt_matmul_in_out_forward(out, inp, w, b, n, IC, OC);
  else bwt_matmul_forward(out, inp, w, b, n, IC, OC);
}

/* Room in the caches for `need` rows: doubling, at most max_pos. */
static bwt_status grow_cache(bwt_lm *lm, int need) {
  if (need <= lm->cap) return BWT_STATUS_OK;
  int cap = lm->cap * 2 > need ? lm->cap * 2 : need;
  if (cap > lm->cfg.max_pos) cap = lm->cfg.max_pos;
  size_t row = (size_t)lm->cfg.NKV * lm->cfg.hs;
  for (int l = 0; l < lm->cfg.L; l++) {
    float *k = bwt_realloc(lm->kcache[l], (size_t)cap * row * sizeof(float), "key cache");
    if (!k) return BWT_STATUS_NOMEM;
    lm->kcache[l] = k;
    float *v = bwt_realloc(lm->vcache[l], (size_t)cap * row * sizeof(float), "value cache");
    if (!v) return BWT_STATUS_NOMEM;
    lm->vcache[l] = v;
  }
  lm->cap = cap;
  return BWT_STATUS_OK;
}

typedef struct {
  float *x, *a, *spare, *q, *qkv, *split, *z, *att, *scores, *tmp, *mlp, *gate, *up, *logits;
  int32_t *pos;
} scratch;

static void scratch_free(scratch *s) {
  free(s->x); free(s->a); free(s->spare); free(s->q); free(s->qkv); free(s->split); free(s->z); free(s->att);
  free(s->scores); free(s->tmp); free(s->mlp); free(s->gate); free(s->up); free(s->logits); free(s->pos);
}

static bwt_status scratch_alloc(scratch *s, const bwt_lm *lm, int n, int T, int want_scores, int want_logits) {
  const bwt_lm_config *c = &lm->cfg;
  size_t Q = (size_t)c->NH * c->hs, QKV = Q + 2 * (size_t)c->NKV * c->hs, att = (size_t)c->NH * n * T;
  int fused = lm->arch->qkv != LM_QKV_SEPARATE, gated = c->act == BWT_LM_ACT_SWIGLU;
  s->x = bwt_calloc((size_t)n * c->C, sizeof(float), "residual stream");
  s->a = bwt_calloc((size_t)n * c->C, sizeof(float), "normed input");
  s->spare = bwt_calloc((size_t)n * c->C, sizeof(float), "normed input");
  s->q = bwt_calloc((size_t)n * Q, sizeof(float), "queries");
  s->qkv = fused ? bwt_calloc((size_t)n * QKV, sizeof(float), "fused q/k/v") : NULL;
  s->split = fused ? bwt_calloc((size_t)n * QKV, sizeof(float), "fused q/k/v") : NULL;
  s->z = bwt_calloc((size_t)n * Q, sizeof(float), "attention values");
  s->att = bwt_calloc(att, sizeof(float), "attention weights");
  s->scores = want_scores ? bwt_calloc(att, sizeof(float), "attention scores") : NULL;
  s->tmp = bwt_calloc((size_t)n * c->C, sizeof(float), "branch output");
  s->mlp = c->parallel_residual ? bwt_calloc((size_t)n * c->C, sizeof(float), "mlp output") : NULL;
  s->gate = bwt_calloc((size_t)n * c->F, sizeof(float), "mlp gate");
  s->up = gated ? bwt_calloc((size_t)n * c->F, sizeof(float), "mlp up") : NULL;
  s->logits = want_logits ? bwt_calloc((size_t)n * c->V, sizeof(float), "logits") : NULL;
  s->pos = bwt_calloc((size_t)n, sizeof(int32_t), "positions");
  int ok = s->x && s->a && s->spare && s->q && (s->qkv || !fused) && (s->split || !fused) && s->z && s->att &&
           (s->scores || !want_scores) && s->tmp && (s->mlp || !c->parallel_residual) && s->gate &&
           (s->up || !gated) && (s->logits || !want_logits) && s->pos;
  return ok ? BWT_STATUS_OK : BWT_STATUS_NOMEM;
}

/* q (n,Q) into s->q, k and v (n,K) into the cache rows kc, vc: three projections, or one fused one
 * whose output is reordered to (3, ·) by a transpose: (n, 3, Q) for q|k|v blocks (GPT-2), (n·NH, 3,
 * hs) for per-head triples (NeoX). */
static void project_qkv(const bwt_lm *lm, const float *const *w, scratch *s, float *kc, float *vc, int n) {
  const bwt_lm_config *c = &lm->cfg;
  int Q = c->NH * c->hs, K = c->NKV * c->hs;
  if (lm->arch->qkv == LM_QKV_SEPARATE) {
    linear(lm, s->q, s->a, w[LM_Q_W], w[LM_Q_B], n, c->C, Q);
    linear(lm, kc, s->a, w[LM_K_W], w[LM_K_B], n, c->C, K);
    linear(lm, vc, s->a, w[LM_V_W], w[LM_V_B], n, c->C, K);
    return;
  }
  linear(lm, s->qkv, s->a, w[LM_QKV_W], w[LM_QKV_B], n, c->C, Q + 2 * K);
  if (lm->arch->qkv == LM_QKV_BLOCKS) bwt_transpose(s->split, s->qkv, n, 3, Q);
  else bwt_transpose(s->split, s->qkv, n * c->NH, 3, c->hs);
  bwt_copy(s->q, s->split, (size_t)n * Q);
  bwt_copy(kc, s->split + (size_t)n * Q, (size_t)n * K);
  bwt_copy(vc, s->split + (size_t)n * (Q + K), (size_t)n * K);
}

/* out (n,C) = the MLP of s->a. */
static bwt_status mlp(const bwt_lm *lm, const float *const *w, scratch *s, float *out, int l, int n, lm_hooks *h) {
  const bwt_lm_config *c = &lm->cfg;
  linear(lm, s->gate, s->a, w[LM_GATE_W], w[LM_GATE_B], n, c->C, c->F);
  if (c->act == BWT_LM_ACT_SWIGLU) linear(lm, s->up, s->a, w[LM_UP_W], w[LM_UP_B], n, c->C, c->F);
  BWT_TRY(hook(h, l, "mlp.hook_pre", s->gate, 2, n, c->F, 0));
  size_t nf = (size_t)n * c->F;
  if (c->act == BWT_LM_ACT_SWIGLU) {
    BWT_TRY(hook(h, l, "mlp.hook_pre_linear", s->up, 2, n, c->F, 0));
    bwt_swiglu_forward(s->gate, s->gate, s->up, nf);
  } else if (c->act == BWT_LM_ACT_GELU) {
    bwt_gelu_forward(s->gate, s->gate, nf);
  } else {
    bwt_gelu_tanh_forward(s->gate, s->gate, nf);
  }
  BWT_TRY(hook(h, l, "mlp.hook_post", s->gate, 2, n, c->F, 0));
  linear(lm, out, s->gate, w[LM_DOWN_W], w[LM_DOWN_B], n, c->F, c->C);
  return hook(h, l, "hook_mlp_out", out, 2, n, c->C, 0);
}

static bwt_status block(bwt_lm *lm, int l, scratch *s, int n, lm_hooks *h) {
  const bwt_lm_config *c = &lm->cfg;
  lm_layer_load(lm, l);
  const float *const *w = lm->layers[l].w;
  int Q = c->NH * c->hs, K = c->NKV * c->hs, T = lm->pos + n;
  float *kc = lm->kcache[l] + (size_t)lm->pos * K, *vc = lm->vcache[l] + (size_t)lm->pos * K;
  size_t nc = (size_t)n * c->C;
  BWT_TRY(hook(h, l, "hook_resid_pre", s->x, 2, n, c->C, 0));
  BWT_TRY(norm(s->a, s->spare, s->x, w[LM_LN1_W], w[LM_LN1_B], h, l, "ln1.hook_normalized", c, n));
  project_qkv(lm, w, s, kc, vc, n);
  BWT_TRY(hook(h, l, "attn.hook_q", s->q, 3, n, c->NH, c->hs));
  BWT_TRY(hook(h, l, "attn.hook_k", kc, 3, n, c->NKV, c->hs));
  BWT_TRY(hook(h, l, "attn.hook_v", vc, 3, n, c->NKV, c->hs));
  if (c->R) {
    bwt_rope_forward(s->q, s->q, lm->inv_freq, s->pos, n, c->NH, c->hs, c->R);
    bwt_rope_forward(kc, kc, lm->inv_freq, s->pos, n, c->NKV, c->hs, c->R);
    BWT_TRY(hook(h, l, "attn.hook_rot_q", s->q, 3, n, c->NH, c->hs));
    BWT_TRY(hook(h, l, "attn.hook_rot_k", kc, 3, n, c->NKV, c->hs));
  }
  float *scores = wanted(h, l, "attn.hook_attn_scores") ? s->scores : NULL;
  BWT_TRY(bwt_gqa_attention_forward(s->z, s->att, scores, s->q, lm->kcache[l], lm->vcache[l], 1, T, n,
                                    c->NH, c->NKV, c->hs, c->sliding_window, 1.0f / sqrtf((float)c->hs)));
  if (scores) BWT_TRY(hook_view(h, l, "attn.hook_attn_scores", scores, 3, c->NH, n, T));
  BWT_TRY(hook_view(h, l, "attn.hook_pattern", s->att, 3, c->NH, n, T));
  BWT_TRY(hook(h, l, "attn.hook_z", s->z, 3, n, c->NH, c->hs));
  linear(lm, s->tmp, s->z, w[LM_O_W], w[LM_O_B], n, Q, c->C);
  BWT_TRY(hook(h, l, "hook_attn_out", s->tmp, 2, n, c->C, 0));
  if (c->parallel_residual) {
    /* Both branches read resid_pre; there is no resid_mid. With one norm (Phi) the MLP reads ln1's output. */
    if (w[LM_LN2_W]) BWT_TRY(norm(s->a, s->spare, s->x, w[LM_LN2_W], w[LM_LN2_B], h, l, "ln2.hook_normalized", c, n));
    BWT_TRY(mlp(lm, w, s, s->mlp, l, n, h));
    bwt_add_inplace(s->x, s->tmp, nc);
    bwt_add_inplace(s->x, s->mlp, nc);
  } else {
    bwt_add_inplace(s->x, s->tmp, nc);
    BWT_TRY(hook(h, l, "hook_resid_mid", s->x, 2, n, c->C, 0));
    BWT_TRY(norm(s->a, s->spare, s->x, w[LM_LN2_W], w[LM_LN2_B], h, l, "ln2.hook_normalized", c, n));
    BWT_TRY(mlp(lm, w, s, s->tmp, l, n, h));
    bwt_add_inplace(s->x, s->tmp, nc);
  }
  return hook(h, l, "hook_resid_post", s->x, 2, n, c->C, 0);
}

bwt_status lm_forward(bwt_lm *lm, const int32_t *tokens, int n, float *logits, lm_hooks *h) {
  const bwt_lm_config *c = &lm->cfg;
  if (n <= 0) return BWT_STATUS_OK;
  for (int j = 0; j < n; j++)
    if (tokens[j] < 0 || tokens[j] >= c->V)
      return bwt_fail(BWT_STATUS_ARG, "token %d at position %d is outside the vocabulary 0..%d", tokens[j], lm->pos + j, c->V - 1);
  if (n > c->max_pos - lm->pos)
    return bwt_fail(BWT_STATUS_ARG, "%d tokens after %d cached exceed the model's %d positions (max_position_embeddings)", n, lm->pos, c->max_pos);
  BWT_TRY(grow_cache(lm, lm->pos + n));
  int want_logits = logits || wanted(h, -1, "logits");
  scratch s = {0};
  bwt_status st = scratch_alloc(&s, lm, n, lm->pos + n, h != NULL, want_logits && !logits);
  if (st == BWT_STATUS_OK) {
    for (int j = 0; j < n; j++) s.pos[j] = lm->pos + j;
    if (lm->embed_half) lm_embed(lm, s.x, tokens, n);
    else bwt_embedding_forward(s.x, tokens, lm->embed, NULL, NULL, 0, 1, n, c->C);
    st = hook(h, -1, "hook_embed", s.x, 2, n, c->C, 0);
  }
  if (st == BWT_STATUS_OK && lm->pos_embed) {
    bwt_gather_rows(s.tmp, lm->pos_embed, s.pos, n, c->C);
    st = hook(h, -1, "hook_pos_embed", s.tmp, 2, n, c->C, 0);
    bwt_add_inplace(s.x, s.tmp, (size_t)n * c->C);
  }
  for (int l = 0; st == BWT_STATUS_OK && l < c->L; l++) st = block(lm, l, &s, n, h);
  if (st == BWT_STATUS_OK && (want_logits || wanted(h, -1, "ln_final.hook_normalized"))) {
    float *out = logits ? logits : s.logits;
    st = norm(s.a, s.spare, s.x, lm->final_norm, lm->final_norm_bias, h, -1, "ln_final.hook_normalized", c, n);
    if (st == BWT_STATUS_OK && want_logits) {
      if (lm->head_half) st = lm_head(lm, out, s.a, n);
      else bwt_matmul_forward(out, s.a, lm->head, lm->head_bias, n, c->C, c->V);
      if (st == BWT_STATUS_OK) st = hook(h, -1, "logits", out, 2, n, c->V, 0);
    }
  }
  if (st == BWT_STATUS_OK) lm->pos += n;
  scratch_free(&s);
  return st;
}

bwt_status bwt_lm_forward(bwt_lm *lm, const int32_t *tokens, int n, float *logits) {
  const bwt_lm_config *c = &lm->cfg;
  if (n < 0 || n > c->max_pos - lm->pos)
    return bwt_fail(BWT_STATUS_ARG, "%d tokens after %d cached exceed the model's %d positions (max_position_embeddings)", n, lm->pos, c->max_pos);
  int start = lm->pos;
  for (int done = 0; done < n; done += LM_CHUNK) {
    int m = n - done < LM_CHUNK ? n - done : LM_CHUNK;
    bwt_status s = lm_forward(lm, tokens + done, m, logits ? logits + (size_t)done * c->V : NULL, NULL);
    if (s != BWT_STATUS_OK) {
      lm->pos = start; /* the cache as it was: rows past pos are ignored */
      return s;
    }
  }
  return BWT_STATUS_OK;
}
