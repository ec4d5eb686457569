/* The Llama/Mistral forward pass, fp32, as a sequence of kernel calls:
 *
 *   x = embed[tokens]
 *   per block: a = RMSNorm(x)·w1; q, k, v = a Wqᵀ, a Wkᵀ, a Wvᵀ; RoPE on q and k;
 *              z = GQA-attention(q, k, v) over the cache; x += z Woᵀ;
 *              m = RMSNorm(x)·w2; x += (silu(m Wgᵀ) · m Wuᵀ) Wdᵀ
 *   logits = (RMSNorm(x)·wf) Headᵀ
 *
 * Rotated keys and values go straight into the cache rows of their positions, so a later call
 * attends over everything before it. Hooks (lm_capture.c) see each point as it is made. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "lm_internal.h"

/* Queries per pass: bounds the (NH, n, T) attention buffer on long inputs. */
#define LM_CHUNK 512

/* Reports blocks.{l}.{suffix} (l < 0: suffix alone) when it is wanted. */
static bwt_status hook(lm_hooks *h, int l, const char *suffix, const float *x, int ndim, int64_t d0,
                       int64_t d1, int64_t d2) {
  if (!h) return BWT_STATUS_OK;
  char name[BWT_LM_NAME_MAX];
  if (l >= 0) snprintf(name, sizeof name, "blocks.%d.%s", l, suffix);
  else snprintf(name, sizeof name, "%s", suffix);
  return lm_hooks_want(h, name) ? lm_hooks_put(h, name, x, ndim, d0, d1, d2) : BWT_STATUS_OK;
}

static int wanted(lm_hooks *h, int l, const char *suffix) {
  if (!h) return 0;
  char name[BWT_LM_NAME_MAX];
  if (l >= 0) snprintf(name, sizeof name, "blocks.%d.%s", l, suffix);
  else snprintf(name, sizeof name, "%s", suffix);
  return lm_hooks_want(h, name);
}

/* RMSNorm into out, reporting the normalised input before the weight (TransformerLens's
 * hook_normalized) under suffix when wanted, computed into spare only then. */
static bwt_status norm(float *out, float *spare, const float *x, const float *w, lm_hooks *h, int l,
                       const char *suffix, const bwt_lm_config *c, int n) {
  bwt_rmsnorm_eps_forward(out, NULL, x, w, (float)c->norm_eps, n, c->C);
  if (!wanted(h, l, suffix)) return BWT_STATUS_OK;
  bwt_rmsnorm_eps_forward(spare, NULL, x, NULL, (float)c->norm_eps, n, c->C);
  return hook(h, l, suffix, spare, 2, n, c->C, 0);
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
  float *x, *a, *spare, *q, *z, *att, *scores, *tmp, *gate, *up, *logits;
  int32_t *pos;
} scratch;

static void scratch_free(scratch *s) {
  free(s->x); free(s->a); free(s->spare); free(s->q); free(s->z); free(s->att); free(s->scores);
  free(s->tmp); free(s->gate); free(s->up); free(s->logits); free(s->pos);
}

static bwt_status scratch_alloc(scratch *s, const bwt_lm_config *c, int n, int T, int want_scores, int want_logits) {
  size_t Q = (size_t)c->NH * c->hs, att = (size_t)c->NH * n * T;
  s->x = bwt_calloc((size_t)n * c->C, sizeof(float), "residual stream");
  s->a = bwt_calloc((size_t)n * c->C, sizeof(float), "normed input");
  s->spare = bwt_calloc((size_t)n * c->C, sizeof(float), "normed input");
  s->q = bwt_calloc((size_t)n * Q, sizeof(float), "queries");
  s->z = bwt_calloc((size_t)n * Q, sizeof(float), "attention values");
  s->att = bwt_calloc(att, sizeof(float), "attention weights");
  s->scores = want_scores ? bwt_calloc(att, sizeof(float), "attention scores") : NULL;
  s->tmp = bwt_calloc((size_t)n * c->C, sizeof(float), "branch output");
  s->gate = bwt_calloc((size_t)n * c->F, sizeof(float), "mlp gate");
  s->up = bwt_calloc((size_t)n * c->F, sizeof(float), "mlp up");
  s->logits = want_logits ? bwt_calloc((size_t)n * c->V, sizeof(float), "logits") : NULL;
  s->pos = bwt_calloc((size_t)n, sizeof(int32_t), "positions");
  int ok = s->x && s->a && s->spare && s->q && s->z && s->att && (s->scores || !want_scores) && s->tmp &&
           s->gate && s->up && (s->logits || !want_logits) && s->pos;
  return ok ? BWT_STATUS_OK : BWT_STATUS_NOMEM;
}

static bwt_status block(bwt_lm *lm, int l, scratch *s, int n, lm_hooks *h) {
  const bwt_lm_config *c = &lm->cfg;
  lm_layer_load(lm, l);
  const float *const *w = lm->layers[l].w;
  int Q = c->NH * c->hs, K = c->NKV * c->hs, T = lm->pos + n;
  float *kc = lm->kcache[l] + (size_t)lm->pos * K, *vc = lm->vcache[l] + (size_t)lm->pos * K;
  BWT_TRY(hook(h, l, "hook_resid_pre", s->x, 2, n, c->C, 0));
  BWT_TRY(norm(s->a, s->spare, s->x, w[LM_LN1_W], h, l, "ln1.hook_normalized", c, n));
  bwt_matmul_forward(s->q, s->a, w[LM_Q_W], w[LM_Q_B], n, c->C, Q);
  bwt_matmul_forward(kc, s->a, w[LM_K_W], w[LM_K_B], n, c->C, K);
  bwt_matmul_forward(vc, s->a, w[LM_V_W], w[LM_V_B], n, c->C, K);
  BWT_TRY(hook(h, l, "attn.hook_q", s->q, 3, n, c->NH, c->hs));
  BWT_TRY(hook(h, l, "attn.hook_k", kc, 3, n, c->NKV, c->hs));
  BWT_TRY(hook(h, l, "attn.hook_v", vc, 3, n, c->NKV, c->hs));
  bwt_rope_forward(s->q, s->q, lm->inv_freq, s->pos, n, c->NH, c->hs, c->R);
  bwt_rope_forward(kc, kc, lm->inv_freq, s->pos, n, c->NKV, c->hs, c->R);
  BWT_TRY(hook(h, l, "attn.hook_rot_q", s->q, 3, n, c->NH, c->hs));
  BWT_TRY(hook(h, l, "attn.hook_rot_k", kc, 3, n, c->NKV, c->hs));
  float *scores = wanted(h, l, "attn.hook_attn_scores") ? s->scores : NULL;
  BWT_TRY(bwt_gqa_attention_forward(s->z, s->att, scores, s->q, lm->kcache[l], lm->vcache[l], 1, T, n,
                                    c->NH, c->NKV, c->hs, c->sliding_window, 1.0f / sqrtf((float)c->hs)));
  if (scores) BWT_TRY(hook(h, l, "attn.hook_attn_scores", scores, 3, c->NH, n, T));
  BWT_TRY(hook(h, l, "attn.hook_pattern", s->att, 3, c->NH, n, T));
  BWT_TRY(hook(h, l, "attn.hook_z", s->z, 3, n, c->NH, c->hs));
  bwt_matmul_forward(s->tmp, s->z, w[LM_O_W], w[LM_O_B], n, Q, c->C);
  BWT_TRY(hook(h, l, "hook_attn_out", s->tmp, 2, n, c->C, 0));
  bwt_add_inplace(s->x, s->tmp, (size_t)n * c->C);
  BWT_TRY(hook(h, l, "hook_resid_mid", s->x, 2, n, c->C, 0));
  BWT_TRY(norm(s->a, s->spare, s->x, w[LM_LN2_W], h, l, "ln2.hook_normalized", c, n));
  bwt_matmul_forward(s->gate, s->a, w[LM_GATE_W], w[LM_GATE_B], n, c->C, c->F);
  bwt_matmul_forward(s->up, s->a, w[LM_UP_W], w[LM_UP_B], n, c->C, c->F);
  BWT_TRY(hook(h, l, "mlp.hook_pre", s->gate, 2, n, c->F, 0));
  BWT_TRY(hook(h, l, "mlp.hook_pre_linear", s->up, 2, n, c->F, 0));
  bwt_swiglu_forward(s->gate, s->gate, s->up, (size_t)n * c->F);
  BWT_TRY(hook(h, l, "mlp.hook_post", s->gate, 2, n, c->F, 0));
  bwt_matmul_forward(s->tmp, s->gate, w[LM_DOWN_W], w[LM_DOWN_B], n, c->F, c->C);
  BWT_TRY(hook(h, l, "hook_mlp_out", s->tmp, 2, n, c->C, 0));
  bwt_add_inplace(s->x, s->tmp, (size_t)n * c->C);
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
  bwt_status st = scratch_alloc(&s, c, n, lm->pos + n, h != NULL, want_logits && !logits);
  if (st == BWT_STATUS_OK) {
    for (int j = 0; j < n; j++) s.pos[j] = lm->pos + j;
    if (lm->embed_half) lm_embed(lm, s.x, tokens, n);
    else bwt_embedding_forward(s.x, tokens, lm->embed, NULL, NULL, 0, 1, n, c->C);
    st = hook(h, -1, "hook_embed", s.x, 2, n, c->C, 0);
  }
  for (int l = 0; st == BWT_STATUS_OK && l < c->L; l++) st = block(lm, l, &s, n, h);
  if (st == BWT_STATUS_OK && (want_logits || wanted(h, -1, "ln_final.hook_normalized"))) {
    float *out = logits ? logits : s.logits;
    st = norm(s.a, s.spare, s.x, lm->final_norm, h, -1, "ln_final.hook_normalized", c, n);
    if (st == BWT_STATUS_OK && want_logits) {
      if (lm->head_half) st = lm_head(lm, out, s.a, n);
      else bwt_matmul_forward(out, s.a, lm->head, NULL, n, c->C, c->V);
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
