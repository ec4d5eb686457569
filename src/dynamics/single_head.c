/* The single-head model of Paper II and its full-batch trainer (bwt/lab/single_head.h). */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/rng.h"
#include "bwt/lab/single_head.h"
#include "bwt/lab/stats.h"
#include "bwt/task.h"
#include "core/vecmath.h"

static const char *const routing_names[] = {"gradient", "frozen", "no-baseline", "uniform"};

const char *bwt_routing_name(bwt_routing r) { return routing_names[r]; }

bwt_status bwt_routing_parse(const char *s, bwt_routing *r) {
  for (int i = 0; i < 4; i++)
    if (strcmp(s, routing_names[i]) == 0) {
      *r = (bwt_routing)i;
      return BWT_STATUS_OK;
    }
  return bwt_fail(BWT_STATUS_ARG, "unknown routing mode '%s' (gradient, frozen, no-baseline, uniform)", s);
}

void bwt_single_head_init(bwt_single_head *m, uint64_t seed) {
  bwt_rng rng;
  bwt_rng_seed(&rng, seed, 0x5e1f);
  double *w = (double *)m; /* the struct is four double arrays, one after another */
  for (size_t i = 0; i < sizeof *m / sizeof(double); i++) w[i] = 0.1 * bwt_rng_normal(&rng);
}

struct bwt_sh_data {
  int T;
  double *x;         /* (T,20) */
  int32_t *y;        /* (T) */
  double *q;         /* (T,8) exact posterior */
  double *qk, *v;    /* (T,20): Q | K, then (T,15) V */
  double *att, *b;   /* (T,T) α, then b = dO·Vᵀ and the score gradient */
  double *o, *p;     /* (T,15) head output, (T,8) softmax of the logits */
  double *dz, *dout; /* (T,8), (T,15) */
  double *dqk, *dv;  /* (T,20), (T,15) */
};

void bwt_sh_data_free(bwt_sh_data *d) {
  if (!d) return;
  free(d->x), free(d->y), free(d->q), free(d->qk), free(d->v), free(d->att), free(d->b);
  free(d->o), free(d->p), free(d->dz), free(d->dout), free(d->dqk), free(d->dv);
  free(d);
}

int bwt_sh_data_len(const bwt_sh_data *d) { return d->T; }

bwt_status bwt_sh_data_create(bwt_sh_data **out, int T, uint64_t seed) {
  *out = NULL;
  if (T < 2 || T > 20000) return bwt_fail(BWT_STATUS_ARG, "single head: chain length must be in 2..20000 (got %d)", T);
  bwt_task_config tc;
  BWT_TRY(bwt_task_config_default(&tc, "sticky"));
  tc.chain_len = T;
  bwt_task *task = NULL;
  BWT_TRY(bwt_task_create(&task, &tc));
  bwt_batch b;
  bwt_status s = bwt_batch_alloc(&b, task, 1);
  if (s == BWT_STATUS_OK) s = bwt_task_sample(task, seed, &b);
  bwt_sh_data *d = s == BWT_STATUS_OK ? bwt_calloc(1, sizeof *d, "single head data") : NULL;
  if (d) {
    size_t t = T;
    d->T = T;
    d->x = bwt_calloc(t * SH_IN, sizeof(double), NULL), d->y = bwt_calloc(t, sizeof(int32_t), NULL), d->q = bwt_calloc(t * SH_OUT, sizeof(double), NULL);
    d->qk = bwt_calloc(t * 2 * SH_QK, sizeof(double), NULL), d->v = bwt_calloc(t * SH_V, sizeof(double), NULL);
    d->att = bwt_calloc(t * t, sizeof(double), NULL), d->b = bwt_calloc(t * t, sizeof(double), NULL);
    d->o = bwt_calloc(t * SH_V, sizeof(double), NULL), d->p = bwt_calloc(t * SH_OUT, sizeof(double), NULL);
    d->dz = bwt_calloc(t * SH_OUT, sizeof(double), NULL), d->dout = bwt_calloc(t * SH_V, sizeof(double), NULL);
    d->dqk = bwt_calloc(t * 2 * SH_QK, sizeof(double), NULL), d->dv = bwt_calloc(t * SH_V, sizeof(double), NULL);
    if (!d->x || !d->y || !d->q || !d->qk || !d->v || !d->att || !d->b || !d->o || !d->p || !d->dz || !d->dout ||
        !d->dqk || !d->dv)
      s = bwt_fail(BWT_STATUS_NOMEM, "out of memory for a single-head sequence of %d positions", T);
    for (size_t i = 0; s == BWT_STATUS_OK && i < t * SH_IN; i++) d->x[i] = b.inputs[i];
    if (s == BWT_STATUS_OK) {
      memcpy(d->y, b.target, sizeof(int32_t) * t);
      memcpy(d->q, b.posterior, sizeof(double) * t * SH_OUT);
    }
  } else if (s == BWT_STATUS_OK) {
    s = BWT_STATUS_NOMEM;
  }
  bwt_batch_free(&b);
  bwt_task_free(task);
  if (s != BWT_STATUS_OK) {
    bwt_sh_data_free(d);
    return s;
  }
  *out = d;
  return BWT_STATUS_OK;
}

double bwt_sh_data_bayes_ce(const bwt_sh_data *d) {
  double ce = 0;
  for (int t = 0; t < d->T; t++) ce -= log(d->q[t * SH_OUT + d->y[t]]);
  return ce / d->T;
}

/* C (m,n) = alpha · op(A) op(B) + beta C, row-major. */
static void gemm(int ta, int tb, int m, int n, int k, double alpha, const double *a, int lda, const double *b,
                 int ldb, double beta, double *c, int ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda,
              b, ldb, beta, c, ldc);
}

/* The forward pass into d's workspace; returns the mean cross-entropy. */
static double forward(const bwt_single_head *m, bwt_sh_data *d, bwt_routing mode) {
  int T = d->T;
  double *Q = d->qk, *K = d->qk + SH_QK; /* interleaved rows: Q | K, stride 20 */
  gemm(0, 0, T, SH_QK, SH_IN, 1, d->x, SH_IN, m->wq, SH_QK, 0, Q, 2 * SH_QK);
  gemm(0, 0, T, SH_QK, SH_IN, 1, d->x, SH_IN, m->wk, SH_QK, 0, K, 2 * SH_QK);
  gemm(0, 0, T, SH_V, SH_IN, 1, d->x, SH_IN, m->wv, SH_V, 0, d->v, SH_V);
  if (mode != BWT_ROUTING_UNIFORM)
    gemm(0, 1, T, T, SH_QK, 1 / sqrt((double)SH_QK), Q, 2 * SH_QK, K, 2 * SH_QK, 0, d->att, T);
  /* Causal softmax, the diagonal included; rows are independent, so threads do not change results. */
#pragma omp parallel for schedule(dynamic, 32)
  for (int i = 0; i < T; i++) {
    double *a = d->att + (size_t)i * T, mx = -INFINITY, z = 0;
    if (mode == BWT_ROUTING_UNIFORM) {
      for (int j = 0; j <= i; j++) a[j] = 1.0 / (i + 1);
    } else {
      for (int j = 0; j <= i; j++) mx = fmax(mx, a[j]);
#pragma omp simd
      for (int j = 0; j <= i; j++) a[j] = exp(a[j] - mx); /* libmvec's vector exp */
      for (int j = 0; j <= i; j++) z += a[j];
      for (int j = 0; j <= i; j++) a[j] /= z;
    }
    for (int j = i + 1; j < T; j++) a[j] = 0;
  }
  gemm(0, 0, T, SH_V, T, 1, d->att, T, d->v, SH_V, 0, d->o, SH_V);
  gemm(0, 0, T, SH_OUT, SH_V, 1, d->o, SH_V, m->wo, SH_OUT, 0, d->p, SH_OUT);
  double loss = 0;
  for (int t = 0; t < T; t++) {
    double *p = d->p + t * SH_OUT, mx = p[0], z = 0;
    for (int k = 1; k < SH_OUT; k++) mx = fmax(mx, p[k]);
    for (int k = 0; k < SH_OUT; k++) z += p[k] = exp(p[k] - mx);
    for (int k = 0; k < SH_OUT; k++) p[k] /= z;
    loss -= log(p[d->y[t]]);
  }
  return loss / T;
}

double bwt_single_head_loss(const bwt_single_head *m, bwt_sh_data *d, bwt_routing mode, bwt_single_head *g) {
  double loss = forward(m, d, mode);
  if (!g) return loss;
  int T = d->T;
  for (int t = 0; t < T; t++)
    for (int k = 0; k < SH_OUT; k++) d->dz[t * SH_OUT + k] = (d->p[t * SH_OUT + k] - (k == d->y[t])) / T;
  gemm(1, 0, SH_V, SH_OUT, T, 1, d->o, SH_V, d->dz, SH_OUT, 0, g->wo, SH_OUT);
  gemm(0, 1, T, SH_V, SH_OUT, 1, d->dz, SH_OUT, m->wo, SH_OUT, 0, d->dout, SH_V); /* u_i = ∂L/∂o_i */
  gemm(1, 0, T, SH_V, T, 1, d->att, T, d->dout, SH_V, 0, d->dv, SH_V);           /* Σ_i α_ij u_i */
  gemm(1, 0, SH_IN, SH_V, T, 1, d->x, SH_IN, d->dv, SH_V, 0, g->wv, SH_V);
  memset(g->wq, 0, sizeof g->wq);
  memset(g->wk, 0, sizeof g->wk);
  if (mode == BWT_ROUTING_UNIFORM || mode == BWT_ROUTING_FROZEN) return loss; /* routing does not learn */
  gemm(0, 1, T, T, SH_V, 1, d->dout, SH_V, d->v, SH_V, 0, d->b, T); /* b_ij = u_i·v_j */
#pragma omp parallel for schedule(dynamic, 32)
  for (int i = 0; i < T; i++) {
    const double *a = d->att + (size_t)i * T;
    double *ds = d->b + (size_t)i * T, base = 0;
    if (mode == BWT_ROUTING_GRADIENT)
      for (int j = 0; j <= i; j++) base += a[j] * ds[j];
    for (int j = 0; j <= i; j++) ds[j] = a[j] * (ds[j] - base); /* the advantage (or α·b without baseline) */
    for (int j = i + 1; j < T; j++) ds[j] = 0;
  }
  double r = 1 / sqrt((double)SH_QK), *Q = d->qk, *K = d->qk + SH_QK, *dQ = d->dqk, *dK = d->dqk + SH_QK;
  gemm(0, 0, T, SH_QK, T, r, d->b, T, K, 2 * SH_QK, 0, dQ, 2 * SH_QK);
  gemm(1, 0, T, SH_QK, T, r, d->b, T, Q, 2 * SH_QK, 0, dK, 2 * SH_QK);
  gemm(1, 0, SH_IN, SH_QK, T, 1, d->x, SH_IN, dQ, 2 * SH_QK, 0, g->wq, SH_QK);
  gemm(1, 0, SH_IN, SH_QK, T, 1, d->x, SH_IN, dK, 2 * SH_QK, 0, g->wk, SH_QK);
  return loss;
}

bwt_status bwt_single_head_report(const bwt_single_head *m, bwt_sh_data *d, bwt_routing mode, bwt_sh_report *out) {
  forward(m, d, mode);
  int T = d->T;
  double mae = 0, kl = 0;
  double *h = bwt_calloc(T, sizeof(double), "single head report");
  float *o = bwt_calloc((size_t)T * SH_V, sizeof(float), "single head report");
  bwt_status s = h && o ? BWT_STATUS_OK : BWT_STATUS_NOMEM;
  for (int t = 0; s == BWT_STATUS_OK && t < T; t++) {
    const double *p = d->p + t * SH_OUT, *q = d->q + t * SH_OUT;
    double hp = 0;
    h[t] = 0;
    for (int k = 0; k < SH_OUT; k++) {
      if (p[k] > 0) hp -= p[k] * log2(p[k]);
      if (q[k] > 0) h[t] -= q[k] * log2(q[k]), kl += q[k] * log2(q[k] / p[k]);
    }
    mae += fabs(hp - h[t]);
  }
  for (size_t i = 0; s == BWT_STATUS_OK && i < (size_t)T * SH_V; i++) o[i] = (float)d->o[i];
  *out = (bwt_sh_report){mae / T, kl / T, NAN, NAN};
  bwt_pca p;
  memset(&p, 0, sizeof p);
  if (s == BWT_STATUS_OK && bwt_pca_compute(&p, o, T, SH_V, SH_V, 1) == BWT_STATUS_OK) {
    double *pc1 = bwt_calloc(T, sizeof(double), "single head report");
    if (pc1) {
      for (int t = 0; t < T; t++) pc1[t] = p.scores[t];
      out->pc1 = p.pc1;
      out->spearman = bwt_spearman(pc1, h, T);
      free(pc1);
    } else {
      s = BWT_STATUS_NOMEM;
    }
  }
  bwt_pca_free(&p);
  free(h);
  free(o);
  return s;
}

bwt_status bwt_single_head_train(bwt_single_head *m, bwt_sh_data *d, bwt_routing mode, int steps, double lr,
                                 double lr_v, double *loss) {
  if (steps < 0 || !(lr >= 0) || !(lr_v >= 0)) return bwt_fail(BWT_STATUS_ARG, "single head: steps and rates must be >= 0");
  bwt_single_head g;
  for (int step = 0; step <= steps; step++) {
    loss[step] = bwt_single_head_loss(m, d, mode, step < steps ? &g : NULL);
    if (!isfinite(loss[step])) return bwt_fail(BWT_STATUS_NUMERIC, "single head: the loss is not finite at step %d", step);
    if (step == steps) break;
    for (int i = 0; i < SH_IN * SH_QK; i++) m->wq[i] -= lr * g.wq[i], m->wk[i] -= lr * g.wk[i];
    for (int i = 0; i < SH_IN * SH_V; i++) m->wv[i] -= lr_v * g.wv[i];
    for (int i = 0; i < SH_V * SH_OUT; i++) m->wo[i] -= lr * g.wo[i];
  }
  return BWT_STATUS_OK;
}
