/* The mixture-of-experts MLP (docs/moe.md): a router picks the top-k experts of each row, each
 * expert runs on the rows routed to it, and their outputs return weighted by the gates. The
 * load-balancing loss (Switch Transformer) is computed in the forward and its gradient added in
 * the backward. Routing indices are host memory, rebuilt per forward (as the supervised rows). */
#include <stdio.h>

#include "bwt/kernels.h"
#include "layers.h"

#define P(off) (m->params + (off))
#define G(off) (m->grads + (off))

void moe_declare(bwt_model *m, moe_params *p, const char *prefix, int layer) {
  const bwt_model_config *c = &m->cfg;
  char name[2 * BWT_TENSOR_NAME_MAX]; /* room for gcc's truncation analysis; names are checked on entry */
  p->C = c->d_model;
  p->E = c->experts;
  p->k = c->expert_top_k;
  /* 0: the dense MLP's 4C hidden units shared among the k active experts, so that a row meets as
   * many MLP weights as in the dense model. */
  p->H = c->expert_hidden > 0 ? c->expert_hidden : 4 * c->d_model / p->k;
  snprintf(name, sizeof name, "%s.norm", prefix);
  norm_declare(m, &p->norm, name, TENSOR_ID(BWT_ROLE_MLP_NORM, layer));
  snprintf(name, sizeof name, "%s.router.weight", prefix);
  p->router = model_add_tensor(m, name, TENSOR_ID(BWT_ROLE_MLP_ROUTER, layer), 2, p->E, p->C, INIT_WEIGHT);
  for (int e = 0; e < p->E; e++) {
    snprintf(name, sizeof name, "%s.experts.%d", prefix, e);
    fc_declare(m, &p->experts[e], name, layer, p->H);
  }
}

#define TAKE(ptr, n) (ptr = base ? base + off : NULL, off += (n))

size_t moe_carve(const moe_params *p, moe_acts *a, float *base, int R) {
  size_t off = 0, C = p->C, E = p->E, H = p->H, Rk = (size_t)R * p->k;
  TAKE(a->norm.out, R * C);
  TAKE(a->norm.mean, R);
  TAKE(a->norm.rstd, R);
  TAKE(a->logits, R * E);
  TAKE(a->probs, R * E);
  TAKE(a->gate, Rk);
  TAKE(a->h, Rk * C);
  TAKE(a->pre, Rk * H);
  TAKE(a->act, Rk * H);
  TAKE(a->y, Rk * C);
  return off;
}

size_t moe_carve_index(const moe_params *p, moe_acts *a, int32_t *base, int R) {
  size_t off = 0, Rk = (size_t)R * p->k;
  TAKE(a->expert, Rk);
  TAKE(a->row, Rk);
  TAKE(a->slot, Rk);
  TAKE(a->start, (size_t)p->E + 1);
  return off;
}

size_t moe_scratch_carve(const moe_params *p, moe_scratch *s, float *base, int R) {
  size_t off = 0, C = p->C;
  TAKE(s->dh, R * C);
  TAKE(s->dy, R * C);
  TAKE(s->dhe, R * C);
  TAKE(s->dact, (size_t)R * p->H);
  TAKE(s->dpre, (size_t)R * p->H);
  TAKE(s->dlogits, (size_t)R * p->E);
  TAKE(s->dgate, (size_t)R * p->k);
  TAKE(s->coef, (size_t)p->E);
  return off;
}
#undef TAKE

/* The (row, choice) entries grouped by expert, rows increasing within each (a stable counting sort):
 * expert e's rows are row[start[e] .. start[e+1]−1]. */
static void dispatch(const moe_params *p, const moe_acts *a, int R) {
  int n = R * p->k, next[MOE_MAX_EXPERTS];
  for (int e = 0; e <= p->E; e++) a->start[e] = 0;
  for (int i = 0; i < n; i++) a->start[a->expert[i] + 1]++;
  for (int e = 0; e < p->E; e++) a->start[e + 1] += a->start[e];
  for (int e = 0; e < p->E; e++) next[e] = a->start[e];
  for (int i = 0; i < n; i++) {
    int j = next[a->expert[i]]++;
    a->row[j] = i / p->k;
    a->slot[j] = i;
  }
}

void moe_forward(const bwt_model *m, const moe_params *p, moe_acts *a, float *out, const float *x, int R) {
  int C = p->C, H = p->H, k = p->k;
  norm_forward(m, &p->norm, &a->norm, x, R);
  bwt_matmul_forward(a->logits, a->norm.out, P(p->router), NULL, R, C, p->E);
  bwt_moe_route_forward(a->probs, a->expert, a->gate, a->logits, R, p->E, k);
  a->aux = bwt_moe_balance_loss(NULL, a->probs, a->expert, m->cfg.moe_aux, R, p->E, k);
  dispatch(p, a, R);
  bwt_copy(out, x, (size_t)R * C);
  for (int e = 0; e < p->E; e++) {
    size_t i = (size_t)a->start[e];
    int n = a->start[e + 1] - a->start[e];
    if (n == 0) continue;
    bwt_gather_rows(a->h + i * C, a->norm.out, a->row + i, n, C);
    fc_forward(m, &p->experts[e], a->y + i * C, a->pre + i * H, a->act + i * H, a->h + i * C, n);
    bwt_moe_combine_forward(out, a->y + i * C, a->gate, a->slot + i, k, n, C);
  }
}

void moe_backward(bwt_model *m, const moe_params *p, const moe_acts *a, const moe_scratch *s, float *dx,
                  const float *x, int R) {
  int C = p->C, H = p->H, k = p->k, E = p->E;
  bwt_zero(s->dh, (size_t)R * C);
  bwt_zero(s->dgate, (size_t)R * k);
  bwt_zero(s->dlogits, (size_t)R * E);
  for (int e = 0; e < E; e++) { /* each expert on its rows, their input gradients scattered back in order */
    size_t i = (size_t)a->start[e];
    int n = a->start[e + 1] - a->start[e];
    if (n == 0) continue;
    bwt_zero(s->dy, (size_t)n * C);
    bwt_zero(s->dhe, (size_t)n * C);
    bwt_moe_combine_backward(s->dy, s->dgate, dx, a->y + i * C, a->gate, a->slot + i, k, n, C);
    fc_backward(m, &p->experts[e], s->dhe, s->dact, s->dpre, s->dy, a->pre + i * H, a->act + i * H, a->h + i * C, n);
    bwt_scatter_add_rows(s->dh, s->dhe, a->row + i, n, C);
  }
  const float *coef = NULL;
  if (m->cfg.moe_aux > 0) {
    bwt_moe_balance_loss(s->coef, a->probs, a->expert, m->cfg.moe_aux, R, E, k);
    coef = s->coef;
  }
  bwt_moe_route_backward(s->dlogits, s->dgate, coef, a->probs, a->expert, a->gate, R, E, k);
  bwt_matmul_backward(s->dh, G(p->router), NULL, s->dlogits, a->norm.out, P(p->router), R, C, E);
  /* dx already holds the identity path's gradient; the norm adds the branch's. */
  norm_backward(m, &p->norm, &a->norm, dx, s->dh, x, R);
}
