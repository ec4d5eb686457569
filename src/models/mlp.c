/* Flat baselines (SPEC.md §2): the context-free residual MLP (the reference's control, which sees
 * only its own token and position) and the context-window MLP (the embeddings of the last `window`
 * tokens concatenated and projected), sharing the residual blocks, final norm and head.
 * Positions never mix in these models, so only the supervised rows (M = B·n_sup) are computed:
 * the others would not reach the loss. */
#include <stdio.h>
#include <stdlib.h>

#include "bwt/kernels.h"
#include "layers.h"

#define P(off) (m->params + (off))
#define G(off) (m->grads + (off))

typedef struct {
  size_t wte, wpe, win_w, win_b; /* win_*: the window projection (window_mlp only) */
  readout_params readout;
  ffn_params *blocks;
  float *arena;
  size_t arena_cap;
  int32_t *idx;      /* row indices for this batch: tok, pos, win */
  size_t idx_cap;
  int32_t *tok, *pos; /* (M) the token and the position of each supervised row */
  int32_t *win;      /* (M, window) the token j back from row r's position, −1 before the start */
  float *u;          /* (M, window·C) concatenated window embeddings (window_mlp only) */
  float *x;          /* (n_layers+1, M, C) residual stream at the supervised rows */
  ffn_acts *acts;    /* (n_layers) */
  readout_acts out; /* final norm, logits */
  float *dx, *du;    /* (M,C), (M, window·C) */
  ffn_scratch ffn_s;
} mlp;

static int is_window(const bwt_model *m) { return bwt_model_has(m, BWT_CAP_WINDOW); }

static bwt_status build(bwt_model *m) {
  const bwt_model_config *c = &m->cfg;
  mlp *t = bwt_calloc(1, sizeof *t, "mlp");
  if (!t) return BWT_STATUS_NOMEM;
  ((model_impl *)m->impl)->arch = t;
  t->blocks = bwt_calloc(c->n_layers, sizeof *t->blocks, "mlp blocks");
  t->acts = bwt_calloc(c->n_layers, sizeof *t->acts, "mlp blocks");
  if (!t->blocks || !t->acts) return BWT_STATUS_NOMEM;
  int C = c->d_model;
  t->wte = model_add_tensor(m, "tok_emb", TENSOR_ID(BWT_ROLE_TOKEN_EMBEDDING, -1), 2, c->vocab, C, INIT_EMBEDDING);
  t->wpe = model_declare_positions(m);
  if (is_window(m)) {
    tensor_id win = TENSOR_ID(BWT_ROLE_WINDOW_PROJ, -1);
    t->win_w = model_add_tensor(m, "window.weight", win, 2, C, c->window * C, INIT_WEIGHT);
    t->win_b = model_add_bias(m, "window.bias", win, C, c->window * C);
  }
  char name[2 * BWT_TENSOR_NAME_MAX]; /* room for gcc's truncation analysis; names are checked on entry */
  for (int l = 0; l < c->n_layers; l++) {
    snprintf(name, sizeof name, "blocks.%d.mlp", l);
    ffn_declare(m, &t->blocks[l], name, l);
  }
  readout_declare(m, &t->readout, t->wte);
  return BWT_STATUS_OK;
}

static void destroy(bwt_model *m) {
  mlp *t = model_arch(m);
  free(t->blocks);
  free(t->acts);
  free(t->idx);
  bwt_buffer_free(t->arena);
  free(t);
}

static size_t carve(mlp *t, const bwt_model_config *c, float *base, int M) {
  size_t off = 0, C = c->d_model, H = 4 * C, L = c->n_layers;
  size_t W = bwt_arch_has(c->arch, BWT_CAP_WINDOW) ? (size_t)c->window * C : 0;
#define TAKE(ptr, n) (ptr = base ? base + off : NULL, off += (n))
  TAKE(t->u, M * W);
  TAKE(t->du, M * W);
  TAKE(t->x, (L + 1) * M * C);
  for (size_t l = 0; l < L; l++) {
    TAKE(t->acts[l].norm.out, M * C);
    TAKE(t->acts[l].norm.mean, M);
    TAKE(t->acts[l].norm.rstd, M);
    TAKE(t->acts[l].pre, M * H);
    TAKE(t->acts[l].act, M * H);
  }
  TAKE(t->dx, M * C);
  TAKE(t->ffn_s.dnorm, M * C);
  TAKE(t->ffn_s.dact, M * H);
  TAKE(t->ffn_s.dpre, M * H);
  if (base) readout_carve(c, &t->out, base + off, M);
  off += readout_floats(c, M);
#undef TAKE
  return off;
}

/* The rows the embedding gathers read for this batch (row r = b·n_sup + j at sup_pos[r]). */
static bwt_status index_rows(bwt_model *m, mlp *t, const bwt_batch *batch) {
  int M = batch->B * batch->n_sup, w = is_window(m) ? m->cfg.window : 0;
  BWT_TRY(model_reserve_index(&t->idx, &t->idx_cap, (size_t)M * (2 + w)));
  t->tok = t->idx, t->pos = t->idx + M, t->win = t->idx + 2 * (size_t)M;
  for (int r = 0; r < M; r++) {
    const int32_t *tokens = batch->tokens + (size_t)(r / batch->n_sup) * batch->T;
    int s = t->pos[r] = batch->sup_pos[r];
    t->tok[r] = tokens[s];
    for (int j = 0; j < w; j++) t->win[(size_t)r * w + j] = s - j < 0 ? -1 : tokens[s - j];
  }
  return BWT_STATUS_OK;
}

static bwt_status forward(bwt_model *m, const bwt_batch *batch, const float **logits) {
  const bwt_model_config *c = &m->cfg;
  mlp *t = model_arch(m);
  int M = batch->B * batch->n_sup, C = c->d_model;
  BWT_TRY(model_reserve(&t->arena, &t->arena_cap, carve(t, c, NULL, M), "activations"));
  carve(t, c, t->arena, M);
  BWT_TRY(index_rows(m, t, batch));

  /* x = the window's projection, or the row's token embedding; then its position's row added. */
  if (is_window(m)) {
    bwt_gather_rows(t->u, P(t->wte), t->win, M * c->window, C); /* u[r, j·C ..] = tok_emb[token j back] */
    bwt_matmul_forward(t->x, t->u, P(t->win_w), P(t->win_b), M, c->window * C, C);
  } else {
    bwt_gather_rows(t->x, P(t->wte), t->tok, M, C);
  }
  const float *positions = model_positions(m, t->wpe, batch->T);
  if (!positions) return BWT_STATUS_NOMEM;
  bwt_gather_rows_add(t->x, positions, t->pos, M, C);
  for (int l = 0; l < c->n_layers; l++) {
    float *x = t->x + (size_t)l * M * C;
    ffn_forward(m, &t->blocks[l], &t->acts[l], x + (size_t)M * C, x, M);
  }
  readout_forward(m, &t->readout, &t->out, t->x + (size_t)c->n_layers * M * C, M);
  *logits = t->out.logits;
  return BWT_STATUS_OK;
}

static bwt_status backward(bwt_model *m, const bwt_batch *batch, const float *dlogits, bwt_attention_trace *trace) {
  const bwt_model_config *c = &m->cfg;
  mlp *t = model_arch(m);
  int M = batch->B * batch->n_sup, C = c->d_model;

  bwt_zero(t->dx, (size_t)M * C);
  readout_backward(m, &t->readout, &t->out, t->dx, t->x + (size_t)c->n_layers * M * C, dlogits, M);
  for (int l = c->n_layers - 1; l >= 0; l--)
    ffn_backward(m, &t->blocks[l], &t->acts[l], &t->ffn_s, t->dx, t->x + (size_t)l * M * C, M);
  if (is_window(m)) {
    size_t W = (size_t)c->window * C;
    bwt_zero(t->du, (size_t)M * W);
    bwt_matmul_backward(t->du, G(t->win_w), G(t->win_b), t->dx, t->u, P(t->win_w), M, (int)W, C);
    bwt_scatter_add_rows(G(t->wte), t->du, t->win, M * c->window, C);
  } else {
    bwt_scatter_add_rows(G(t->wte), t->dx, t->tok, M, C);
  }
  /* Rows in order: the same sums for any thread count. */
  float *gpe = model_position_grads(m, t->wpe);
  if (gpe) bwt_scatter_add_rows(gpe, t->dx, t->pos, M, C);
  return BWT_STATUS_OK;
}

const model_arch_ops mlp_ops = {build, forward, backward, destroy, NULL, 0};
