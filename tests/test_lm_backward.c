/* Gradients through the language models (bwt/lm_grad.h) and their new kernels:
 *  - kernels: central finite differences (4-point stencil, double loss) of grouped-query attention
 *    (GQA, sliding window, a query tail nq < T), LayerNorm and RMSNorm with the model's eps, the
 *    (in, out) linear layer and RoPE with partial rotation and llama3 frequencies; the score
 *    gradient against the softmax Jacobian written out in double;
 *  - the whole model on every fixture architecture and on stories260K: finite differences of the
 *    mean next-token cross-entropy w.r.t. entries of W_Q, W_K, W_V, W_O (or the fused q/k/v
 *    weight, read through the documented split) in the first and last block, and w.r.t. the token
 *    embeddings (∂L/∂resid_pre of block 0); the same for an arbitrary upstream ∂L/∂logits. The
 *    weights are perturbed through writable copies the model's layer pointers are swapped to
 *    (lm_internal.h);
 *  - bit-identical reruns; bad targets. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/kernels.h"
#include "bwt/lm_grad.h"
#include "bwt/rng.h"
#include "bwt/train.h"
#include "lm/lm_internal.h"
#include "testutil.h"

static float *frand(size_t n, float lo, float hi, uint64_t seed) {
  float *x = malloc(sizeof(float) * (n ? n : 1));
  test_fill_uniform(x, n, lo, hi, seed);
  return x;
}
static float *fzeros(size_t n) { return calloc(n ? n : 1, sizeof(float)); }

/* A scalar loss of the current inputs. */
typedef double (*loss_fn)(void *ctx);

/* The 4-point central difference of f at x[i] with step h (x restored). */
static double fd4(loss_fn f, void *ctx, float *x, size_t i, float h) {
  float x0 = x[i];
  double v[4];
  const float steps[4] = {2 * h, h, -h, -2 * h};
  for (int k = 0; k < 4; k++) {
    x[i] = x0 + steps[k];
    v[k] = f(ctx);
  }
  x[i] = x0;
  return (-v[0] + 8 * v[1] - 8 * v[2] + v[3]) / (12.0 * h);
}

/* max over every (or every stride-th) element of |fd − grad| / max |grad|. */
static double fd_check(loss_fn f, void *ctx, float *x, const float *grad, size_t n, size_t stride, float h) {
  double big = 0, err = 0;
  for (size_t i = 0; i < n; i++) big = fmax(big, fabs(grad[i]));
  for (size_t i = 0; i < n; i += stride) err = fmax(err, fabs(fd4(f, ctx, x, i, h) - grad[i]));
  return big > 0 ? err / big : err;
}

/* ---- kernels ------------------------------------------------------------------------------------ */

typedef struct {
  int B, T, nq, NH, NKV, hs, window;
  float *q, *k, *v, *r, *out, *att;
} attn_ctx;

static double attn_loss(void *p) {
  attn_ctx *c = p;
  bwt_gqa_attention_forward_naive(c->out, c->att, NULL, c->q, c->k, c->v, c->B, c->T, c->nq, c->NH, c->NKV, c->hs,
                                  c->window, 1.0f / sqrtf((float)c->hs));
  double L = 0;
  for (size_t i = 0; i < (size_t)c->B * c->nq * c->NH * c->hs; i++) L += (double)c->r[i] * c->out[i];
  return L;
}

static void test_gqa_backward(void **state) {
  const int windows[2] = {0, 3}, nqs[2] = {7, 4};
  for (int w = 0; w < 2; w++)
    for (int qi = 0; qi < 2; qi++) {
      attn_ctx c = {2, 7, nqs[qi], 4, 2, 3, windows[w]};
      size_t nq = (size_t)c.B * c.nq * c.NH * c.hs, nk = (size_t)c.B * c.T * c.NKV * c.hs, na = (size_t)c.B * c.NH * c.nq * c.T;
      c.q = frand(nq, -1, 1, 1), c.k = frand(nk, -1, 1, 2), c.v = frand(nk, -1, 1, 3), c.r = frand(nq, -1, 1, 4);
      c.out = fzeros(nq), c.att = fzeros(na);
      float *dq = fzeros(nq), *dk = fzeros(nk), *dv = fzeros(nk), *ds = fzeros(na), *dp = fzeros(na);
      attn_loss(&c);
      assert_int_equal(bwt_gqa_attention_backward(dq, dk, dv, ds, dp, c.r, c.att, c.q, c.k, c.v, c.B, c.T, c.nq, c.NH,
                                                  c.NKV, c.hs, c.window, 1.0f / sqrtf((float)c.hs)), BWT_STATUS_OK);
      double eq = fd_check(attn_loss, &c, c.q, dq, nq, 1, 1e-2f);
      double ek = fd_check(attn_loss, &c, c.k, dk, nk, 1, 1e-2f);
      double ev = fd_check(attn_loss, &c, c.v, dv, nk, 1, 1e-2f);
      /* ∂L/∂s = J ∂L/∂α with the softmax Jacobian J_st = α_s (δ_st − α_t), in double; ∂L/∂α = u·v. */
      double es = 0, ep = 0, big = 0;
      int group = c.NH / c.NKV;
      for (int b = 0; b < c.B; b++)
        for (int h = 0; h < c.NH; h++)
          for (int j = 0; j < c.nq; j++) {
            int t = c.T - c.nq + j;
            const float *a = c.att + (((size_t)b * c.NH + h) * c.nq + j) * c.T;
            double dal[16] = {0};
            for (int s = 0; s < c.T; s++) {
              int seen = s <= t && (c.window == 0 || t - s < c.window);
              for (int i = 0; seen && i < c.hs; i++)
                dal[s] += (double)c.r[((size_t)b * c.nq + j) * c.NH * c.hs + h * c.hs + i] *
                          c.v[((size_t)b * c.T + s) * c.NKV * c.hs + (h / group) * c.hs + i];
            }
            for (int s = 0; s < c.T; s++) {
              double want = 0;
              for (int u = 0; u < c.T; u++) want += a[s] * ((s == u) - a[u]) * dal[u];
              size_t at = (((size_t)b * c.NH + h) * c.nq + j) * c.T + s;
              es = fmax(es, fabs(ds[at] - want));
              ep = fmax(ep, fabs(dp[at] - dal[s]));
              big = fmax(big, fabs(want));
            }
          }
      print_message("  gqa backward window %d nq %d: dq %.2e dk %.2e dv %.2e (FD, of max|grad|), dscores %.2e dpattern %.2e abs (max %.2f)\n",
                    c.window, c.nq, eq, ek, ev, es, ep, big);
      assert_true(eq < 1e-3 && ek < 1e-3 && ev < 1e-3);
      assert_true(es < 1e-5 * big && ep < 1e-5);
      free(c.q), free(c.k), free(c.v), free(c.r), free(c.out), free(c.att);
      free(dq), free(dk), free(dv), free(ds), free(dp);
    }
  assert_int_equal(bwt_gqa_attention_backward(NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 1, 4, 4, 3, 2, 2, 0, 1.0f),
                   BWT_STATUS_ARG);
}

typedef struct {
  int N, C, kind; /* 0 LayerNorm, 1 RMSNorm, 2 in-out linear, 3 RoPE */
  float eps;
  float *x, *w, *b, *r, *out;
  double *inv;
  int32_t *pos;
  int NH, hs, R, OC;
} op_ctx;

static double op_loss(void *p) {
  op_ctx *c = p;
  size_t n = (size_t)c->N * c->C;
  if (c->kind == 0) bwt_layernorm_eps_forward(c->out, c->x, c->w, c->b, c->eps, c->N, c->C);
  else if (c->kind == 1) bwt_rmsnorm_eps_forward(c->out, NULL, c->x, c->w, c->eps, c->N, c->C);
  else if (c->kind == 2) bwt_matmul_in_out_forward(c->out, c->x, c->w, c->b, c->N, c->C, c->OC), n = (size_t)c->N * c->OC;
  else bwt_rope_forward(c->out, c->x, c->inv, c->pos, c->N, c->NH, c->hs, c->R);
  double L = 0;
  for (size_t i = 0; i < n; i++) L += (double)c->r[i] * c->out[i];
  return L;
}

static void test_norm_linear_rope_backward(void **state) {
  enum { N = 5, C = 24, OC = 10 };
  op_ctx c = {N, C, 0, 1e-2f};
  c.x = frand(N * C, -2, 2, 5), c.w = frand(C * OC, 0.5f, 1.5f, 6), c.b = frand(OC > C ? OC : C, -1, 1, 7);
  c.r = frand(N * (OC > C ? OC : C), -1, 1, 8), c.out = fzeros(N * (OC > C ? OC : C));
  float *dx = fzeros(N * C), *dw = fzeros(C * OC), *db = fzeros(C), *mean = fzeros(N), *rstd = fzeros(N);
  /* LayerNorm, eps 1e-2 (so a wrong eps shows) */
  bwt_layernorm_eps_backward(dx, dw, db, c.r, c.x, c.w, c.eps, mean, rstd, N, C);
  double e_ln = fd_check(op_loss, &c, c.x, dx, N * C, 1, 1e-2f), e_lnw = fd_check(op_loss, &c, c.w, dw, C, 1, 1e-2f);
  double e_lnb = fd_check(op_loss, &c, c.b, db, C, 1, 1e-2f);
  /* RMSNorm with the model's eps: bwt_rmsnorm_backward on the rstd of bwt_rmsnorm_eps_forward */
  c.kind = 1;
  memset(dx, 0, sizeof(float) * N * C), memset(dw, 0, sizeof(float) * C);
  bwt_rmsnorm_eps_forward(c.out, rstd, c.x, c.w, c.eps, N, C);
  bwt_rmsnorm_backward(dx, dw, c.r, c.x, c.w, rstd, N, C);
  double e_rms = fd_check(op_loss, &c, c.x, dx, N * C, 1, 1e-2f), e_rmsw = fd_check(op_loss, &c, c.w, dw, C, 1, 1e-2f);
  /* The (in, out) linear layer */
  c.kind = 2, c.OC = OC;
  memset(dx, 0, sizeof(float) * N * C), memset(dw, 0, sizeof(float) * C * OC), memset(db, 0, sizeof(float) * OC);
  bwt_matmul_in_out_backward(dx, dw, db, c.r, c.x, c.w, N, C, OC);
  double e_mx = fd_check(op_loss, &c, c.x, dx, N * C, 1, 1e-2f), e_mw = fd_check(op_loss, &c, c.w, dw, C * OC, 1, 1e-2f);
  double e_mb = fd_check(op_loss, &c, c.b, db, OC, 1, 1e-2f);
  /* RoPE: 2 heads of 12, 8 rotated, llama3 frequencies */
  c.kind = 3, c.NH = 2, c.hs = 12, c.R = 8;
  double inv[4];
  bwt_rope_scaling sc = {BWT_ROPE_LLAMA3, 8.0, 1.0, 4.0, 16};
  bwt_rope_inv_freq(inv, c.R, 500000.0, &sc);
  int32_t pos[N] = {0, 3, 9, 17, 40};
  c.inv = inv, c.pos = pos;
  memset(dx, 0, sizeof(float) * N * C);
  bwt_rope_backward(dx, c.r, inv, pos, N, c.NH, c.hs, c.R);
  double e_rope = fd_check(op_loss, &c, c.x, dx, N * C, 1, 1e-2f);
  print_message("  FD, of max|grad|: layernorm x %.2e w %.2e b %.2e; rmsnorm x %.2e w %.2e; in-out linear x %.2e w %.2e b %.2e; rope %.2e (tol 1e-3)\n",
                e_ln, e_lnw, e_lnb, e_rms, e_rmsw, e_mx, e_mw, e_mb, e_rope);
  assert_true(e_ln < 1e-3 && e_lnw < 1e-3 && e_lnb < 1e-3 && e_rms < 1e-3 && e_rmsw < 1e-3);
  assert_true(e_mx < 1e-3 && e_mw < 1e-3 && e_mb < 1e-3 && e_rope < 1e-3);
  free(c.x), free(c.w), free(c.b), free(c.r), free(c.out), free(dx), free(dw), free(db), free(mean), free(rstd);
}

/* ---- whole models ------------------------------------------------------------------------------- */

typedef struct {
  bwt_lm *lm;
  const int32_t *tokens, *targets;
  int T;
  float *logits;
  const float *upstream; /* (T,V): L = Σ upstream·logits instead of the cross-entropy */
} model_ctx;

/* The mean cross-entropy of the targets, in double from the fp32 forward's logits. */
static double model_loss(void *p) {
  model_ctx *m = p;
  int V = m->lm->cfg.V, n = 0;
  bwt_lm_reset(m->lm);
  assert_int_equal(bwt_lm_forward(m->lm, m->tokens, m->T, m->logits), BWT_STATUS_OK);
  double L = 0;
  if (m->upstream) {
    for (size_t i = 0; i < (size_t)m->T * V; i++) L += (double)m->upstream[i] * m->logits[i];
    return L;
  }
  for (int t = 0; t < m->T; t++) {
    if (m->targets[t] < 0) continue;
    const float *row = m->logits + (size_t)t * V;
    double mx = -INFINITY, s = 0;
    for (int v = 0; v < V; v++) mx = fmax(mx, row[v]);
    for (int v = 0; v < V; v++) s += exp(row[v] - mx);
    L += mx + log(s) - row[m->targets[t]];
    n++;
  }
  return L / n;
}

/* Where checkpoint element i of layer l's tensor in slot lands in the torch-layout gradients:
 * *which 0..3 = W_Q, W_K, W_V, W_O, *at its index there. Written from the documented layouts
 * (docs/lm.md): GPT-2's Conv1D c_attn (C, 3C) is q|k|v column blocks, NeoX's query_key_value
 * (3·NH·hs, C) per-head triples of hs rows. */
static void locate(const bwt_lm *lm, int slot, size_t i, int *which, size_t *at) {
  const bwt_lm_config *c = &lm->cfg;
  int Q = c->NH * c->hs, K = c->NKV * c->hs, in_out = lm->arch->in_out;
  int OC = slot == LM_Q_W ? Q : slot == LM_O_W ? c->C : slot == LM_QKV_W ? Q + 2 * K : K;
  int IC = slot == LM_O_W ? Q : c->C;
  size_t o = in_out ? i % OC : i / IC, in = in_out ? i / OC : i % IC; /* output and input channel */
  if (slot == LM_QKV_W) {
    if (lm->arch->qkv == LM_QKV_BLOCKS) *which = (int)(o / Q), o %= Q;
    else *which = (int)(o % (3 * c->hs) / c->hs), o = o / (3 * c->hs) * c->hs + o % c->hs;
  } else {
    *which = slot == LM_Q_W ? 0 : slot == LM_K_W ? 1 : slot == LM_V_W ? 2 : 3;
  }
  *at = o * IC + in;
}

static const float *grad_of(const bwt_lm_grad *g, int l, int which) {
  return which == 0 ? g->dWq[l] : which == 1 ? g->dWk[l] : which == 2 ? g->dWv[l] : g->dWo[l];
}

/* FD on a few entries of a writable copy of w (n floats) put in place by *slot_ptr: the 3 whose
 * analytic gradient is largest (relative error each) and 3 at random (error over the tensor's
 * largest gradient). Returns the worst. */
static double probe(model_ctx *m, const bwt_lm_grad *g, const float **slot_ptr, size_t n, int l, int slot,
                    const float *dgrad, float h, uint64_t seed, int part) {
  float *copy = malloc(sizeof(float) * n);
  memcpy(copy, *slot_ptr, sizeof(float) * n);
  const float *orig = *slot_ptr;
  *slot_ptr = copy;
  double *an = malloc(sizeof(double) * n), big = 0;
  char *mine = malloc(n); /* the entries of the part probed (a fused weight's q, k or v rows) */
  for (size_t i = 0; i < n; i++) {
    mine[i] = 1;
    if (dgrad) {
      an[i] = dgrad[i];
    } else {
      int which;
      size_t at;
      locate(m->lm, slot, i, &which, &at);
      an[i] = grad_of(g, l, which)[at];
      mine[i] = part < 0 || which == part;
    }
    if (mine[i]) big = fmax(big, fabs(an[i]));
  }
  double worst = 0;
  size_t picked[6];
  for (int k = 0; k < 3; k++) { /* the largest, distinct */
    size_t best = 0;
    double bv = -1;
    for (size_t i = 0; i < n; i++) {
      int used = 0;
      for (int j = 0; j < k; j++) used |= picked[j] == i;
      if (!used && mine[i] && fabs(an[i]) > bv) bv = fabs(an[i]), best = i;
    }
    picked[k] = best;
  }
  bwt_rng rng;
  bwt_rng_seed(&rng, seed, 7);
  for (int k = 3; k < 6; k++)
    do picked[k] = bwt_rng_below(&rng, (uint32_t)n);
    while (!mine[picked[k]]);
  for (int k = 0; k < 6; k++) {
    double fd = fd4(model_loss, m, copy, picked[k], h), a = an[picked[k]];
    double e = k < 3 ? fabs(fd - a) / fmax(fabs(a), 1e-12) : fabs(fd - a) / fmax(big, 1e-12);
    worst = fmax(worst, e);
  }
  *slot_ptr = orig;
  free(copy), free(an), free(mine);
  return worst;
}

/* The projections' gradients mean what the header says: dW[l] row o = Σ_t ∂L/∂(hook output)[t,o] ·
 * a[t], a the ln1 output recomputed from the saved resid_pre, for the q, k, v hooks (whatever the
 * checkpoint's fused layout). Returns the worst relative difference. */
static double split_semantics(const bwt_lm *lm, const bwt_lm_grad *g, int l) {
  const bwt_lm_config *c = bwt_lm_config_of(lm);
  int T = g->T, C = c->C;
  char name[BWT_LM_NAME_MAX];
  snprintf(name, sizeof name, "blocks.%d.hook_resid_pre", l);
  const bwt_lm_activation *x = bwt_lm_grad_act(g, name);
  assert_non_null(x);
  float *a = malloc(sizeof(float) * (size_t)T * C);
  const float *const *w = lm->layers[l].w;
  if (c->layer_norm) bwt_layernorm_eps_forward(a, x->data, w[LM_LN1_W], w[LM_LN1_B], (float)c->norm_eps, T, C);
  else bwt_rmsnorm_eps_forward(a, NULL, x->data, w[LM_LN1_W], (float)c->norm_eps, T, C);
  double worst = 0;
  for (int which = 0; which < 3; which++) {
    const float *d = which == 0 ? g->dq[l] : which == 1 ? g->dk[l] : g->dv[l], *dw = grad_of(g, l, which);
    int OC = (which == 0 ? c->NH : c->NKV) * c->hs;
    double big = 0, err = 0;
    for (int o = 0; o < OC; o++)
      for (int i = 0; i < C; i++) {
        double ref = 0;
        for (int t = 0; t < T; t++) ref += (double)d[(size_t)t * OC + o] * a[(size_t)t * C + i];
        big = fmax(big, fabs(ref));
        err = fmax(err, fabs(ref - dw[(size_t)o * C + i]));
      }
    worst = fmax(worst, err / big);
  }
  free(a);
  return worst;
}

#define MODEL_FD_TOL 5e-3

/* The finite-difference checks of one model directory; prints and asserts the worst error. */
static void check_model(const char *dir, const char *name, int T, float h) {
  bwt_lm *lm = NULL;
  assert_int_equal(bwt_lm_open(&lm, dir), BWT_STATUS_OK);
  const bwt_lm_config *c = bwt_lm_config_of(lm);
  int32_t *tokens = malloc(sizeof(int32_t) * T), *targets = malloc(sizeof(int32_t) * T);
  bwt_rng rng;
  bwt_rng_seed(&rng, 0x11, 3);
  for (int t = 0; t < T; t++) tokens[t] = (int32_t)bwt_rng_below(&rng, (uint32_t)c->V);
  for (int t = 0; t < T; t++) targets[t] = t + 1 < T && t != 2 ? tokens[t + 1] : -1; /* position 2 unsupervised */
  bwt_lm_grad g;
  assert_int_equal(bwt_lm_grad_xent(lm, tokens, T, targets, &g), BWT_STATUS_OK);
  model_ctx m = {lm, tokens, targets, T, malloc(sizeof(float) * (size_t)T * c->V), NULL};
  assert_true(fabs(model_loss(&m) - g.loss) < 1e-5 * fmax(1, g.loss));
  int Q = c->NH * c->hs, K = c->NKV * c->hs, fused = lm->arch->qkv != LM_QKV_SEPARATE;
  double worst[5] = {0}; /* W_Q, W_K, W_V (or fused), W_O, embeddings */
  int layers[2] = {0, c->L - 1};
  for (int li = 0; li < (c->L > 1 ? 2 : 1); li++) {
    int l = layers[li];
    const float **w = (const float **)lm->layers[l].w;
    if (fused) {
      for (int part = 0; part < 3; part++)
        worst[part] = fmax(worst[part], probe(&m, &g, &w[LM_QKV_W], (size_t)(Q + 2 * K) * c->C, l, LM_QKV_W, NULL, h, 1 + l, part));
    } else {
      worst[0] = fmax(worst[0], probe(&m, &g, &w[LM_Q_W], (size_t)Q * c->C, l, LM_Q_W, NULL, h, 2 + l, -1));
      worst[1] = fmax(worst[1], probe(&m, &g, &w[LM_K_W], (size_t)K * c->C, l, LM_K_W, NULL, h, 3 + l, -1));
      worst[2] = fmax(worst[2], probe(&m, &g, &w[LM_V_W], (size_t)K * c->C, l, LM_V_W, NULL, h, 4 + l, -1));
    }
    worst[3] = fmax(worst[3], probe(&m, &g, &w[LM_O_W], (size_t)Q * c->C, l, LM_O_W, NULL, h, 5 + l, -1));
  }
  /* ∂L/∂resid_pre of block 0 is the gradient of the embedding rows: tokens seen once, the head
   * (tied or not) left as it is. */
  float *demb = calloc((size_t)c->V * c->C, sizeof(float));
  int *count = calloc((size_t)c->V, sizeof(int));
  for (int t = 0; t < T; t++) count[tokens[t]]++;
  for (int t = 0; t < T; t++)
    if (count[tokens[t]] == 1) memcpy(demb + (size_t)tokens[t] * c->C, g.dresid[0] + (size_t)t * c->C, sizeof(float) * c->C);
  const float *head = lm->head;
  worst[4] = probe(&m, &g, &lm->embed, (size_t)c->V * c->C, 0, -1, demb, h, 9, -1);
  lm->head = head;
  double sem = fmax(split_semantics(lm, &g, 0), split_semantics(lm, &g, c->L - 1));
  assert_true(sem < 1e-4);
  print_message("  %-16s FD rel. error W_Q %.1e W_K %.1e W_V %.1e%s W_O %.1e embeddings %.1e (loss %.4f, T %d, tol %.0e); dW_QKV = dhookᵀ·ln1 %.1e\n",
                name, worst[0], worst[1], worst[2], fused ? " (fused q/k/v split)" : "", worst[3], worst[4], g.loss, T,
                MODEL_FD_TOL, sem);
  for (int k = 0; k < 5; k++) assert_true(worst[k] < MODEL_FD_TOL);
  /* the same gradients on a rerun, bit for bit */
  bwt_lm_grad g2;
  assert_int_equal(bwt_lm_grad_xent(lm, tokens, T, targets, &g2), BWT_STATUS_OK);
  for (int l = 0; l < c->L; l++) {
    assert_memory_equal(g.dWq[l], g2.dWq[l], sizeof(float) * (size_t)Q * c->C);
    assert_memory_equal(g.dscores[l], g2.dscores[l], sizeof(float) * (size_t)c->NH * T * T);
  }
  bwt_lm_grad_free(&g2);
  bwt_lm_grad_free(&g);
  free(demb), free(count), free(tokens), free(targets), free(m.logits);
  bwt_lm_close(lm);
}

static void source_path(char *out, size_t n, const char *rel) {
  const char *src = __FILE__, *slash = strrchr(src, '/');
  int dir_len = slash ? (int)(slash - src) : 1;
  snprintf(out, n, "%.*s/%s", dir_len, slash ? src : ".", rel);
}

static void test_fixtures_fd(void **state) {
  const char *names[] = {"gpt2", "gpt2_noprefix", "neox_parallel", "neox_sequential", "phi",
                         "llama_gqa", "llama_mha", "llama3_scaled", "mistral_window", "llama_bf16"};
  for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
    char dir[1200], rel[128];
    snprintf(rel, sizeof rel, "fixtures/lm/%s", names[i]);
    source_path(dir, sizeof dir, rel);
    check_model(dir, names[i], 12, 1e-2f);
  }
}

static void test_stories_fd(void **state) {
  char copy[1200];
  snprintf(copy, sizeof copy, "%s", test_shared_path("models/stories260K"));
  if (!test_shared_present(test_shared_path("models/stories260K/config.json"))) return;
  check_model(copy, "stories260K", 16, 1e-2f);
}

/* An arbitrary upstream ∂L/∂logits (bwt_lm_grad_backward): L = Σ R·logits, R uniform in ±1/T. */
static void test_upstream_dlogits(void **state) {
  const char *names[] = {"llama_gqa", "gpt2", "neox_parallel"};
  for (size_t f = 0; f < sizeof names / sizeof *names; f++) {
    char dir[1200], rel[96];
    snprintf(rel, sizeof rel, "fixtures/lm/%s", names[f]);
    source_path(dir, sizeof dir, rel);
    bwt_lm *lm = NULL;
    assert_int_equal(bwt_lm_open(&lm, dir), BWT_STATUS_OK);
    const bwt_lm_config *c = bwt_lm_config_of(lm);
    enum { T = 9 };
    int32_t tokens[T] = {5, 11, 2, 40, 33, 7, 19, 60, 1};
    float *R = frand((size_t)T * c->V, -1.0f / T, 1.0f / T, 21);
    bwt_lm_grad g;
    assert_int_equal(bwt_lm_grad_forward(lm, tokens, T, &g), BWT_STATUS_OK);
    assert_int_equal(bwt_lm_grad_backward(lm, &g, R), BWT_STATUS_OK);
    assert_true(isnan(g.loss));
    model_ctx m = {lm, tokens, NULL, T, malloc(sizeof(float) * (size_t)T * c->V), R};
    int Q = c->NH * c->hs, K = c->NKV * c->hs, fused = lm->arch->qkv != LM_QKV_SEPARATE;
    const float **w = (const float **)lm->layers[0].w;
    double e_v = fused ? probe(&m, &g, &w[LM_QKV_W], (size_t)(Q + 2 * K) * c->C, 0, LM_QKV_W, NULL, 1e-2f, 31, 2)
                       : probe(&m, &g, &w[LM_V_W], (size_t)K * c->C, 0, LM_V_W, NULL, 1e-2f, 31, -1);
    double e_o = probe(&m, &g, &w[LM_O_W], (size_t)Q * c->C, 0, LM_O_W, NULL, 1e-2f, 32, -1);
    print_message("  upstream dlogits, %-14s block 0: W_V %.1e W_O %.1e (tol %.0e)\n", names[f], e_v, e_o, MODEL_FD_TOL);
    assert_true(e_v < MODEL_FD_TOL && e_o < MODEL_FD_TOL);
    bwt_lm_grad_free(&g);
    free(R), free(m.logits);
    bwt_lm_close(lm);
  }
}

static void test_bad_targets(void **state) {
  char dir[1200];
  source_path(dir, sizeof dir, "fixtures/lm/llama_gqa");
  bwt_lm *lm = NULL;
  assert_int_equal(bwt_lm_open(&lm, dir), BWT_STATUS_OK);
  int32_t tokens[4] = {1, 2, 3, 4}, none[4] = {-1, -1, -1, -1}, bad[4] = {2, 64, 3, -1};
  bwt_lm_grad g;
  assert_int_equal(bwt_lm_grad_xent(lm, tokens, 4, none, &g), BWT_STATUS_ARG);
  bwt_lm_grad_free(&g);
  assert_int_equal(bwt_lm_grad_xent(lm, tokens, 4, bad, &g), BWT_STATUS_ARG);
  assert_non_null(strstr(bwt_last_error(), "outside the vocabulary"));
  bwt_lm_grad_free(&g);
  assert_int_equal(bwt_lm_grad_forward(lm, tokens, 0, &g), BWT_STATUS_ARG);
  bwt_lm_grad_free(&g);
  bwt_lm_close(lm);
}

int main(void) {
  /* Tiny models: one thread (the gradients are the same for any count; the parallel regions of a
   * few hundred floats only cost time on a loaded machine). */
  bwt_set_threads(1);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_gqa_backward),
      cmocka_unit_test(test_norm_linear_rope_backward),
      cmocka_unit_test(test_fixtures_fd),
      cmocka_unit_test(test_stories_fd),
      cmocka_unit_test(test_upstream_dlogits),
      cmocka_unit_test(test_bad_targets),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
