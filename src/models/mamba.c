/* Mamba (Gu & Dao 2023), the selective state-space baseline: token (+ position) embedding, pre-norm
 * residual blocks x += out_proj(scan(SiLU(conv1d(in_x(norm x)))) · SiLU(in_z(norm x))), final norm
 * and head at the supervised rows. Inside a block, with Di = expand·C inner channels, state size
 * Ns and step rank R:
 *   (x, z) = in_proj(norm x)             in_proj (2Di, C): rows [0, Di) give x, [Di, 2Di) give z
 *   u = SiLU(conv1d(x))                  causal depthwise, d_conv taps, with bias
 *   (r, B, C) = x_proj(u)                x_proj (R + 2Ns, Di), rows in that order
 *   Δ = softplus(dt_proj(r))             dt_proj (Di, R) with bias
 *   y = scan(u, Δ, A = −exp(A_log), B, C) + D·u
 *   out = out_proj(y · SiLU(z))          out_proj (C, Di)
 * Tensor names follow the reference implementation's module (mamba_ssm's Mamba: in_proj, conv1d,
 * x_proj, dt_proj, A_log, D, out_proj; "layers.{l}.mixer." and "layers.{l}.norm"); conv1d.weight
 * is stored (Di, d_conv), torch's (Di, 1, d_conv) without its middle axis. Batch-major rows
 * (b·T + t) throughout.
 *
 * The simplified variant (BWT_SSM_SIMPLIFIED, the reference repository's block) differs in: no norm
 * before the block (x += out_proj(…(x))); R = 1 with Δ = clamp(softplus(dt_proj(r)), 1e-4, 10);
 * A_log (Ns) shared by the channels, A = −exp(min(A_log, 5)); the clamped scan
 * (bwt_selective_scan_clamped_forward) without the skip; then y = LayerNorm(scan) + D·u
 * (layers.{l}.mixer.norm). The repository zeroes NaNs in the residual stream after each block; bwt
 * does not (a non-finite loss stops training with an error). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "bwt/kernels.h"
#include "layers.h"

#define P(off) (m->params + (off))
/* The simplified variant's clamps (the repository's constants). */
#define SIMPLIFIED_DELTA_MIN 1e-4f
#define SIMPLIFIED_DELTA_MAX 10.0f
#define SIMPLIFIED_A_LOG_MAX 5.0f
#define G(off) (m->grads + (off))

typedef struct {
  norm_params norm;
  size_t in_proj, conv_w, conv_b, x_proj, dt_w, dt_b, A_log, D, out_proj;
  size_t y_norm_w, y_norm_b; /* simplified: the LayerNorm of the scan's output (Di) */
} mamba_layer;

/* One block's saved activations (rows N = B·T). */
typedef struct {
  norm_acts norm;           /* (N,C) */
  float *xi, *z;            /* (N,Di) in_proj's two halves */
  float *xc, *u;            /* (N,Di) the convolution's output and SiLU of it */
  float *r, *Bm, *Cm;       /* (N,R), (N,Ns), (N,Ns) x_proj's three parts */
  float *dt, *delta;        /* (N,Di) dt_proj's output and softplus of it */
  float *A;                 /* (Di,Ns) −exp(A_log) */
  float *h;                 /* (N,Di,Ns) the scan's states */
  float *y, *yg;            /* (N,Di) the scan's output and y · SiLU(z) */
  float *yn, *y_mean, *y_rstd; /* simplified: (N,Di) LayerNorm(scan) + D·u, and the norm's (N) statistics */
} mamba_acts;

typedef struct {
  int Di, Ns, K, R;
  int simplified; /* the reference repository's variant */
  input_params in;
  mamba_layer *layers; /* (n_layers) */
  readout_params readout;
  float *arena;
  size_t arena_cap;
  int32_t *sup; /* (M) the supervised rows among the N (sup_rows_index) */
  size_t sup_cap;
  float *x;            /* (n_layers+1, N, C) the residual stream before each block, and after the last */
  mamba_acts *acts;    /* (n_layers) */
  float *xs, *dxs;     /* (M,C) the last block's output at the supervised rows, and its gradient */
  readout_acts ro;
  /* backward scratch, one block at a time */
  float *dx, *dxn;                /* (N,C) */
  float *dxi, *dz, *dxc, *du;     /* (N,Di) */
  float *ddt, *ddelta, *dy, *dyg; /* (N,Di) */
  float *dr, *dB, *dC;            /* (N,R), (N,Ns), (N,Ns) */
  float *dA;                      /* (Di,Ns) */
  float *dys;                     /* (N,Di) simplified: ∂L/∂(the scan's output) */
  float *g;                       /* (N,Di,Ns) ∂L/∂h */
} mamba;

static bwt_status build(bwt_model *m) {
  const bwt_model_config *c = &m->cfg;
  mamba *t = bwt_calloc(1, sizeof *t, "mamba");
  if (!t) return BWT_STATUS_NOMEM;
  ((model_impl *)m->impl)->arch = t;
  t->layers = bwt_calloc(c->n_layers, sizeof *t->layers, "mamba layers");
  t->acts = bwt_calloc(c->n_layers, sizeof *t->acts, "mamba layers");
  if (!t->layers || !t->acts) return BWT_STATUS_NOMEM;
  int C = c->d_model;
  /* The reference's defaults where the config says 0: d_state 16, d_conv 4, expand 2, dt_rank ⌈C/16⌉. */
  t->Di = (c->ssm_expand ? c->ssm_expand : 2) * C, t->Ns = c->ssm_state ? c->ssm_state : 16;
  t->K = c->ssm_conv ? c->ssm_conv : 4, t->R = (C + 15) / 16;
  t->simplified = c->ssm_variant == BWT_SSM_SIMPLIFIED;
  if (t->simplified) t->R = 1;
  int Di = t->Di, Ns = t->Ns, R = t->R;
  input_declare(m, &t->in);
  char name[2 * BWT_TENSOR_NAME_MAX];
  for (int l = 0; l < c->n_layers; l++) {
    mamba_layer *y = &t->layers[l];
    snprintf(name, sizeof name, "layers.%d.norm", l);
    if (!t->simplified) norm_declare(m, &y->norm, name, TENSOR_ID(BWT_ROLE_SSM_NORM, l));
#define ADD(field, what, role, ndim, d0, d1, init)                        \
  snprintf(name, sizeof name, "layers.%d.mixer.%s", l, what);             \
  y->field = model_add_tensor(m, name, TENSOR_ID(role, l), ndim, d0, d1, init)
    ADD(in_proj, "in_proj.weight", BWT_ROLE_SSM_IN, 2, 2 * Di, C, INIT_WEIGHT);
    ADD(conv_w, "conv1d.weight", BWT_ROLE_SSM_CONV, 2, Di, t->K, INIT_WEIGHT);
    snprintf(name, sizeof name, "layers.%d.mixer.conv1d.bias", l);
    y->conv_b = model_add_bias(m, name, TENSOR_ID(BWT_ROLE_SSM_CONV, l), Di, t->K);
    ADD(x_proj, "x_proj.weight", BWT_ROLE_SSM_X, 2, R + 2 * Ns, Di, INIT_WEIGHT);
    if (t->simplified) {
      ADD(dt_w, "dt_proj.weight", BWT_ROLE_SSM_DT, 2, Di, 1, INIT_SSM_DT_WEIGHT_SIMPLIFIED);
      ADD(dt_b, "dt_proj.bias", BWT_ROLE_SSM_DT, 1, Di, 0, INIT_SSM_DT_BIAS_SIMPLIFIED);
      ADD(A_log, "A_log", BWT_ROLE_SSM_A, 1, Ns, 0, INIT_SSM_A_LOG_SHARED);
      ADD(y_norm_w, "norm.weight", BWT_ROLE_SSM_NORM, 1, Di, 0, INIT_ONES);
      ADD(y_norm_b, "norm.bias", BWT_ROLE_SSM_NORM, 1, Di, 0, INIT_ZEROS);
    } else {
      ADD(dt_w, "dt_proj.weight", BWT_ROLE_SSM_DT, 2, Di, R, INIT_WEIGHT);
      ADD(dt_b, "dt_proj.bias", BWT_ROLE_SSM_DT, 1, Di, 0, INIT_SSM_DT_BIAS);
      ADD(A_log, "A_log", BWT_ROLE_SSM_A, 2, Di, Ns, INIT_SSM_A_LOG);
    }
    ADD(D, "D", BWT_ROLE_SSM_D, 1, Di, 0, INIT_ONES);
    ADD(out_proj, "out_proj.weight", BWT_ROLE_SSM_OUT, 2, C, Di, INIT_WEIGHT_RESIDUAL);
#undef ADD
  }
  readout_declare(m, &t->readout, t->in.wte);
  return BWT_STATUS_OK;
}

static void destroy(bwt_model *m) {
  mamba *t = model_arch(m);
  free(t->layers);
  free(t->acts);
  free(t->sup);
  bwt_buffer_free(t->arena);
  free(t);
}

static size_t carve(mamba *t, const bwt_model_config *c, float *base, int B, int T, int M) {
  size_t off = 0, N = (size_t)B * T, C = c->d_model, L = c->n_layers;
  size_t Di = t->Di, Ns = t->Ns, R = t->R, S = (size_t)t->simplified; /* S: the variant's extras */
#define TAKE(ptr, n) (ptr = base ? base + off : NULL, off += (n))
  TAKE(t->x, (L + 1) * N * C);
  for (size_t l = 0; l < L; l++) {
    mamba_acts *a = &t->acts[l];
    TAKE(a->norm.out, (1 - S) * N * C);
    TAKE(a->norm.mean, (1 - S) * N);
    TAKE(a->norm.rstd, (1 - S) * N);
    TAKE(a->xi, N * Di);
    TAKE(a->z, N * Di);
    TAKE(a->xc, N * Di);
    TAKE(a->u, N * Di);
    TAKE(a->r, N * R);
    TAKE(a->Bm, N * Ns);
    TAKE(a->Cm, N * Ns);
    TAKE(a->dt, N * Di);
    TAKE(a->delta, N * Di);
    TAKE(a->A, Di * Ns);
    TAKE(a->h, N * Di * Ns);
    TAKE(a->y, N * Di);
    TAKE(a->yg, N * Di);
    TAKE(a->yn, S * N * Di);
    TAKE(a->y_mean, S * N);
    TAKE(a->y_rstd, S * N);
  }
  TAKE(t->xs, (size_t)M * C);
  TAKE(t->dxs, (size_t)M * C);
  TAKE(t->dx, N * C);
  TAKE(t->dxn, N * C);
  TAKE(t->dxi, N * Di);
  TAKE(t->dz, N * Di);
  TAKE(t->dxc, N * Di);
  TAKE(t->du, N * Di);
  TAKE(t->ddt, N * Di);
  TAKE(t->ddelta, N * Di);
  TAKE(t->dy, N * Di);
  TAKE(t->dyg, N * Di);
  TAKE(t->dr, N * R);
  TAKE(t->dB, N * Ns);
  TAKE(t->dC, N * Ns);
  TAKE(t->dA, Di * Ns);
  TAKE(t->g, N * Di * Ns);
  TAKE(t->dys, S * N * Di);
  if (base) readout_carve(c, &t->ro, base + off, M);
  off += readout_floats(c, M);
#undef TAKE
  return off;
}

static void block_forward(const bwt_model *m, const mamba *t, int l, int B, int T) {
  const mamba_layer *y = &t->layers[l];
  const mamba_acts *a = &t->acts[l];
  int N = B * T, C = m->cfg.d_model, Di = t->Di, Ns = t->Ns, R = t->R;
  const float *x = t->x + (size_t)l * N * C;
  float *out = t->x + (size_t)(l + 1) * N * C;
  if (model_skip_block(m, l)) { /* ablated: the stream passes through */
    bwt_copy(out, x, (size_t)N * C);
    return;
  }
  const float *in = x; /* the block's input: normed, or (simplified) the stream itself */
  if (!t->simplified) norm_forward(m, &y->norm, &a->norm, x, N), in = a->norm.out;
  bwt_matmul_forward(a->xi, in, P(y->in_proj), NULL, N, C, Di);
  bwt_matmul_forward(a->z, in, P(y->in_proj) + (size_t)Di * C, NULL, N, C, Di);
  bwt_conv1d_causal_forward(a->xc, a->xi, P(y->conv_w), P(y->conv_b), B, T, Di, t->K);
  bwt_silu_forward(a->u, a->xc, (size_t)N * Di);
  const float *wx = P(y->x_proj);
  bwt_matmul_forward(a->r, a->u, wx, NULL, N, Di, R);
  bwt_matmul_forward(a->Bm, a->u, wx + (size_t)R * Di, NULL, N, Di, Ns);
  bwt_matmul_forward(a->Cm, a->u, wx + (size_t)(R + Ns) * Di, NULL, N, Di, Ns);
  bwt_matmul_forward(a->dt, a->r, P(y->dt_w), P(y->dt_b), N, R, Di);
  const float *gated = a->y; /* what SiLU(z) multiplies */
  if (t->simplified) {
    bwt_softplus_clamp_forward(a->delta, a->dt, SIMPLIFIED_DELTA_MIN, SIMPLIFIED_DELTA_MAX, (size_t)N * Di);
    bwt_ssm_shared_decay_forward(a->A, P(y->A_log), SIMPLIFIED_A_LOG_MAX, Di, Ns);
    bwt_selective_scan_clamped_forward(a->y, a->h, a->u, a->delta, a->A, a->Bm, a->Cm, B, T, Di, Ns);
    bwt_layernorm_forward(a->yn, a->y_mean, a->y_rstd, a->y, P(y->y_norm_w), P(y->y_norm_b), N, Di);
    bwt_ssm_skip_forward(a->yn, a->u, P(y->D), N, Di);
    gated = a->yn;
  } else {
    bwt_softplus_forward(a->delta, a->dt, (size_t)N * Di);
    bwt_ssm_decay_forward(a->A, P(y->A_log), (size_t)Di * Ns);
    bwt_selective_scan_forward(a->y, a->h, a->u, a->delta, a->A, a->Bm, a->Cm, P(y->D), B, T, Di, Ns);
  }
  bwt_swiglu_forward(a->yg, a->z, gated, (size_t)N * Di); /* y · SiLU(z) */
  bwt_matmul_forward(out, a->yg, P(y->out_proj), NULL, N, Di, C);
  bwt_add_inplace(out, x, (size_t)N * C);
}

/* t->dx holds ∂L/∂(block l's output) on entry and ∂L/∂(its input) on return. */
static void block_backward(bwt_model *m, mamba *t, int l, int B, int T) {
  if (model_skip_block(m, l)) return; /* ablated: the gradient passes through */
  const mamba_layer *y = &t->layers[l];
  const mamba_acts *a = &t->acts[l];
  int N = B * T, C = m->cfg.d_model, Di = t->Di, Ns = t->Ns, R = t->R;
  size_t NDi = (size_t)N * Di;
  const float *x = t->x + (size_t)l * N * C, *wx = P(y->x_proj);
  float *gx = G(y->x_proj);
  float *scratch[] = {t->dyg, t->dy, t->dz, t->du, t->ddelta, t->ddt, t->dxc, t->dxi};
  for (size_t i = 0; i < sizeof scratch / sizeof scratch[0]; i++) bwt_zero(scratch[i], NDi);
  bwt_zero(t->dr, (size_t)N * R);
  bwt_zero(t->dB, (size_t)N * Ns);
  bwt_zero(t->dC, (size_t)N * Ns);
  bwt_zero(t->dA, (size_t)Di * Ns);
  bwt_zero(t->dxn, (size_t)N * C);

  bwt_matmul_backward(t->dyg, G(y->out_proj), NULL, t->dx, a->yg, P(y->out_proj), N, Di, C);
  if (t->simplified) {
    /* dy: ∂L/∂(LayerNorm(scan) + D·u); dys: ∂L/∂scan */
    bwt_zero(t->dys, NDi);
    bwt_swiglu_backward(t->dz, t->dy, t->dyg, a->z, a->yn, NDi);
    bwt_ssm_skip_backward(t->du, G(y->D), t->dy, a->u, P(y->D), N, Di);
    bwt_layernorm_backward(t->dys, G(y->y_norm_w), G(y->y_norm_b), t->dy, a->y, P(y->y_norm_w), a->y_mean, a->y_rstd, N, Di);
    bwt_selective_scan_clamped_backward(t->du, t->ddelta, t->dA, t->dB, t->dC, t->g, t->dys, a->h, a->u, a->delta,
                                        a->A, a->Bm, a->Cm, B, T, Di, Ns);
    bwt_ssm_shared_decay_backward(G(y->A_log), t->dA, P(y->A_log), a->A, SIMPLIFIED_A_LOG_MAX, Di, Ns);
    bwt_softplus_clamp_backward(t->ddt, t->ddelta, a->dt, SIMPLIFIED_DELTA_MIN, SIMPLIFIED_DELTA_MAX, NDi);
  } else {
    bwt_swiglu_backward(t->dz, t->dy, t->dyg, a->z, a->y, NDi);
    bwt_selective_scan_backward(t->du, t->ddelta, t->dA, t->dB, t->dC, G(y->D), t->g, t->dy, a->h, a->u, a->delta,
                                a->A, a->Bm, a->Cm, P(y->D), B, T, Di, Ns);
    bwt_ssm_decay_backward(G(y->A_log), t->dA, a->A, (size_t)Di * Ns);
    bwt_softplus_backward(t->ddt, t->ddelta, a->dt, NDi);
  }
  bwt_matmul_backward(t->dr, G(y->dt_w), G(y->dt_b), t->ddt, a->r, P(y->dt_w), N, R, Di);
  bwt_matmul_backward(t->du, gx, NULL, t->dr, a->u, wx, N, Di, R);
  bwt_matmul_backward(t->du, gx + (size_t)R * Di, NULL, t->dB, a->u, wx + (size_t)R * Di, N, Di, Ns);
  bwt_matmul_backward(t->du, gx + (size_t)(R + Ns) * Di, NULL, t->dC, a->u, wx + (size_t)(R + Ns) * Di, N, Di, Ns);
  bwt_silu_backward(t->dxc, t->du, a->xc, NDi);
  bwt_conv1d_causal_backward(t->dxi, G(y->conv_w), G(y->conv_b), t->dxc, a->xi, P(y->conv_w), B, T, Di, t->K);
  const float *in = t->simplified ? x : a->norm.out;
  bwt_matmul_backward(t->dxn, G(y->in_proj), NULL, t->dxi, in, P(y->in_proj), N, C, Di);
  bwt_matmul_backward(t->dxn, G(y->in_proj) + (size_t)Di * C, NULL, t->dz, in, P(y->in_proj) + (size_t)Di * C, N, C, Di);
  /* the residual path is dx itself */
  if (t->simplified) bwt_add_inplace(t->dx, t->dxn, (size_t)N * C);
  else norm_backward(m, &y->norm, &a->norm, t->dx, t->dxn, x, N);
}

static bwt_status forward(bwt_model *m, const bwt_batch *batch, const float **logits) {
  const bwt_model_config *c = &m->cfg;
  mamba *t = model_arch(m);
  int B = batch->B, T = batch->T, M = B * batch->n_sup, C = c->d_model;
  BWT_TRY(model_reserve(&t->arena, &t->arena_cap, carve(t, c, NULL, B, T, M), "activations"));
  carve(t, c, t->arena, B, T, M);
  BWT_TRY(model_reserve_index(&t->sup, &t->sup_cap, (size_t)M));
  sup_rows_index(t->sup, batch, 0);

  BWT_TRY(input_forward(m, &t->in, t->x, batch));
  for (int l = 0; l < c->n_layers; l++) block_forward(m, t, l, B, T);
  bwt_gather_rows(t->xs, t->x + (size_t)c->n_layers * B * T * C, t->sup, M, C);
  readout_forward(m, &t->readout, &t->ro, t->xs, M);
  *logits = t->ro.logits;
  return BWT_STATUS_OK;
}

static bwt_status backward(bwt_model *m, const bwt_batch *batch, const float *dlogits, bwt_attention_trace *trace) {
  const bwt_model_config *c = &m->cfg;
  mamba *t = model_arch(m);
  int B = batch->B, T = batch->T, M = B * batch->n_sup, C = c->d_model;
  bwt_zero(t->dxs, (size_t)M * C);
  readout_backward(m, &t->readout, &t->ro, t->dxs, t->xs, dlogits, M);
  bwt_zero(t->dx, (size_t)B * T * C);
  bwt_scatter_add_rows(t->dx, t->dxs, t->sup, M, C);
  for (int l = c->n_layers - 1; l >= 0; l--) block_backward(m, t, l, B, T);
  input_backward(m, &t->in, t->dx, batch);
  return BWT_STATUS_OK;
}

/* The capture points from the activations of the forward just run (see bwt/capture.h): the
 * residual stream and the scan's states at the supervised rows. */
static bwt_status capture(const bwt_model *m, const bwt_batch *batch, bwt_capture *cap) {
  const bwt_model_config *c = &m->cfg;
  const mamba *t = model_arch(m);
  int M = batch->B * batch->n_sup, C = c->d_model, S = t->Di * t->Ns;
  size_t NC = (size_t)batch->B * batch->T * C;
  if (cap->embed) bwt_gather_rows(cap->embed, t->x, t->sup, M, C);
  if (cap->final_norm) bwt_copy(cap->final_norm, t->ro.norm.out, (size_t)M * C);
  for (int l = 0; l < c->n_layers; l++) {
    if (cap->block_out) bwt_gather_rows(cap->block_out + (size_t)l * M * C, t->x + (l + 1) * NC, t->sup, M, C);
    if (cap->scan_state && model_skip_block(m, l)) bwt_fill(cap->scan_state + (size_t)l * M * S, NAN, (size_t)M * S);
    else if (cap->scan_state) bwt_gather_rows(cap->scan_state + (size_t)l * M * S, t->acts[l].h, t->sup, M, S);
  }
  return BWT_STATUS_OK;
}

const model_arch_ops mamba_ops = {build, forward, backward, destroy, capture,
                                  BWT_CAPTURE_EMBED | BWT_CAPTURE_BLOCK_OUT | BWT_CAPTURE_FINAL_NORM | BWT_CAPTURE_SCAN_STATE};
