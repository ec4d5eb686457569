/* The reference bijection model: a pre-norm causal transformer (SPEC.md §2).
 * Forward and backward are sequences of op calls; the math lives in src/kernels. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "bwt/kernels.h"
#include "layers.h"

#define P(off) (m->params + (off))
#define G(off) (m->grads + (off))

typedef struct {
  norm_params ln1;
  size_t wq, bq, wk, bk, wv, bv, wo, bo; /* the biases are NO_TENSOR without attn_bias */
  ffn_params ffn;
  moe_params moe; /* instead of ffn when cfg.experts > 0 */
} block_params;

/* The last block is computed on the supervised rows only (M = B·n_sup of the N = B·T rows): its
 * keys and values need every position, but its queries, attention output, MLP and the readout
 * need only the rows the loss reads. The other positions' last-block outputs would be discarded,
 * so this gives the same logits and gradients as computing them, with less work. */
typedef struct {
  norm_acts ln1;    /* (N,C) */
  float *q;         /* (R,C), R = the block's output rows: N, or M for the last block */
  float *k, *v;     /* (N,C) */
  float *att;       /* (B,NH,nq,T) softmax weights, nq = T, or n_sup for the last block */
  float *atty;      /* (R,C) attention output before the O projection */
  float *xmid;      /* (R,C) residual stream between the attention and the MLP */
  ffn_acts ffn;     /* (R rows) */
  moe_acts moe;     /* (R rows) with experts */
} block_acts;

typedef struct {
  input_params in;
  readout_params readout;
  block_params *blocks; /* (n_layers) */
  /* Activations, carved from one arena for the current batch shape. */
  float *arena;
  size_t arena_cap;
  int32_t *sup;     /* (M) the supervised rows among the N (sup_rows_index), for this batch */
  size_t sup_cap;
  int32_t *routes;  /* the experts' routing indices of every block (moe_carve_index) */
  size_t routes_cap;
  block_acts *acts; /* (n_layers) */
  float *x;         /* (n_layers, N, C): the residual stream entering each block */
  float *xs, *lnq;  /* (M,C): the last block's input and normed input at the supervised rows */
  float *out;       /* (M,C): the last block's output, the readout's input */
  readout_acts ro;  /* final norm, logits */
  /* Gradient scratch. */
  float *dx, *dq, *dk, *dv, *datty; /* (N,C) */
  float *dxs, *dlnq;                /* (M,C) */
  ffn_scratch ffn_s;
  moe_scratch moe_s;
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
  input_declare(m, &t->in);
  char name[2 * BWT_TENSOR_NAME_MAX]; /* room for gcc's truncation analysis; names are checked on entry */
  for (int l = 0; l < c->n_layers; l++) {
    block_params *b = &t->blocks[l];
#define ADD(weight, bias, suffix, role, init)                          \
  snprintf(name, sizeof name, "blocks.%d.attn.%s.weight", l, suffix);  \
  b->weight = model_add_tensor(m, name, TENSOR_ID(role, l), 2, C, C, init); \
  snprintf(name, sizeof name, "blocks.%d.attn.%s.bias", l, suffix);    \
  b->bias = c->attn_bias ? model_add_bias(m, name, TENSOR_ID(role, l), C, C) : NO_TENSOR
    snprintf(name, sizeof name, "blocks.%d.norm1", l);
    norm_declare(m, &b->ln1, name, TENSOR_ID(BWT_ROLE_ATTN_NORM, l));
    ADD(wq, bq, "wq", BWT_ROLE_ATTN_Q, INIT_WEIGHT);
    ADD(wk, bk, "wk", BWT_ROLE_ATTN_K, INIT_WEIGHT);
    ADD(wv, bv, "wv", BWT_ROLE_ATTN_V, INIT_WEIGHT);
    ADD(wo, bo, "wo", BWT_ROLE_ATTN_O, INIT_WEIGHT_RESIDUAL);
#undef ADD
    snprintf(name, sizeof name, "blocks.%d.mlp", l);
    if (c->experts > 0)
      moe_declare(m, &b->moe, name, l);
    else
      ffn_declare(m, &b->ffn, name, l);
  }
  readout_declare(m, &t->readout, t->in.wte);
  return BWT_STATUS_OK;
}

static void destroy(bwt_model *m) {
  transformer *t = model_arch(m);
  free(t->blocks);
  free(t->acts);
  free(t->sup);
  free(t->routes);
  bwt_buffer_free(t->arena);
  free(t);
}

/* Assigns every activation pointer from base (or only counts when base is NULL); returns floats. */
static size_t carve(transformer *t, const bwt_model_config *c, float *base, int B, int T, int n_sup) {
  size_t off = 0, N = (size_t)B * T, M = (size_t)B * n_sup, C = c->d_model, H = 4 * C, L = c->n_layers;
#define TAKE(ptr, n) (ptr = base ? base + off : NULL, off += (n))
  TAKE(t->x, L * N * C);
  for (size_t l = 0; l < L; l++) {
    block_acts *a = &t->acts[l];
    size_t R = l + 1 == L ? M : N, nq = l + 1 == L ? (size_t)n_sup : (size_t)T;
    TAKE(a->ln1.out, N * C);
    TAKE(a->ln1.mean, N);
    TAKE(a->ln1.rstd, N);
    TAKE(a->q, R * C);
    TAKE(a->k, N * C);
    TAKE(a->v, N * C);
    TAKE(a->att, (size_t)B * c->n_heads * nq * T);
    TAKE(a->atty, R * C);
    TAKE(a->xmid, R * C);
    if (c->experts > 0) {
      off += moe_carve(&t->blocks[l].moe, &a->moe, base ? base + off : NULL, (int)R);
      continue;
    }
    TAKE(a->ffn.norm.out, R * C);
    TAKE(a->ffn.norm.mean, R);
    TAKE(a->ffn.norm.rstd, R);
    TAKE(a->ffn.pre, R * H);
    TAKE(a->ffn.act, R * H);
  }
  TAKE(t->xs, M * C);
  TAKE(t->lnq, M * C);
  TAKE(t->out, M * C);
  TAKE(t->dx, N * C);
  TAKE(t->dxs, M * C);
  TAKE(t->dlnq, M * C);
  TAKE(t->ffn_s.dnorm, N * C);
  TAKE(t->ffn_s.dact, N * H);
  TAKE(t->ffn_s.dpre, N * H);
  if (c->experts > 0) off += moe_scratch_carve(&t->blocks[0].moe, &t->moe_s, base ? base + off : NULL, (int)N);
  /* A block's attention backward runs after its MLP backward is done with dact and dpre: the
   * attention's four (N,C) gradients live there. */
  if (base) {
    t->dq = t->ffn_s.dact;
    t->dk = t->dq + N * C;
    t->dv = t->dk + N * C;
    t->datty = t->dv + N * C;
  }
  if (base) readout_carve(c, &t->ro, base + off, (int)M);
  off += readout_floats(c, (int)M);
#undef TAKE
  return off;
}

/* The blocks' routing indices from base (or only counts when base is NULL); returns indices. */
static size_t carve_routes(transformer *t, const bwt_model_config *c, int32_t *base, int B, int T, int n_sup) {
  size_t off = 0;
  for (int l = 0; l < c->n_layers; l++)
    off += moe_carve_index(&t->blocks[l].moe, &t->acts[l].moe, base ? base + off : NULL, l + 1 == c->n_layers ? B * n_sup : B * T);
  return off;
}

/* Block l from its input x (N,C) to xout: (N,C), or for the last block (sparse) the supervised
 * rows only, (M,C). */
static bwt_status block_forward(bwt_model *m, int l, const float *x, float *xout,
                                const bwt_batch *batch, int sparse) {
  const bwt_model_config *c = &m->cfg;
  transformer *t = model_arch(m);
  const block_params *p = &t->blocks[l];
  block_acts *a = &t->acts[l];
  int B = batch->B, T = batch->T, N = B * T, C = c->d_model;
  int R = sparse ? B * batch->n_sup : N, nq = sparse ? batch->n_sup : T;
  const int32_t *qpos = sparse ? batch->sup_pos : NULL;
  const float *xr = x; /* the residual input of the output rows */
  if (sparse) {
    bwt_gather_rows(t->xs, x, t->sup, R, C);
    xr = t->xs;
  }
  if (model_skip_attn(m, l)) {
    bwt_copy(a->xmid, xr, (size_t)R * C);
  } else {
    norm_forward(m, &p->ln1, &a->ln1, x, N);
    const float *qin = a->ln1.out;
    if (sparse) {
      bwt_gather_rows(t->lnq, a->ln1.out, t->sup, R, C);
      qin = t->lnq;
    }
    bwt_matmul_forward(a->q, qin, P(p->wq), model_param(m, p->bq), R, C, C);
    bwt_matmul_forward(a->k, a->ln1.out, P(p->wk), model_param(m, p->bk), N, C, C);
    bwt_matmul_forward(a->v, a->ln1.out, P(p->wv), model_param(m, p->bv), N, C, C);
    BWT_TRY(bwt_attention_forward(a->atty, a->att, a->q, a->k, a->v,
                                  model_head_mask(m, l), B, T, C, c->n_heads, nq, qpos));
    bwt_matmul_forward(a->xmid, a->atty, P(p->wo), model_param(m, p->bo), R, C, C);
    bwt_add_inplace(a->xmid, xr, (size_t)R * C);
  }
  a->moe.aux = 0;
  if (model_skip_mlp(m, l))
    bwt_copy(xout, a->xmid, (size_t)R * C);
  else if (c->experts > 0)
    moe_forward(m, &p->moe, &a->moe, xout, a->xmid, R);
  else
    ffn_forward(m, &p->ffn, &a->ffn, xout, a->xmid, R);
  return BWT_STATUS_OK;
}

static bwt_status forward(bwt_model *m, const bwt_batch *batch, const float **logits) {
  const bwt_model_config *c = &m->cfg;
  transformer *t = model_arch(m);
  int B = batch->B, T = batch->T, N = B * T, C = c->d_model, L = c->n_layers;
  BWT_TRY(model_reserve(&t->arena, &t->arena_cap, carve(t, c, NULL, B, T, batch->n_sup), "activations"));
  carve(t, c, t->arena, B, T, batch->n_sup);
  BWT_TRY(model_reserve_index(&t->sup, &t->sup_cap, (size_t)B * batch->n_sup));
  sup_rows_index(t->sup, batch, 0);
  if (c->experts > 0) {
    BWT_TRY(model_reserve_index(&t->routes, &t->routes_cap, carve_routes(t, c, NULL, B, T, batch->n_sup)));
    carve_routes(t, c, t->routes, B, T, batch->n_sup);
  }

  BWT_TRY(input_forward(m, &t->in, t->x, batch));
  model_impl *impl = m->impl;
  for (int l = 0; l < L; l++) {
    float *x = t->x + (size_t)l * N * C;
    BWT_TRY(block_forward(m, l, x, l + 1 < L ? x + (size_t)N * C : t->out, batch, l + 1 == L));
    impl->aux_loss += t->acts[l].moe.aux;
  }
  readout_forward(m, &t->readout, &t->ro, t->out, B * batch->n_sup);
  *logits = t->ro.logits;
  return BWT_STATUS_OK;
}

/* Copies block l's attention into the trace (bwt/capture.h): u is the gradient of the masked
 * output, so the head mask (NULL: 1) multiplies it. */
static void record_trace(bwt_attention_trace *tr, const float *datty, const float *att, const float *v,
                         const float *dv, const float *mask, int R, int NH, size_t n_att, size_t NC) {
  bwt_scale_heads(tr->u, datty, mask, R, tr->C, NH);
  bwt_copy(tr->att, att, n_att);
  bwt_copy(tr->v, v, NC);
  bwt_copy(tr->dv, dv, NC);
}

/* Backward of block l. On entry the gradient of its output is in t->dx (N,C), or for the last
 * block in t->dxs (M,C); on return t->dx holds the gradient of its input x (N,C). */
static bwt_status block_backward(bwt_model *m, int l, const float *x, const bwt_batch *batch,
                                 int sparse, bwt_attention_trace *trace) {
  const bwt_model_config *c = &m->cfg;
  transformer *t = model_arch(m);
  const block_params *p = &t->blocks[l];
  const block_acts *a = &t->acts[l];
  int B = batch->B, T = batch->T, N = B * T, C = c->d_model;
  int R = sparse ? B * batch->n_sup : N, nq = sparse ? batch->n_sup : T;
  const int32_t *qpos = sparse ? batch->sup_pos : NULL;
  size_t NC = (size_t)N * C, RC = (size_t)R * C;
  float *dr = sparse ? t->dxs : t->dx; /* ∂L/∂(output rows), then ∂L/∂xmid */

  if (!model_skip_mlp(m, l)) {
    if (c->experts > 0)
      moe_backward(m, &p->moe, &a->moe, &t->moe_s, dr, a->xmid, R);
    else
      ffn_backward(m, &p->ffn, &a->ffn, &t->ffn_s, dr, a->xmid, R);
  }
  if (sparse) { /* the residual path from the gathered rows */
    bwt_zero(t->dx, NC);
    bwt_scatter_add_rows(t->dx, dr, t->sup, R, C);
  }
  if (model_skip_attn(m, l)) return BWT_STATUS_OK;
  float *dln = t->ffn_s.dnorm; /* reused: the MLP branch is done with it */
  bwt_zero(t->datty, RC);
  bwt_zero(t->dq, RC);
  bwt_zero(t->dk, NC);
  bwt_zero(t->dv, NC);
  bwt_zero(dln, NC);
  bwt_matmul_backward(t->datty, G(p->wo), model_grad(m, p->bo), dr, a->atty, P(p->wo), R, C, C);
  if (trace && trace->layer != l) trace = NULL;
  const float *mask = model_head_mask(m, l);
  BWT_TRY(bwt_attention_backward(t->dq, t->dk, t->dv, t->datty, a->att, a->q, a->k, a->v, mask, B, T, C,
                                 c->n_heads, nq, qpos, trace ? trace->dscore : NULL));
  if (trace) record_trace(trace, t->datty, a->att, a->v, t->dv, mask, R, c->n_heads, (size_t)B * c->n_heads * nq * T, NC);
  if (sparse) {
    bwt_zero(t->dlnq, RC);
    bwt_matmul_backward(t->dlnq, G(p->wq), model_grad(m, p->bq), t->dq, t->lnq, P(p->wq), R, C, C);
    bwt_scatter_add_rows(dln, t->dlnq, t->sup, R, C);
  } else {
    bwt_matmul_backward(dln, G(p->wq), model_grad(m, p->bq), t->dq, a->ln1.out, P(p->wq), N, C, C);
  }
  bwt_matmul_backward(dln, G(p->wk), model_grad(m, p->bk), t->dk, a->ln1.out, P(p->wk), N, C, C);
  bwt_matmul_backward(dln, G(p->wv), model_grad(m, p->bv), t->dv, a->ln1.out, P(p->wv), N, C, C);
  norm_backward(m, &p->ln1, &a->ln1, t->dx, dln, x, N);
  return BWT_STATUS_OK;
}

static bwt_status backward(bwt_model *m, const bwt_batch *batch, const float *dlogits, bwt_attention_trace *trace) {
  const bwt_model_config *c = &m->cfg;
  transformer *t = model_arch(m);
  int B = batch->B, T = batch->T, N = B * T, M = B * batch->n_sup, C = c->d_model, L = c->n_layers;

  bwt_zero(t->dxs, (size_t)M * C);
  readout_backward(m, &t->readout, &t->ro, t->dxs, t->out, dlogits, M);
  for (int l = L - 1; l >= 0; l--)
    BWT_TRY(block_backward(m, l, t->x + (size_t)l * N * C, batch, l + 1 == L, trace));
  input_backward(m, &t->in, t->dx, batch);
  return BWT_STATUS_OK;
}

/* dst(M,C) = the supervised rows of src: src's rows at them (N,C), or with sparse set src already
 * holds just those rows (M,C). */
static void copy_sup_rows(float *dst, const float *src, const transformer *t, int M, int C, int sparse) {
  if (sparse)
    bwt_copy(dst, src, (size_t)M * C);
  else
    bwt_gather_rows(dst, src, t->sup, M, C);
}

/* Block l's router points (bwt/capture.h) at the supervised rows; the chosen experts, host indices,
 * are written as floats. */
static void capture_router(const bwt_model *m, const transformer *t, bwt_capture *cap, int l, int M, int sparse) {
  int E = cap->E, k = cap->top_k;
  float *probs = cap->router_probs ? cap->router_probs + (size_t)l * M * E : NULL;
  float *expert = cap->expert ? cap->expert + (size_t)l * M * k : NULL;
  if (model_skip_mlp(m, l)) { /* the branch was not computed */
    if (probs) bwt_fill(probs, NAN, (size_t)M * E);
    if (expert) bwt_fill(expert, NAN, (size_t)M * k);
    return;
  }
  const moe_acts *a = &t->acts[l].moe;
  if (probs) copy_sup_rows(probs, a->probs, t, M, E, sparse);
  for (int r = 0; expert && r < M; r++)
    for (int s = 0; s < k; s++) expert[(size_t)r * k + s] = (float)a->expert[(size_t)(sparse ? r : t->sup[r]) * k + s];
}

/* The capture points from the activations of the forward just run (see bwt/capture.h). The last
 * block holds its queries and weights at the supervised rows only (sparse); earlier blocks at
 * every position, from which the supervised rows are picked. */
static bwt_status capture(const bwt_model *m, const bwt_batch *batch, bwt_capture *cap) {
  const bwt_model_config *c = &m->cfg;
  const transformer *t = model_arch(m);
  int B = batch->B, T = batch->T, n = batch->n_sup, C = c->d_model, L = c->n_layers, NH = c->n_heads, M = B * n;
  size_t N = (size_t)B * T, MC = (size_t)M * C, NC = N * C;
  size_t per_layer_att = (size_t)B * NH * n * T;
  /* Rows of a block's weights at the supervised queries, and their queries when only scores are asked. */
  int32_t *att_rows = cap->attention ? bwt_calloc((size_t)B * NH * n, sizeof(int32_t), "capture rows") : NULL;
  float *qbuf = cap->scores && !cap->queries ? bwt_buffer_alloc(MC, "capture queries") : NULL;
  bwt_status s = (cap->attention && !att_rows) || (cap->scores && !cap->queries && !qbuf) ? BWT_STATUS_NOMEM : BWT_STATUS_OK;
  if (s == BWT_STATUS_OK && cap->embed) copy_sup_rows(cap->embed, t->x, t, M, C, 0);
  if (s == BWT_STATUS_OK && cap->final_norm) bwt_copy(cap->final_norm, t->ro.norm.out, MC);
  for (int l = 0; s == BWT_STATUS_OK && l < L; l++) {
    const block_acts *a = &t->acts[l];
    int sparse = l + 1 == L;
    if (cap->block_out)
      copy_sup_rows(cap->block_out + l * MC, sparse ? t->out : t->x + (l + 1) * NC, t, M, C, sparse);
    capture_router(m, t, cap, l, M, sparse);
    float *ni = cap->normed_in ? cap->normed_in + l * MC : NULL;
    float *qs = cap->queries ? cap->queries + l * MC : NULL;
    float *ks = cap->keys ? cap->keys + l * NC : NULL, *vs = cap->values ? cap->values + l * NC : NULL;
    float *sc = cap->scores ? cap->scores + l * per_layer_att : NULL;
    float *at = cap->attention ? cap->attention + l * per_layer_att : NULL;
    if (model_skip_attn(m, l)) { /* the branch was not computed */
      float *all[] = {ni, qs, ks, vs, sc, at};
      size_t len[] = {MC, MC, NC, NC, per_layer_att, per_layer_att};
      for (int i = 0; i < 6; i++)
        if (all[i]) bwt_fill(all[i], NAN, len[i]);
      continue;
    }
    if (ni) copy_sup_rows(ni, a->ln1.out, t, M, C, 0);
    float *q = qs ? qs : qbuf;
    if (q) copy_sup_rows(q, a->q, t, M, C, sparse);
    if (ks) bwt_copy(ks, a->k, NC);
    if (vs) bwt_copy(vs, a->v, NC);
    if (at) {
      int nq = sparse ? n : T; /* query rows per (sequence, head) in a->att */
      for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
          for (int j = 0; j < n; j++)
            att_rows[((size_t)b * NH + h) * n + j] = (int32_t)(((size_t)b * NH + h) * nq + (sparse ? j : batch->sup_pos[b * n + j]));
      bwt_gather_rows(at, a->att, att_rows, B * NH * n, T);
    }
    if (sc) bwt_attention_scores(sc, q, a->k, batch->sup_pos, B, T, C, NH, n);
  }
  free(att_rows);
  bwt_buffer_free(qbuf);
  return s;
}

const model_arch_ops transformer_ops = {build, forward, backward, destroy, capture,
                                        BWT_CAPTURE_ALL & ~(unsigned)BWT_CAPTURE_SCAN_STATE};
