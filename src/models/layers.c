#include "layers.h"

#include <stdio.h>
#include <string.h>

#include "bwt/kernels.h"

#define P(off) (m->params + (off))

/* "<prefix>.<suffix>" into name (2·BWT_TENSOR_NAME_MAX); model_add_tensor rejects names too long. */
static const char *join(char *name, const char *prefix, const char *suffix) {
  if (snprintf(name, 2 * BWT_TENSOR_NAME_MAX, "%s.%s", prefix, suffix) >= 2 * BWT_TENSOR_NAME_MAX)
    name[2 * BWT_TENSOR_NAME_MAX - 1] = '\0';
  return name;
}
#define G(off) (m->grads + (off))

void norm_declare(bwt_model *m, norm_params *p, const char *prefix, tensor_id id) {
  char name[2 * BWT_TENSOR_NAME_MAX]; /* room for gcc's truncation analysis; names are checked on entry */
  int C = m->cfg.d_model;
  p->weight = model_add_tensor(m, join(name, prefix, "weight"), id, 1, C, 0, INIT_ONES);
  p->bias = 0;
  if (m->cfg.norm == BWT_NORM_LAYER) {
    p->bias = model_add_tensor(m, join(name, prefix, "bias"), id, 1, C, 0, INIT_ZEROS);
  }
}

void norm_forward(const bwt_model *m, const norm_params *p, const norm_acts *a, const float *inp,
                  int N) {
  int C = m->cfg.d_model;
  if (m->cfg.norm == BWT_NORM_LAYER)
    bwt_layernorm_forward(a->out, a->mean, a->rstd, inp, P(p->weight), P(p->bias), N, C);
  else
    bwt_rmsnorm_forward(a->out, a->rstd, inp, P(p->weight), N, C);
}

void norm_backward(bwt_model *m, const norm_params *p, const norm_acts *a, float *dinp,
                   const float *dout, const float *inp, int N) {
  int C = m->cfg.d_model;
  if (m->cfg.norm == BWT_NORM_LAYER)
    bwt_layernorm_backward(dinp, G(p->weight), G(p->bias), dout, inp, P(p->weight), a->mean,
                           a->rstd, N, C);
  else
    bwt_rmsnorm_backward(dinp, G(p->weight), dout, inp, P(p->weight), a->rstd, N, C);
}

void fc_declare(bwt_model *m, fc_params *p, const char *prefix, int layer, int H) {
  char name[2 * BWT_TENSOR_NAME_MAX]; /* room for gcc's truncation analysis; names are checked on entry */
  int C = m->cfg.d_model;
  tensor_id in = TENSOR_ID(BWT_ROLE_MLP_IN, layer), out = TENSOR_ID(BWT_ROLE_MLP_OUT, layer);
  p->H = H;
  p->fc1_w = model_add_tensor(m, join(name, prefix, "fc1.weight"), in, 2, H, C, INIT_WEIGHT);
  p->fc1_b = model_add_bias(m, join(name, prefix, "fc1.bias"), in, H, C);
  p->fc2_w = model_add_tensor(m, join(name, prefix, "fc2.weight"), out, 2, C, H, INIT_WEIGHT_RESIDUAL);
  p->fc2_b = model_add_bias(m, join(name, prefix, "fc2.bias"), out, C, H);
}

void fc_forward(const bwt_model *m, const fc_params *p, float *out, float *pre, float *act, const float *h, int N) {
  int C = m->cfg.d_model, H = p->H;
  bwt_matmul_forward(pre, h, P(p->fc1_w), P(p->fc1_b), N, C, H);
  bwt_gelu_forward(act, pre, (size_t)N * H);
  bwt_matmul_forward(out, act, P(p->fc2_w), P(p->fc2_b), N, H, C);
}

void fc_backward(bwt_model *m, const fc_params *p, float *dh, float *dact, float *dpre, const float *dout,
                 const float *pre, const float *act, const float *h, int N) {
  int C = m->cfg.d_model, H = p->H;
  bwt_zero(dact, (size_t)N * H);
  bwt_zero(dpre, (size_t)N * H);
  bwt_matmul_backward(dact, G(p->fc2_w), G(p->fc2_b), dout, act, P(p->fc2_w), N, H, C);
  bwt_gelu_backward(dpre, dact, pre, (size_t)N * H);
  bwt_matmul_backward(dh, G(p->fc1_w), G(p->fc1_b), dpre, h, P(p->fc1_w), N, C, H);
}

void ffn_declare(bwt_model *m, ffn_params *p, const char *prefix, int layer) {
  char name[2 * BWT_TENSOR_NAME_MAX]; /* room for gcc's truncation analysis; names are checked on entry */
  norm_declare(m, &p->norm, join(name, prefix, "norm"), TENSOR_ID(BWT_ROLE_MLP_NORM, layer));
  fc_declare(m, &p->fc, prefix, layer, 4 * m->cfg.d_model);
}

void ffn_forward(const bwt_model *m, const ffn_params *p, const ffn_acts *a, float *out,
                 const float *x, int N) {
  norm_forward(m, &p->norm, &a->norm, x, N);
  fc_forward(m, &p->fc, out, a->pre, a->act, a->norm.out, N);
  bwt_add_inplace(out, x, (size_t)N * m->cfg.d_model);
}

void ffn_backward(bwt_model *m, const ffn_params *p, const ffn_acts *a, const ffn_scratch *s,
                  float *dx, const float *x, int N) {
  bwt_zero(s->dnorm, (size_t)N * m->cfg.d_model);
  fc_backward(m, &p->fc, s->dnorm, s->dact, s->dpre, dx, a->pre, a->act, a->norm.out, N);
  /* dx already holds the identity path's gradient; the norm adds the branch's. */
  norm_backward(m, &p->norm, &a->norm, dx, s->dnorm, x, N);
}

void input_declare(bwt_model *m, input_params *p) {
  const bwt_model_config *c = &m->cfg;
  memset(p, 0, sizeof *p);
  if (c->input_dim > 0) {
    tensor_id in = TENSOR_ID(BWT_ROLE_INPUT_PROJ, -1);
    p->w_in = model_add_tensor(m, "in_proj.weight", in, 2, c->d_model, c->input_dim, INIT_WEIGHT);
    p->b_in = model_add_bias(m, "in_proj.bias", in, c->d_model, c->input_dim);
  } else {
    p->wte = model_add_tensor(m, "tok_emb", TENSOR_ID(BWT_ROLE_TOKEN_EMBEDDING, -1), 2, c->vocab, c->d_model, INIT_EMBEDDING);
  }
  p->wpe = model_declare_positions(m);
}

bwt_status input_forward(bwt_model *m, const input_params *p, float *x, const bwt_batch *batch) {
  int B = batch->B, T = batch->T, C = m->cfg.d_model, rows = T;
  const int32_t *off = batch->pos_offset;
  for (int b = 0; off && b < B; b++)
    if (off[b] + T > rows) rows = off[b] + T;
  const float *pe = model_positions(m, p->wpe, rows);
  if (!pe) return BWT_STATUS_NOMEM;
  if (m->cfg.input_dim == 0) {
    bwt_embedding_forward(x, batch->tokens, P(p->wte), pe, off, batch->pos_offset_from, B, T, C);
    return BWT_STATUS_OK;
  }
  bwt_matmul_forward(x, batch->inputs, P(p->w_in), P(p->b_in), B * T, m->cfg.input_dim, C);
  for (int b = 0; b < B; b++) { /* positions 0..from-1 in place, the rest shifted */
    int from = off && batch->pos_offset_from < T ? batch->pos_offset_from : T;
    float *xb = x + (size_t)b * T * C;
    bwt_add_inplace(xb, pe, (size_t)from * C);
    if (from < T) bwt_add_inplace(xb + (size_t)from * C, pe + (size_t)(from + off[b]) * C, (size_t)(T - from) * C);
  }
  return BWT_STATUS_OK;
}

void input_backward(bwt_model *m, const input_params *p, const float *dx, const bwt_batch *batch) {
  int B = batch->B, T = batch->T, C = m->cfg.d_model;
  float *gpe = model_position_grads(m, p->wpe);
  if (m->cfg.input_dim == 0) {
    bwt_embedding_backward(G(p->wte), gpe, dx, batch->tokens, batch->pos_offset, batch->pos_offset_from, B, T, C);
    return;
  }
  bwt_matmul_backward(NULL, G(p->w_in), G(p->b_in), dx, batch->inputs, P(p->w_in), B * T, m->cfg.input_dim, C);
  bwt_embedding_backward(NULL, gpe, dx, NULL, batch->pos_offset, batch->pos_offset_from, B, T, C); /* positions only */
}

void sup_rows_index(int32_t *idx, const bwt_batch *batch, int time_major) {
  for (int r = 0; r < batch->B * batch->n_sup; r++) {
    int b = r / batch->n_sup, pos = batch->sup_pos[r];
    idx[r] = time_major ? pos * batch->B + b : b * batch->T + pos;
  }
}

void readout_declare(bwt_model *m, readout_params *p, size_t wte) {
  norm_declare(m, &p->norm, "norm_f", TENSOR_ID(BWT_ROLE_FINAL_NORM, -1));
  p->head = m->cfg.tied_head ? wte
                             : model_add_tensor(m, "head.weight", TENSOR_ID(BWT_ROLE_HEAD, -1), 2, m->cfg.n_classes,
                                                m->cfg.d_model, INIT_WEIGHT);
}

size_t readout_floats(const bwt_model_config *c, int M) {
  return (size_t)M * (2 * (size_t)c->d_model + 2 + c->n_classes);
}

void readout_carve(const bwt_model_config *c, readout_acts *a, float *base, int M) {
  size_t MC = (size_t)M * c->d_model;
  a->norm.out = base;
  a->norm.mean = a->norm.out + MC;
  a->norm.rstd = a->norm.mean + M;
  a->logits = a->norm.rstd + M;
  a->dh = a->logits + (size_t)M * c->n_classes;
}

void readout_forward(const bwt_model *m, const readout_params *p, const readout_acts *a,
                     const float *x, int M) {
  norm_forward(m, &p->norm, &a->norm, x, M);
  bwt_matmul_forward(a->logits, a->norm.out, P(p->head), NULL, M, m->cfg.d_model, m->cfg.n_classes);
}

void readout_backward(bwt_model *m, const readout_params *p, const readout_acts *a, float *dx,
                      const float *x, const float *dlogits, int M) {
  int C = m->cfg.d_model;
  bwt_zero(a->dh, (size_t)M * C);
  bwt_matmul_backward(a->dh, G(p->head), NULL, dlogits, a->norm.out, P(p->head), M, C, m->cfg.n_classes);
  norm_backward(m, &p->norm, &a->norm, dx, a->dh, x, M);
}
