/* The reference bijection model: a pre-norm causal transformer (SPEC.md §2).
 * Forward and backward are sequences of op calls; the math lives in src/kernels. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/kernels.h"
#include "layers.h"

#define P(off) (m->params + (off))
#define G(off) (m->grads + (off))

typedef struct {
  norm_params ln1;
  size_t wq, bq, wk, bk, wv, bv, wo, bo;
  ffn_params ffn;
} block_params;

typedef struct {
  norm_acts ln1;
  float *q, *k, *v; /* (N,C) */
  float *att;       /* (B,NH,T,T) softmax weights */
  float *atty;      /* (N,C) attention output before the O projection */
  float *xmid;      /* (N,C) residual stream between the attention and the MLP */
  ffn_acts ffn;
} block_acts;

typedef struct {
  size_t wte, wpe;
  readout_params readout;
  block_params *blocks; /* (n_layers) */
  /* Activations, carved from one arena for the current batch shape. */
  float *arena;
  size_t arena_cap;
  block_acts *acts; /* (n_layers) */
  float *x;         /* (n_layers+1, N, C): the residual stream entering each block; the last is the output */
  readout_acts out; /* the supervised rows, final norm, logits */
  /* Gradient scratch. */
  float *dx, *dq, *dk, *dv, *datty; /* (N,C) */
  ffn_scratch ffn_s;
} transformer;

static bwt_status build(bwt_model *m) {
  const bwt_model_config *c = &m->cfg;
  transformer *t = bwt_calloc(1, sizeof *t, "transformer");
  if (!t) return BWT_STATUS_NOMEM;
  ((model_impl *)m->impl)->arch = t;
  t->blocks = bwt_calloc(c->n_layers, sizeof *t->blocks, "transformer blocks");
  t->acts = bwt_calloc(c->n_layers, sizeof *t->acts, "transformer blocks");
  if (!t->blocks || !t->acts) return BWT_STATUS_NOMEM;
  int C = c->d_model;
  t->wte = model_add_tensor(m, "tok_emb", 2, c->vocab, C, INIT_NORMAL);
  t->wpe = model_add_tensor(m, "pos_emb", 2, c->max_T, C, INIT_NORMAL);
  char name[2 * BWT_TENSOR_NAME_MAX]; /* room for gcc's truncation analysis; names are checked on entry */
  for (int l = 0; l < c->n_layers; l++) {
    block_params *b = &t->blocks[l];
#define ADD(field, suffix, ndim, d0, d1, init)                         \
  snprintf(name, sizeof name, "blocks.%d.%s", l, suffix);              \
  b->field = model_add_tensor(m, name, ndim, d0, d1, init)
    snprintf(name, sizeof name, "blocks.%d.norm1", l);
    norm_declare(m, &b->ln1, name);
    ADD(wq, "attn.wq.weight", 2, C, C, INIT_NORMAL);
    ADD(bq, "attn.wq.bias", 1, C, 0, INIT_ZEROS);
    ADD(wk, "attn.wk.weight", 2, C, C, INIT_NORMAL);
    ADD(bk, "attn.wk.bias", 1, C, 0, INIT_ZEROS);
    ADD(wv, "attn.wv.weight", 2, C, C, INIT_NORMAL);
    ADD(bv, "attn.wv.bias", 1, C, 0, INIT_ZEROS);
    ADD(wo, "attn.wo.weight", 2, C, C, INIT_NORMAL_RESIDUAL);
    ADD(bo, "attn.wo.bias", 1, C, 0, INIT_ZEROS);
#undef ADD
    snprintf(name, sizeof name, "blocks.%d.mlp", l);
    ffn_declare(m, &b->ffn, name);
  }
  readout_declare(m, &t->readout, t->wte);
  return BWT_STATUS_OK;
}

static void destroy(bwt_model *m) {
  transformer *t = model_arch(m);
  free(t->blocks);
  free(t->acts);
  free(t->arena);
  free(t);
}

/* Assigns every activation pointer from base (or only counts when base is NULL); returns floats. */
static size_t carve(transformer *t, const bwt_model_config *c, float *base, int B, int T, int M) {
  size_t off = 0, N = (size_t)B * T, C = c->d_model, H = 4 * C, L = c->n_layers;
#define TAKE(ptr, n) (ptr = base ? base + off : NULL, off += (n))
  TAKE(t->x, (L + 1) * N * C);
  for (size_t l = 0; l < L; l++) {
    block_acts *a = &t->acts[l];
    TAKE(a->ln1.out, N * C);
    TAKE(a->ln1.mean, N);
    TAKE(a->ln1.rstd, N);
    TAKE(a->q, N * C);
    TAKE(a->k, N * C);
    TAKE(a->v, N * C);
    TAKE(a->att, (size_t)B * c->n_heads * T * T);
    TAKE(a->atty, N * C);
    TAKE(a->xmid, N * C);
    TAKE(a->ffn.norm.out, N * C);
    TAKE(a->ffn.norm.mean, N);
    TAKE(a->ffn.norm.rstd, N);
    TAKE(a->ffn.pre, N * H);
    TAKE(a->ffn.act, N * H);
  }
  TAKE(t->dx, N * C);
  TAKE(t->dq, N * C);
  TAKE(t->dk, N * C);
  TAKE(t->dv, N * C);
  TAKE(t->datty, N * C);
  TAKE(t->ffn_s.dnorm, N * C);
  TAKE(t->ffn_s.dact, N * H);
  TAKE(t->ffn_s.dpre, N * H);
  if (base) readout_carve(c, &t->out, base + off, M);
  off += readout_floats(c, M);
#undef TAKE
  return off;
}

static bwt_status forward(bwt_model *m, const bwt_batch *batch, const float **logits) {
  const bwt_model_config *c = &m->cfg;
  transformer *t = model_arch(m);
  int B = batch->B, T = batch->T, N = B * T, M = B * batch->n_sup, C = c->d_model;
  BWT_TRY(model_reserve(&t->arena, &t->arena_cap, carve(t, c, NULL, B, T, M), "activations"));
  carve(t, c, t->arena, B, T, M);

  bwt_embedding_forward(t->x, batch->tokens, P(t->wte), P(t->wpe), B, T, C);
  for (int l = 0; l < c->n_layers; l++) {
    const block_params *p = &t->blocks[l];
    block_acts *a = &t->acts[l];
    float *x = t->x + (size_t)l * N * C, *xnext = x + (size_t)N * C;
    if (m->skip_attn[l]) {
      memcpy(a->xmid, x, sizeof(float) * N * C);
    } else {
      norm_forward(m, &p->ln1, &a->ln1, x, N);
      bwt_matmul_forward(a->q, a->ln1.out, P(p->wq), P(p->bq), N, C, C);
      bwt_matmul_forward(a->k, a->ln1.out, P(p->wk), P(p->bk), N, C, C);
      bwt_matmul_forward(a->v, a->ln1.out, P(p->wv), P(p->bv), N, C, C);
      BWT_TRY(bwt_attention_forward(a->atty, a->att, a->q, a->k, a->v,
                                    m->head_mask + (size_t)l * c->n_heads, B, T, C, c->n_heads));
      bwt_matmul_forward(a->xmid, a->atty, P(p->wo), P(p->bo), N, C, C);
      bwt_add_inplace(a->xmid, x, (size_t)N * C);
    }
    if (m->skip_mlp[l])
      memcpy(xnext, a->xmid, sizeof(float) * N * C);
    else
      ffn_forward(m, &p->ffn, &a->ffn, xnext, a->xmid, N);
  }
  readout_forward(m, &t->readout, &t->out, t->x + (size_t)c->n_layers * N * C, batch);
  *logits = t->out.logits;
  return BWT_STATUS_OK;
}

static bwt_status backward(bwt_model *m, const bwt_batch *batch, const float *dlogits) {
  const bwt_model_config *c = &m->cfg;
  transformer *t = model_arch(m);
  int B = batch->B, T = batch->T, N = B * T, C = c->d_model;
  size_t NC = (size_t)N * C;

  memset(t->dx, 0, sizeof(float) * NC);
  readout_backward(m, &t->readout, &t->out, t->dx, dlogits, batch);

  /* t->dx carries ∂L/∂(residual stream) backwards through the blocks. */
  for (int l = c->n_layers - 1; l >= 0; l--) {
    const block_params *p = &t->blocks[l];
    const block_acts *a = &t->acts[l];
    const float *x = t->x + (size_t)l * NC;
    if (!m->skip_mlp[l]) ffn_backward(m, &p->ffn, &a->ffn, &t->ffn_s, t->dx, a->xmid, N);
    if (m->skip_attn[l]) continue;
    memset(t->datty, 0, sizeof(float) * NC);
    memset(t->dq, 0, sizeof(float) * NC);
    memset(t->dk, 0, sizeof(float) * NC);
    memset(t->dv, 0, sizeof(float) * NC);
    memset(t->ffn_s.dnorm, 0, sizeof(float) * NC);
    bwt_matmul_backward(t->datty, G(p->wo), G(p->bo), t->dx, a->atty, P(p->wo), N, C, C);
    BWT_TRY(bwt_attention_backward(t->dq, t->dk, t->dv, t->datty, a->att, a->q, a->k, a->v,
                                   m->head_mask + (size_t)l * c->n_heads, B, T, C, c->n_heads));
    float *dln = t->ffn_s.dnorm; /* reused: the MLP branch is done with it */
    bwt_matmul_backward(dln, G(p->wq), G(p->bq), t->dq, a->ln1.out, P(p->wq), N, C, C);
    bwt_matmul_backward(dln, G(p->wk), G(p->bk), t->dk, a->ln1.out, P(p->wk), N, C, C);
    bwt_matmul_backward(dln, G(p->wv), G(p->bv), t->dv, a->ln1.out, P(p->wv), N, C, C);
    norm_backward(m, &p->ln1, &a->ln1, t->dx, dln, x, N);
  }
  bwt_embedding_backward(G(t->wte), G(t->wpe), t->dx, batch->tokens, B, T, C);
  return BWT_STATUS_OK;
}

const model_arch_ops transformer_ops = {build, forward, backward, destroy};
