/* The recurrent baseline (SPEC.md §2): token + position embedding, stacked LSTM layers of width
 * d_model (torch.nn.LSTM's math and tensor names, "lstm.weight_ih_l0" …), final norm and head at
 * the supervised rows. Activations are time-major (row t·B + b) so that each step's rows are
 * contiguous for the recurrence (src/kernels/cpu/lstm.c). */
#include <stdio.h>
#include <stdlib.h>

#include "bwt/kernels.h"
#include "layers.h"

#define P(off) (m->params + (off))
#define G(off) (m->grads + (off))

typedef struct {
  size_t w_ih, w_hh, b_ih, b_hh;
} lstm_layer;

typedef struct {
  input_params in;
  lstm_layer *layers; /* (n_layers) */
  readout_params readout;
  float *arena;
  size_t arena_cap;
  int32_t *sup;  /* (M) the supervised rows among the time-major N (sup_rows_index) */
  size_t sup_cap;
  float *x;      /* (n_layers+1, T, B, C): the input of each layer; x[l+1] is layer l's h */
  float *gates;  /* (n_layers, T, B, 4C) activated gates */
  float *c;      /* (n_layers, T, B, C) cell states */
  float *xs;     /* (M,C) the last layer's h at the supervised rows */
  readout_acts ro;
  float *dx, *dxin; /* (T,B,C) gradients of a layer's output and input */
  float *dgates;    /* (T,B,4C) */
  float *dc;        /* (B,C) */
  float *dxs;       /* (M,C) */
} lstm;

static bwt_status build(bwt_model *m) {
  const bwt_model_config *c = &m->cfg;
  lstm *t = bwt_calloc(1, sizeof *t, "lstm");
  if (!t) return BWT_STATUS_NOMEM;
  ((model_impl *)m->impl)->arch = t;
  t->layers = bwt_calloc(c->n_layers, sizeof *t->layers, "lstm layers");
  if (!t->layers) return BWT_STATUS_NOMEM;
  int C = c->d_model;
  input_declare(m, &t->in);
  char name[2 * BWT_TENSOR_NAME_MAX];
  for (int l = 0; l < c->n_layers; l++) {
    lstm_layer *y = &t->layers[l];
#define ADD(field, what, role, ndim, d0, d1)                   \
  snprintf(name, sizeof name, "lstm.%s_l%d", what, l);         \
  y->field = model_add_tensor(m, name, TENSOR_ID(role, l), ndim, d0, d1, INIT_UNIFORM_HIDDEN)
    ADD(w_ih, "weight_ih", BWT_ROLE_RECURRENT_IN, 2, 4 * C, C);
    ADD(w_hh, "weight_hh", BWT_ROLE_RECURRENT_HIDDEN, 2, 4 * C, C);
    ADD(b_ih, "bias_ih", BWT_ROLE_RECURRENT_IN, 1, 4 * C, 0);
    ADD(b_hh, "bias_hh", BWT_ROLE_RECURRENT_HIDDEN, 1, 4 * C, 0);
#undef ADD
  }
  readout_declare(m, &t->readout, t->in.wte);
  return BWT_STATUS_OK;
}

static void destroy(bwt_model *m) {
  lstm *t = model_arch(m);
  free(t->layers);
  free(t->sup);
  bwt_buffer_free(t->arena);
  free(t);
}

static size_t carve(lstm *t, const bwt_model_config *c, float *base, int B, int T, int M) {
  size_t off = 0, N = (size_t)B * T, C = c->d_model, L = c->n_layers;
#define TAKE(ptr, n) (ptr = base ? base + off : NULL, off += (n))
  TAKE(t->x, (L + 1) * N * C);
  TAKE(t->gates, L * N * 4 * C);
  TAKE(t->c, L * N * C);
  TAKE(t->xs, (size_t)M * C);
  TAKE(t->dx, N * C);
  TAKE(t->dxin, N * C);
  TAKE(t->dgates, N * 4 * C);
  TAKE(t->dc, (size_t)B * C);
  TAKE(t->dxs, (size_t)M * C);
  if (base) readout_carve(c, &t->ro, base + off, M);
  off += readout_floats(c, M);
#undef TAKE
  return off;
}

static bwt_status forward(bwt_model *m, const bwt_batch *batch, const float **logits) {
  const bwt_model_config *c = &m->cfg;
  lstm *t = model_arch(m);
  int B = batch->B, T = batch->T, N = B * T, M = B * batch->n_sup, C = c->d_model;
  BWT_TRY(model_reserve(&t->arena, &t->arena_cap, carve(t, c, NULL, B, T, M), "activations"));
  carve(t, c, t->arena, B, T, M);
  BWT_TRY(model_reserve_index(&t->sup, &t->sup_cap, (size_t)M));
  sup_rows_index(t->sup, batch, 1);

  BWT_TRY(input_forward(m, &t->in, t->dxin, batch)); /* batch-major, into free scratch */
  bwt_transpose(t->x, t->dxin, B, T, C);
  for (int l = 0; l < c->n_layers; l++) {
    const lstm_layer *y = &t->layers[l];
    float *gates = t->gates + (size_t)l * N * 4 * C;
    bwt_matmul_forward(gates, t->x + (size_t)l * N * C, P(y->w_ih), P(y->b_ih), N, C, 4 * C);
    bwt_lstm_forward(t->x + (size_t)(l + 1) * N * C, t->c + (size_t)l * N * C, gates, P(y->w_hh),
                     P(y->b_hh), T, B, C);
  }
  const float *top = t->x + (size_t)c->n_layers * N * C;
  bwt_gather_rows(t->xs, top, t->sup, M, C);
  readout_forward(m, &t->readout, &t->ro, t->xs, M);
  *logits = t->ro.logits;
  return BWT_STATUS_OK;
}

static bwt_status backward(bwt_model *m, const bwt_batch *batch, const float *dlogits, bwt_attention_trace *trace) {
  const bwt_model_config *c = &m->cfg;
  lstm *t = model_arch(m);
  int B = batch->B, T = batch->T, N = B * T, M = B * batch->n_sup, C = c->d_model;

  bwt_zero(t->dxs, (size_t)M * C);
  readout_backward(m, &t->readout, &t->ro, t->dxs, t->xs, dlogits, M);
  bwt_zero(t->dx, (size_t)N * C);
  bwt_scatter_add_rows(t->dx, t->dxs, t->sup, M, C);
  for (int l = c->n_layers - 1; l >= 0; l--) {
    const lstm_layer *y = &t->layers[l];
    const float *gates = t->gates + (size_t)l * N * 4 * C, *x = t->x + (size_t)l * N * C;
    const float *h = t->x + (size_t)(l + 1) * N * C;
    bwt_lstm_backward(t->dgates, t->dx, t->dc, gates, t->c + (size_t)l * N * C, P(y->w_hh), T, B, C);
    bwt_zero(t->dxin, (size_t)N * C);
    bwt_matmul_backward(t->dxin, G(y->w_ih), G(y->b_ih), t->dgates, x, P(y->w_ih), N, C, 4 * C);
    /* W_hh met h_{t−1} at step t: the gate rows from step 1 on against h's rows up to T−2. */
    bwt_matmul_backward(NULL, G(y->w_hh), NULL, t->dgates + (size_t)B * 4 * C, h, P(y->w_hh), (T - 1) * B, C, 4 * C);
    bwt_matmul_backward(NULL, NULL, G(y->b_hh), t->dgates, NULL, NULL, N, C, 4 * C);
    float *swap = t->dx;
    t->dx = t->dxin, t->dxin = swap;
  }
  bwt_transpose(t->dxin, t->dx, T, B, C); /* back to batch-major for the input layer */
  input_backward(m, &t->in, t->dxin, batch);
  return BWT_STATUS_OK;
}

const model_arch_ops lstm_ops = {build, forward, backward, destroy, NULL, 0};
