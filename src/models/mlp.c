/* Flat baselines (SPEC.md §2): the context-free residual MLP (the reference's control, which sees
 * only its own token and position) and the context-window MLP (the embeddings of the last `window`
 * tokens concatenated and projected), sharing the residual blocks, final norm and head. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
  float *u;          /* (N, window·C) concatenated window embeddings (window_mlp only) */
  float *x;          /* (n_layers+1, N, C) residual stream */
  ffn_acts *acts;    /* (n_layers) */
  readout_acts out; /* the supervised rows, final norm, logits */
  float *dx, *du;    /* (N,C), (N, window·C) */
  ffn_scratch ffn_s;
} mlp;

static int is_window(const bwt_model *m) { return m->cfg.arch == BWT_ARCH_WINDOW_MLP; }

static bwt_status build(bwt_model *m) {
  const bwt_model_config *c = &m->cfg;
  mlp *t = bwt_calloc(1, sizeof *t, "mlp");
  if (!t) return BWT_STATUS_NOMEM;
  ((model_impl *)m->impl)->arch = t;
  t->blocks = bwt_calloc(c->n_layers, sizeof *t->blocks, "mlp blocks");
  t->acts = bwt_calloc(c->n_layers, sizeof *t->acts, "mlp blocks");
  if (!t->blocks || !t->acts) return BWT_STATUS_NOMEM;
  int C = c->d_model;
  t->wte = model_add_tensor(m, "tok_emb", 2, c->vocab, C, INIT_NORMAL);
  t->wpe = model_add_tensor(m, "pos_emb", 2, c->max_T, C, INIT_NORMAL);
  if (is_window(m)) {
    t->win_w = model_add_tensor(m, "window.weight", 2, C, c->window * C, INIT_NORMAL);
    t->win_b = model_add_tensor(m, "window.bias", 1, C, 0, INIT_ZEROS);
  }
  char name[2 * BWT_TENSOR_NAME_MAX]; /* room for gcc's truncation analysis; names are checked on entry */
  for (int l = 0; l < c->n_layers; l++) {
    snprintf(name, sizeof name, "blocks.%d.mlp", l);
    ffn_declare(m, &t->blocks[l], name);
  }
  readout_declare(m, &t->readout, t->wte);
  return BWT_STATUS_OK;
}

static void destroy(bwt_model *m) {
  mlp *t = model_arch(m);
  free(t->blocks);
  free(t->acts);
  free(t->arena);
  free(t);
}

static size_t carve(mlp *t, const bwt_model_config *c, float *base, int B, int T, int M) {
  size_t off = 0, N = (size_t)B * T, C = c->d_model, H = 4 * C, L = c->n_layers;
  size_t W = c->arch == BWT_ARCH_WINDOW_MLP ? (size_t)c->window * C : 0;
#define TAKE(ptr, n) (ptr = base ? base + off : NULL, off += (n))
  TAKE(t->u, N * W);
  TAKE(t->du, N * W);
  TAKE(t->x, (L + 1) * N * C);
  for (size_t l = 0; l < L; l++) {
    TAKE(t->acts[l].norm.out, N * C);
    TAKE(t->acts[l].norm.mean, N);
    TAKE(t->acts[l].norm.rstd, N);
    TAKE(t->acts[l].pre, N * H);
    TAKE(t->acts[l].act, N * H);
  }
  TAKE(t->dx, N * C);
  TAKE(t->ffn_s.dnorm, N * C);
  TAKE(t->ffn_s.dact, N * H);
  TAKE(t->ffn_s.dpre, N * H);
  if (base) readout_carve(c, &t->out, base + off, M);
  off += readout_floats(c, M);
#undef TAKE
  return off;
}

/* u[b,t, j·C .. (j+1)·C) = tok_emb[tokens[b, t−j]], zeros where t−j < 0. */
static void window_gather(const bwt_model *m, const mlp *t, const bwt_batch *batch) {
  int C = m->cfg.d_model, w = m->cfg.window, T = batch->T;
  for (int b = 0; b < batch->B; b++)
    for (int s = 0; s < T; s++) {
      float *row = t->u + ((size_t)b * T + s) * w * C;
      for (int j = 0; j < w; j++) {
        if (s - j < 0)
          memset(row + (size_t)j * C, 0, sizeof(float) * C);
        else
          memcpy(row + (size_t)j * C, P(t->wte) + (size_t)batch->tokens[b * T + s - j] * C, sizeof(float) * C);
      }
    }
}

static void window_scatter(bwt_model *m, const mlp *t, const bwt_batch *batch) {
  int C = m->cfg.d_model, w = m->cfg.window, T = batch->T;
  for (int b = 0; b < batch->B; b++)
    for (int s = 0; s < T; s++)
      for (int j = 0; j < w && j <= s; j++)
        bwt_add_inplace(G(t->wte) + (size_t)batch->tokens[b * T + s - j] * C,
                        t->du + (((size_t)b * T + s) * w + j) * C, C);
}

static bwt_status forward(bwt_model *m, const bwt_batch *batch, const float **logits) {
  const bwt_model_config *c = &m->cfg;
  mlp *t = model_arch(m);
  int B = batch->B, T = batch->T, N = B * T, M = B * batch->n_sup, C = c->d_model;
  BWT_TRY(model_reserve(&t->arena, &t->arena_cap, carve(t, c, NULL, B, T, M), "activations"));
  carve(t, c, t->arena, B, T, M);

  if (is_window(m)) {
    window_gather(m, t, batch);
    bwt_matmul_forward(t->x, t->u, P(t->win_w), P(t->win_b), N, c->window * C, C);
    for (int b = 0; b < B; b++) bwt_add_inplace(t->x + (size_t)b * T * C, P(t->wpe), (size_t)T * C);
  } else {
    bwt_embedding_forward(t->x, batch->tokens, P(t->wte), P(t->wpe), B, T, C);
  }
  for (int l = 0; l < c->n_layers; l++) {
    float *x = t->x + (size_t)l * N * C;
    ffn_forward(m, &t->blocks[l], &t->acts[l], x + (size_t)N * C, x, N);
  }
  readout_forward(m, &t->readout, &t->out, t->x + (size_t)c->n_layers * N * C, batch);
  *logits = t->out.logits;
  return BWT_STATUS_OK;
}

static bwt_status backward(bwt_model *m, const bwt_batch *batch, const float *dlogits) {
  const bwt_model_config *c = &m->cfg;
  mlp *t = model_arch(m);
  int B = batch->B, T = batch->T, N = B * T, C = c->d_model;

  memset(t->dx, 0, sizeof(float) * N * C);
  readout_backward(m, &t->readout, &t->out, t->dx, dlogits, batch);
  for (int l = c->n_layers - 1; l >= 0; l--)
    ffn_backward(m, &t->blocks[l], &t->acts[l], &t->ffn_s, t->dx, t->x + (size_t)l * N * C, N);
  if (is_window(m)) {
    size_t W = (size_t)c->window * C;
    memset(t->du, 0, sizeof(float) * N * W);
    bwt_matmul_backward(t->du, G(t->win_w), G(t->win_b), t->dx, t->u, P(t->win_w), N, (int)W, C);
    for (int b = 0; b < B; b++) bwt_add_inplace(G(t->wpe), t->dx + (size_t)b * T * C, (size_t)T * C);
    window_scatter(m, t, batch);
  } else {
    bwt_embedding_backward(G(t->wte), G(t->wpe), t->dx, batch->tokens, B, T, C);
  }
  return BWT_STATUS_OK;
}

const model_arch_ops mlp_ops = {build, forward, backward, destroy};
