/* Kernel tests, run once per backend in the table below.
 *
 * Every test takes its ops from a backend row and checks them against oracles that stay on the
 * CPU, from strongest to weakest:
 *  - double-precision mirrors of every forward written here from the formulas in kernels.h; the
 *    float forward must match them, and every backward must match central differences of them
 *    (taken in double, so the only error left is the kernels' float rounding);
 *  - the naive reference kernels for the fast ones (matmul, attention);
 *  - properties: backwards accumulate, NULL gradients are skipped, reruns are bit-identical,
 *    softmax rows sum to one even for huge logits, AdamW matches hand-computed values. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/kernels.h"
#include "core/fault.h"
#include "testutil.h"

/* ---- the backends ------------------------------------------------------------------------- */

/* A backend's ops, with kernels.h's signatures on host arrays (a device backend's row wraps each op
 * in an upload, the op, a download). Every test runs once per row; the oracles (double mirrors,
 * the _naive kernels, hand-computed values) are the CPU's. */
typedef struct {
  const char *name;
  void (*matmul_forward)(float *, const float *, const float *, const float *, int, int, int);
  void (*matmul_backward)(float *, float *, float *, const float *, const float *, const float *, int, int, int);
  void (*embedding_forward)(float *, const int32_t *, const float *, const float *, const int32_t *, int, int, int, int);
  void (*embedding_backward)(float *, float *, const float *, const int32_t *, const int32_t *, int, int, int, int);
  void (*rmsnorm_forward)(float *, float *, const float *, const float *, int, int);
  void (*rmsnorm_backward)(float *, float *, const float *, const float *, const float *, const float *, int, int);
  void (*layernorm_forward)(float *, float *, float *, const float *, const float *, const float *, int, int);
  void (*layernorm_backward)(float *, float *, float *, const float *, const float *, const float *, const float *,
                             const float *, int, int);
  void (*gelu_forward)(float *, const float *, size_t);
  void (*gelu_backward)(float *, const float *, const float *, size_t);
  bwt_status (*attention_forward)(float *, float *, const float *, const float *, const float *, const float *, int,
                                  int, int, int, int, const int32_t *);
  bwt_status (*attention_backward)(float *, float *, float *, const float *, const float *, const float *,
                                   const float *, const float *, const float *, int, int, int, int, int,
                                   const int32_t *, float *);
  void (*attention_scores)(float *, const float *, const float *, const int32_t *, int, int, int, int, int);
  void (*lstm_forward)(float *, float *, float *, const float *, const float *, int, int, int);
  void (*lstm_backward)(float *, float *, float *, const float *, const float *, const float *, int, int, int);
  void (*softmax_forward)(float *, const float *, int, int);
  double (*xent_loss)(const float *, const int32_t *, const double *, int, int);
  void (*xent_backward)(float *, const float *, const int32_t *, const double *, float, int, int);
  double (*mse_loss)(const float *, const int32_t *, const double *, int, int);
  void (*mse_backward)(float *, const float *, const int32_t *, const double *, float, int, int);
  void (*pg_backward)(float *, const float *, const int32_t *, const double *, float, int, int);
  void (*fill)(float *, float, size_t);
  void (*zero)(float *, size_t);
  void (*copy)(float *, const float *, size_t);
  void (*gather_rows)(float *, const float *, const int32_t *, int, int);
  void (*gather_rows_add)(float *, const float *, const int32_t *, int, int);
  void (*scatter_add_rows)(float *, const float *, const int32_t *, int, int);
  void (*transpose)(float *, const float *, int, int, int);
  void (*add_inplace)(float *, const float *, size_t);
  void (*scale)(float *, float, size_t);
  void (*scale_heads)(float *, const float *, const float *, int, int, int);
  double (*sumsq)(const float *, size_t);
  void (*adamw_update)(float *, const float *, float *, float *, size_t, float, float, float, float, float, int);
} backend;

static const backend backends[] = {
    {.name = "cpu",
     .matmul_forward = bwt_matmul_forward,
     .matmul_backward = bwt_matmul_backward,
     .embedding_forward = bwt_embedding_forward,
     .embedding_backward = bwt_embedding_backward,
     .rmsnorm_forward = bwt_rmsnorm_forward,
     .rmsnorm_backward = bwt_rmsnorm_backward,
     .layernorm_forward = bwt_layernorm_forward,
     .layernorm_backward = bwt_layernorm_backward,
     .gelu_forward = bwt_gelu_forward,
     .gelu_backward = bwt_gelu_backward,
     .attention_forward = bwt_attention_forward,
     .attention_backward = bwt_attention_backward,
     .attention_scores = bwt_attention_scores,
     .lstm_forward = bwt_lstm_forward,
     .lstm_backward = bwt_lstm_backward,
     .softmax_forward = bwt_softmax_forward,
     .xent_loss = bwt_xent_loss,
     .xent_backward = bwt_xent_backward,
     .mse_loss = bwt_mse_loss,
     .mse_backward = bwt_mse_backward,
     .pg_backward = bwt_pg_backward,
     .fill = bwt_fill,
     .zero = bwt_zero,
     .copy = bwt_copy,
     .gather_rows = bwt_gather_rows,
     .gather_rows_add = bwt_gather_rows_add,
     .scatter_add_rows = bwt_scatter_add_rows,
     .transpose = bwt_transpose,
     .add_inplace = bwt_add_inplace,
     .scale = bwt_scale,
     .scale_heads = bwt_scale_heads,
     .sumsq = bwt_sumsq,
     .adamw_update = bwt_adamw_update},
};
enum { N_BACKENDS = sizeof backends / sizeof backends[0] };

/* Central differences on the double mirrors: step 1e-4 leaves truncation error ~1e-8 and rounding
 * error ~1e-12, so the analytic float gradients are compared at 1e-4 relative (floor 1e-2 for
 * entries near zero). Measured errors are 1e-11..4e-6 and are printed. */
#define FD_STEP 1e-4
#define FD_TOL 1e-4
#define FD_FLOOR 1e-2

/* ---- scratch memory, released after each test ---------------------------------------------- */

static void *scratch[256];
static int n_scratch;

static void *zalloc(size_t bytes) {
  assert_true(n_scratch < 256);
  void *p = calloc(1, bytes ? bytes : 1);
  assert_non_null(p);
  return scratch[n_scratch++] = p;
}
static float *fzeros(size_t n) { return zalloc(sizeof(float) * n); }
static double *dzeros(size_t n) { return zalloc(sizeof(double) * n); }
static int release_scratch(void **state) {
  while (n_scratch > 0) free(scratch[--n_scratch]);
  return 0;
}

/* x(n) uniform in [lo, hi) from `seed`. */
static float *frand(size_t n, float lo, float hi, uint64_t seed) {
  float *x = fzeros(n);
  test_fill_uniform(x, n, lo, hi, seed);
  return x;
}
/* An exact double copy of x(n). */
static double *widen(const float *x, size_t n) {
  double *d = dzeros(n);
  for (size_t i = 0; i < n; i++) d[i] = x[i];
  return d;
}
/* max_i |a_i − b_i| / max(|b_i|, floor) for a float result against a double reference. */
static double rel_err_d(const float *a, const double *b, size_t n, double floor) {
  double worst = 0;
  for (size_t i = 0; i < n; i++) {
    double e = fabs(a[i] - b[i]) / fmax(fabs(b[i]), floor);
    if (!(e <= worst)) worst = e; /* NaN counts as the worst */
  }
  return worst;
}

/* |a − b| ≤ tol, in double (cmocka's assert_float_equal rounds both sides to float). */
#define assert_close(a, b, tol) assert_close_at((a), (b), (tol), #a, __LINE__)
static void assert_close_at(double a, double b, double tol, const char *what, int line) {
  if (!(fabs(a - b) <= tol))
    fail_msg("line %d: %s = %.17g, expected %.17g ± %g", line, what, a, b, tol);
}

/* ---- double-precision mirrors of the forwards --------------------------------------------- */

/* out(N,OC) = inp(N,IC) · w(OC,IC)ᵀ + b(OC) */
static void ref_matmul(double *out, const double *inp, const double *w, const double *b, int N,
                       int IC, int OC) {
  for (int n = 0; n < N; n++)
    for (int o = 0; o < OC; o++) {
      double acc = b ? b[o] : 0;
      for (int i = 0; i < IC; i++) acc += inp[n * IC + i] * w[o * IC + i];
      out[n * OC + o] = acc;
    }
}

/* out(B,T,C) = wte[tok] + wpe[t] */
static void ref_embedding(double *out, const int32_t *tok, const double *wte, const double *wpe,
                          int B, int T, int C) {
  for (int bt = 0; bt < B * T; bt++)
    for (int c = 0; c < C; c++) out[bt * C + c] = wte[tok[bt] * C + c] + wpe[(bt % T) * C + c];
}

static void ref_rmsnorm(double *out, const double *inp, const double *w, int N, int C) {
  for (int n = 0; n < N; n++) {
    const double *x = inp + n * C;
    double ms = 0;
    for (int c = 0; c < C; c++) ms += x[c] * x[c] / C;
    for (int c = 0; c < C; c++) out[n * C + c] = x[c] / sqrt(ms + 1e-5) * w[c];
  }
}

static void ref_layernorm(double *out, const double *inp, const double *w, const double *b, int N,
                          int C) {
  for (int n = 0; n < N; n++) {
    const double *x = inp + n * C;
    double mu = 0, var = 0;
    for (int c = 0; c < C; c++) mu += x[c] / C;
    for (int c = 0; c < C; c++) var += (x[c] - mu) * (x[c] - mu) / C;
    for (int c = 0; c < C; c++) out[n * C + c] = (x[c] - mu) / sqrt(var + 1e-5) * w[c] + b[c];
  }
}

static void ref_gelu(double *out, const double *inp, size_t n) {
  for (size_t i = 0; i < n; i++) out[i] = 0.5 * inp[i] * (1 + erf(inp[i] / sqrt(2.0)));
}

/* Causal attention, head h on channels [h·hs, (h+1)·hs); att(B,NH,T,T) may be NULL. */
static void ref_attention(double *out, double *att, const double *q, const double *k,
                          const double *v, const double *mask, int B, int T, int C, int NH) {
  int hs = C / NH;
  double *a = malloc(sizeof(double) * (size_t)T);
  assert_non_null(a);
  for (int b = 0; b < B; b++)
    for (int h = 0; h < NH; h++)
      for (int t = 0; t < T; t++) {
        double mx = -INFINITY, z = 0;
        for (int s = 0; s < T; s++) {
          a[s] = 0;
          if (s > t) continue;
          for (int i = 0; i < hs; i++)
            a[s] += q[(b * T + t) * C + h * hs + i] * k[(b * T + s) * C + h * hs + i];
          a[s] /= sqrt((double)hs);
          mx = fmax(mx, a[s]);
        }
        for (int s = 0; s <= t; s++) z += a[s] = exp(a[s] - mx);
        for (int s = 0; s <= t; s++) a[s] /= z;
        if (att) memcpy(att + ((b * NH + h) * T + t) * T, a, sizeof(double) * (size_t)T);
        for (int i = 0; i < hs; i++) {
          double acc = 0;
          for (int s = 0; s <= t; s++) acc += a[s] * v[(b * T + s) * C + h * hs + i];
          out[(b * T + t) * C + h * hs + i] = (mask ? mask[h] : 1.0) * acc;
        }
      }
  free(a);
}

/* The LSTM recurrence, time-major: h(T,B,H) from the gates' input parts a(T,B,4H) (x W_ihᵀ + b_ih),
 * w_hh(4H,H), b_hh(4H); gate order i, f, g, o. */
static void ref_lstm(double *h, const double *a, const double *w_hh, const double *b_hh, int T, int B, int H) {
  double *c = calloc((size_t)B * H, sizeof(double));
  assert_non_null(c);
  for (int t = 0; t < T; t++)
    for (int b = 0; b < B; b++) {
      double pre[4 * 64];
      assert_true(H <= 64);
      for (int g = 0; g < 4 * H; g++) {
        pre[g] = a[((size_t)t * B + b) * 4 * H + g] + b_hh[g];
        for (int j = 0; t > 0 && j < H; j++) pre[g] += w_hh[(size_t)g * H + j] * h[((size_t)(t - 1) * B + b) * H + j];
      }
      for (int j = 0; j < H; j++) {
        double ig = 1 / (1 + exp(-pre[j])), fg = 1 / (1 + exp(-pre[H + j]));
        double gg = tanh(pre[2 * H + j]), og = 1 / (1 + exp(-pre[3 * H + j]));
        c[b * H + j] = fg * c[b * H + j] + ig * gg;
        h[((size_t)t * B + b) * H + j] = og * tanh(c[b * H + j]);
      }
    }
  free(c);
}

/* Mean cross-entropy of softmax(logits(N,K)) against hard targets or soft rows. */
static double ref_xent(const double *logits, const int32_t *tgt, const double *soft, int N, int K) {
  double total = 0;
  for (int n = 0; n < N; n++) {
    const double *x = logits + n * K;
    double mx = -INFINITY, z = 0;
    for (int j = 0; j < K; j++) mx = fmax(mx, x[j]);
    for (int j = 0; j < K; j++) z += exp(x[j] - mx);
    for (int j = 0; j < K; j++) {
      double y = soft ? soft[n * K + j] : (double)(j == tgt[n]);
      total -= y * (x[j] - mx - log(z));
    }
  }
  return total / N;
}

/* softmax(logits(N,K)) in double, into p. */
static void ref_softmax(double *p, const double *logits, int N, int K) {
  for (int n = 0; n < N; n++) {
    const double *x = logits + n * K;
    double mx = -INFINITY, z = 0;
    for (int j = 0; j < K; j++) mx = fmax(mx, x[j]);
    for (int j = 0; j < K; j++) z += p[n * K + j] = exp(x[j] - mx);
    for (int j = 0; j < K; j++) p[n * K + j] /= z;
  }
}

/* Mean over rows of Σ_k (p_k − y_k)², p = softmax(logits). */
static double ref_mse(const double *logits, const int32_t *tgt, const double *soft, int N, int K) {
  double total = 0, p[64];
  assert_true(K <= 64);
  for (int n = 0; n < N; n++) {
    ref_softmax(p, logits + n * K, 1, K);
    for (int j = 0; j < K; j++) {
      double e = p[j] - (soft ? soft[n * K + j] : (double)(j == tgt[n]));
      total += e * e;
    }
  }
  return total / N;
}

/* REINFORCE's surrogate: −(1/N) Σ_n w_n log softmax(logits)_n[a_n]. */
static double ref_pg_surrogate(const double *logits, const int32_t *actions, const double *w, int N, int K) {
  double total = 0, p[64];
  assert_true(K <= 64);
  for (int n = 0; n < N; n++) {
    ref_softmax(p, logits + n * K, 1, K);
    total -= w[n] * log(p[actions[n]]);
  }
  return total / N;
}

/* ---- the finite-difference checker -------------------------------------------------------- */

typedef enum {
  OP_MATMUL, OP_EMBEDDING, OP_RMSNORM, OP_LAYERNORM, OP_GELU, OP_ATTENTION, OP_XENT, OP_MSE, OP_PG, OP_LSTM
} op_kind;

/* One op's double inputs (x[], perturbed in place by the checker) and its scalar loss: Σ out ⊙ R
 * for a fixed random R, or for the losses (OP_XENT, OP_MSE, OP_PG) their mean itself; OP_PG reads
 * its actions from ints and its weights from soft. */
typedef struct {
  op_kind op;
  int N, IC, OC, B, T, C, NH, K;
  double *x[3];
  const int32_t *ints; /* tokens or targets */
  const double *mask, *soft;
  double *out, *R;
  size_t nout;
} fd_ctx;

static double fd_loss(fd_ctx *c) {
  switch (c->op) {
    case OP_MATMUL: ref_matmul(c->out, c->x[0], c->x[1], c->x[2], c->N, c->IC, c->OC); break;
    case OP_EMBEDDING: ref_embedding(c->out, c->ints, c->x[0], c->x[1], c->B, c->T, c->C); break;
    case OP_RMSNORM: ref_rmsnorm(c->out, c->x[0], c->x[1], c->N, c->C); break;
    case OP_LAYERNORM: ref_layernorm(c->out, c->x[0], c->x[1], c->x[2], c->N, c->C); break;
    case OP_GELU: ref_gelu(c->out, c->x[0], c->nout); break;
    case OP_ATTENTION:
      ref_attention(c->out, NULL, c->x[0], c->x[1], c->x[2], c->mask, c->B, c->T, c->C, c->NH);
      break;
    case OP_XENT: return ref_xent(c->x[0], c->ints, c->soft, c->N, c->K);
    case OP_MSE: return ref_mse(c->x[0], c->ints, c->soft, c->N, c->K);
    case OP_PG: return ref_pg_surrogate(c->x[0], c->ints, c->soft, c->N, c->K);
    case OP_LSTM: ref_lstm(c->out, c->x[0], c->x[1], c->x[2], c->T, c->B, c->C); break;
  }
  double L = 0;
  for (size_t i = 0; i < c->nout; i++) L += c->out[i] * c->R[i];
  return L;
}

/* Worst relative error (floor FD_FLOOR) of the analytic gradient an(n) of the loss w.r.t. x(n)
 * against central differences; x is restored afterwards. */
static double fd_err(fd_ctx *c, double *x, const float *an, size_t n) {
  double worst = 0;
  for (size_t i = 0; i < n; i++) {
    double x0 = x[i];
    x[i] = x0 + FD_STEP;
    double lp = fd_loss(c);
    x[i] = x0 - FD_STEP;
    double lm = fd_loss(c);
    x[i] = x0;
    double num = (lp - lm) / (2 * FD_STEP);
    double e = fabs(an[i] - num) / fmax(fabs(num), FD_FLOOR);
    if (!(e <= worst)) worst = e;
  }
  return worst;
}

static void check_grad(const char *what, fd_ctx *c, double *x, const float *an, size_t n) {
  double e = fd_err(c, x, an, n);
  print_message("  fd %-22s max rel err %.2e (tol %.0e)\n", what, e, FD_TOL);
  assert_true(e < FD_TOL);
}

/* Checks the float forward output against the mirror evaluated at the same (unperturbed) point. */
static void check_forward(const char *what, fd_ctx *c, const float *out, double tol) {
  fd_loss(c);
  double e = rel_err_d(out, c->out, c->nout, 1e-3);
  print_message("  fwd %-21s max rel err %.2e (tol %.0e)\n", what, e, tol);
  assert_true(e < tol);
}

/* ---- gradient checks, one per backward ---------------------------------------------------- */

static void test_matmul_grad(void **state) {
  const backend *be = *state;
  enum { N = 5, IC = 7, OC = 4 };
  float *inp = frand(N * IC, -1, 1, 1), *w = frand(OC * IC, -1, 1, 2), *b = frand(OC, -1, 1, 3);
  float *R = frand(N * OC, -1, 1, 4), *out = fzeros(N * OC);
  fd_ctx c = {.op = OP_MATMUL, .N = N, .IC = IC, .OC = OC, .out = dzeros(N * OC),
              .R = widen(R, N * OC), .nout = N * OC,
              .x = {widen(inp, N * IC), widen(w, OC * IC), widen(b, OC)}};
  be->matmul_forward(out, inp, w, b, N, IC, OC);
  check_forward("matmul", &c, out, 1e-5);
  float *dinp = fzeros(N * IC), *dw = fzeros(OC * IC), *db = fzeros(OC);
  be->matmul_backward(dinp, dw, db, R, inp, w, N, IC, OC);
  check_grad("matmul dinp", &c, c.x[0], dinp, N * IC);
  check_grad("matmul dweight", &c, c.x[1], dw, OC * IC);
  check_grad("matmul dbias", &c, c.x[2], db, OC);
}

/* The checker must be able to fail: a gradient off by 1e-3 in one entry, or scaled by 1.001, or
 * taken w.r.t. the wrong input, is rejected. */
static void test_fd_checker_detects_errors(void **state) {
  const backend *be = *state;
  enum { N = 5, IC = 7, OC = 4 };
  float *inp = frand(N * IC, -1, 1, 1), *w = frand(OC * IC, -1, 1, 2), *b = frand(OC, -1, 1, 3);
  float *R = frand(N * OC, -1, 1, 4);
  fd_ctx c = {.op = OP_MATMUL, .N = N, .IC = IC, .OC = OC, .out = dzeros(N * OC),
              .R = widen(R, N * OC), .nout = N * OC,
              .x = {widen(inp, N * IC), widen(w, OC * IC), widen(b, OC)}};
  float *dw = fzeros(OC * IC);
  be->matmul_backward(NULL, dw, NULL, R, inp, w, N, IC, OC);
  assert_true(fd_err(&c, c.x[1], dw, OC * IC) < FD_TOL);
  dw[3] += 1e-3f;
  double e_one = fd_err(&c, c.x[1], dw, OC * IC);
  dw[3] -= 1e-3f;
  for (int i = 0; i < OC * IC; i++) dw[i] *= 1.001f;
  double e_scaled = fd_err(&c, c.x[1], dw, OC * IC);
  float *dinp = fzeros(N * IC);
  be->matmul_backward(dinp, NULL, NULL, R, inp, w, N, IC, OC);
  double e_wrong = fd_err(&c, c.x[1], dinp, OC * IC); /* dinp checked as if it were dweight */
  print_message("  perturbed gradients: one entry %.2e, scaled %.2e, wrong tensor %.2e\n", e_one,
                e_scaled, e_wrong);
  assert_true(e_one > FD_TOL);
  assert_true(e_scaled > FD_TOL);
  assert_true(e_wrong > FD_TOL);
}

static void test_embedding_grad(void **state) {
  const backend *be = *state;
  enum { B = 2, T = 4, C = 3, V = 5, MAXT = 6 };
  /* Repeated tokens (their gradients must add up) and an unused one (3). */
  const int32_t tok[B * T] = {0, 2, 2, 4, 2, 0, 1, 0};
  float *wte = frand(V * C, -1, 1, 5), *wpe = frand(MAXT * C, -1, 1, 6);
  float *R = frand(B * T * C, -1, 1, 7), *out = fzeros(B * T * C);
  fd_ctx c = {.op = OP_EMBEDDING, .B = B, .T = T, .C = C, .ints = tok, .out = dzeros(B * T * C),
              .R = widen(R, B * T * C), .nout = B * T * C,
              .x = {widen(wte, V * C), widen(wpe, MAXT * C)}};
  be->embedding_forward(out, tok, wte, wpe, NULL, 0, B, T, C);
  check_forward("embedding", &c, out, 1e-6);
  float *dwte = fzeros(V * C), *dwpe = fzeros(MAXT * C);
  be->embedding_backward(dwte, dwpe, R, tok, NULL, 0, B, T, C);
  check_grad("embedding dwte", &c, c.x[0], dwte, V * C);
  check_grad("embedding dwpe", &c, c.x[1], dwpe, MAXT * C); /* rows T.. stay 0 */
  /* No positions: out is the token rows alone. */
  be->embedding_forward(out, tok, wte, NULL, NULL, 0, B, T, C);
  for (int bt = 0; bt < B * T; bt++)
    assert_memory_equal(out + bt * C, wte + tok[bt] * C, sizeof(float) * C);
}

/* Shifted positions (the trainer's --position-jitter): sequence b reads row t for t < from and
 * t + offset[b] after; each row of dwpe sums the batch in order, so it equals the plain loop exactly. */
static void test_embedding_offsets(void **state) {
  const backend *be = *state;
  enum { B = 3, T = 4, C = 3, V = 5, MAXT = 7 };
  const int32_t tok[B * T] = {0, 2, 2, 4, 2, 0, 1, 0, 3, 3, 1, 4}, offset[B] = {0, 3, 2};
  float *wte = frand(V * C, -1, 1, 5), *wpe = frand(MAXT * C, -1, 1, 6);
  float *R = frand(B * T * C, -1, 1, 7), *out = fzeros(B * T * C);
  for (int from = 0; from <= 2; from += 2) {
    be->embedding_forward(out, tok, wte, wpe, offset, from, B, T, C);
    float *dwte = fzeros(V * C), *dwpe = fzeros(MAXT * C), *want = fzeros(MAXT * C);
    be->embedding_backward(dwte, dwpe, R, tok, offset, from, B, T, C);
    for (int b = 0; b < B; b++)
      for (int t = 0; t < T; t++)
        for (int c = 0; c < C; c++) {
          int bt = b * T + t, row = t < from ? t : t + offset[b];
          assert_float_equal(out[bt * C + c], wte[tok[bt] * C + c] + wpe[row * C + c], 0);
          want[row * C + c] += R[bt * C + c];
        }
    assert_memory_equal(dwpe, want, sizeof(float) * MAXT * C);
    assert_true(dwpe[6 * C] == R[(1 * T + 3) * C]); /* row 6: the last position of sequence 1 only */
    /* Row 1: sequence 0 alone when everything shifts; every sequence when the first two stay. */
    float row1 = from ? R[1 * C] + R[(T + 1) * C] + R[(2 * T + 1) * C] : R[1 * C];
    assert_true(dwpe[1 * C] == row1);
  }
  (void)state;
}

static void test_rmsnorm_grad(void **state) {
  const backend *be = *state;
  enum { N = 4, C = 6 };
  float *inp = frand(N * C, -2, 2, 8), *w = frand(C, 0.5f, 1.5f, 9);
  float *R = frand(N * C, -1, 1, 10), *out = fzeros(N * C), *rstd = fzeros(N);
  fd_ctx c = {.op = OP_RMSNORM, .N = N, .C = C, .out = dzeros(N * C), .R = widen(R, N * C),
              .nout = N * C, .x = {widen(inp, N * C), widen(w, C)}};
  be->rmsnorm_forward(out, rstd, inp, w, N, C);
  check_forward("rmsnorm", &c, out, 1e-5);
  float *dinp = fzeros(N * C), *dw = fzeros(C);
  be->rmsnorm_backward(dinp, dw, R, inp, w, rstd, N, C);
  check_grad("rmsnorm dinp", &c, c.x[0], dinp, N * C);
  check_grad("rmsnorm dweight", &c, c.x[1], dw, C);
}

static void test_layernorm_grad(void **state) {
  const backend *be = *state;
  enum { N = 4, C = 6 };
  float *inp = frand(N * C, -2, 2, 11), *w = frand(C, 0.5f, 1.5f, 12), *b = frand(C, -1, 1, 13);
  float *R = frand(N * C, -1, 1, 14), *out = fzeros(N * C), *mean = fzeros(N), *rstd = fzeros(N);
  fd_ctx c = {.op = OP_LAYERNORM, .N = N, .C = C, .out = dzeros(N * C), .R = widen(R, N * C),
              .nout = N * C, .x = {widen(inp, N * C), widen(w, C), widen(b, C)}};
  be->layernorm_forward(out, mean, rstd, inp, w, b, N, C);
  check_forward("layernorm", &c, out, 1e-5);
  float *dinp = fzeros(N * C), *dw = fzeros(C), *db = fzeros(C);
  be->layernorm_backward(dinp, dw, db, R, inp, w, mean, rstd, N, C);
  check_grad("layernorm dinp", &c, c.x[0], dinp, N * C);
  check_grad("layernorm dweight", &c, c.x[1], dw, C);
  check_grad("layernorm dbias", &c, c.x[2], db, C);
  /* A row by hand: {1,2,3,4}, unit weight, zero bias -> (x − 2.5) / sqrt(1.25 + 1e-5). */
  const float x4[4] = {1, 2, 3, 4}, ones[4] = {1, 1, 1, 1}, zeros[4] = {0};
  float o4[4], m1, r1;
  be->layernorm_forward(o4, &m1, &r1, x4, ones, zeros, 1, 4);
  for (int i = 0; i < 4; i++) assert_close(o4[i], (x4[i] - 2.5) / sqrt(1.25 + 1e-5), 1e-6);
  assert_true(m1 == 2.5f);
}

static void test_gelu_grad(void **state) {
  const backend *be = *state;
  enum { N = 41 };
  float *inp = fzeros(N), *R = frand(N, -1, 1, 15), *out = fzeros(N);
  for (int i = 0; i < N; i++) inp[i] = -5.0f + 0.25f * (float)i; /* −5..5, including 0 */
  fd_ctx c = {.op = OP_GELU, .out = dzeros(N), .R = widen(R, N), .nout = N, .x = {widen(inp, N)}};
  be->gelu_forward(out, inp, N);
  fd_loss(&c);
  double e = 0;
  for (int i = 0; i < N; i++) e = fmax(e, fabs(out[i] - c.out[i]));
  print_message("  fwd %-21s max abs err %.2e (tol 1e-6)\n", "gelu", e);
  assert_true(e < 1e-6);
  assert_close(out[24], 0.8413447460685429, 1e-7);   /* gelu(1) = Φ(1) */
  assert_close(out[16], -0.15865525393145707, 1e-7); /* gelu(−1) = −Φ(−1) */
  assert_true(out[20] == 0.0f);
  float *dinp = fzeros(N);
  be->gelu_backward(dinp, R, inp, N);
  check_grad("gelu dinp", &c, c.x[0], dinp, N);
}

/* One shape, q and k uniform in [-qk, qk]; masks of 1, 0.5 and 0 on the first three heads (the
 * rest 1). Float rounding of the scores grows with their size, so longer heads get smaller qk. */
static void check_attention(const backend *be, int B, int T, int C, int NH, float qk) {
  int BTC = B * T * C;
  float maskf[8];
  double maskd[8];
  for (int h = 0; h < NH; h++) maskf[h] = (float)(maskd[h] = h == 1 ? 0.5 : h == 2 ? 0.0 : 1.0);
  float *q = frand(BTC, -qk, qk, 16), *k = frand(BTC, -qk, qk, 17), *v = frand(BTC, -1, 1, 18);
  float *R = frand(BTC, -1, 1, 19), *out = fzeros(BTC), *att = fzeros(B * NH * T * T);
  double *att_ref = dzeros(B * NH * T * T);
  print_message("  attention B=%d T=%d C=%d heads=%d (head size %d)\n", B, T, C, NH, C / NH);
  for (int with_mask = 1; with_mask >= 0; with_mask--) {
    const float *mf = with_mask ? maskf : NULL;
    fd_ctx c = {.op = OP_ATTENTION, .B = B, .T = T, .C = C, .NH = NH, .out = dzeros(BTC),
                .R = widen(R, BTC), .nout = BTC, .mask = with_mask ? maskd : NULL,
                .x = {widen(q, BTC), widen(k, BTC), widen(v, BTC)}};
    assert_int_equal(be->attention_forward(out, att, q, k, v, mf, B, T, C, NH, T, NULL), BWT_STATUS_OK);
    /* Outputs are averages of v with cancellation, so errors are relative to 1% of the largest. */
    fd_loss(&c);
    double big = 0, e;
    for (int i = 0; i < BTC; i++) big = fmax(big, fabs(c.out[i]));
    e = rel_err_d(out, c.out, BTC, 1e-2 * big);
    print_message("  fwd %-21s max rel err %.2e (tol 1e-05)\n", with_mask ? "attention (mask)" : "attention", e);
    assert_true(e < 1e-5);
    ref_attention(c.out, att_ref, c.x[0], c.x[1], c.x[2], c.mask, B, T, C, NH);
    assert_true(rel_err_d(att, att_ref, B * NH * T * T, 1e-3) < 1e-5); /* α, zeros above */
    float *dq = fzeros(BTC), *dk = fzeros(BTC), *dv = fzeros(BTC);
    assert_int_equal(be->attention_backward(dq, dk, dv, R, att, q, k, v, mf, B, T, C, NH, T, NULL, NULL), BWT_STATUS_OK);
    check_grad(with_mask ? "attention dq (mask)" : "attention dq", &c, c.x[0], dq, BTC);
    check_grad(with_mask ? "attention dk (mask)" : "attention dk", &c, c.x[1], dk, BTC);
    check_grad(with_mask ? "attention dv (mask)" : "attention dv", &c, c.x[2], dv, BTC);
  }
}

/* A small shape, and one whose head size (20) and length (19) cover the kernels' 16-wide blocks
 * and their remainders. */
static void test_attention_grad(void **state) {
  const backend *be = *state;
  check_attention(be, 2, 5, 12, 3, 2.0f);
  check_attention(be, 1, 19, 40, 2, 1.0f);
}

/* Rows of soft targets (N,K) from seed: each sums to 1, and column 1 is exactly 0 except in row 2. */
static double *soft_rows(int N, int K, uint64_t seed) {
  double *soft = dzeros(N * K);
  float *sr = frand(N * K, 0, 1, seed);
  for (int n = 0; n < N; n++) {
    double z = 0;
    for (int j = 0; j < K; j++) z += soft[n * K + j] = (j == 1 && n != 2) ? 0.0 : sr[n * K + j];
    for (int j = 0; j < K; j++) soft[n * K + j] /= z;
  }
  return soft;
}

static void test_xent_grad(void **state) {
  const backend *be = *state;
  enum { N = 4, K = 5 };
  const int32_t tgt[N] = {0, 3, 4, 3};
  double *soft = soft_rows(N, K, 20);
  float *logits = frand(N * K, -3, 3, 21), *probs = fzeros(N * K);
  be->softmax_forward(probs, logits, N, K);
  for (int s = 0; s < 2; s++) {
    fd_ctx c = {.op = OP_XENT, .N = N, .K = K, .ints = tgt, .soft = s ? soft : NULL,
                .x = {widen(logits, N * K)}};
    double loss = be->xent_loss(logits, tgt, c.soft, N, K), ref = fd_loss(&c);
    print_message("  fwd %-21s rel err %.2e (tol 1e-6)\n", s ? "xent soft" : "xent hard",
                  fabs(loss - ref) / ref);
    assert_true(fabs(loss - ref) < 1e-6 * ref);
    float *dl = fzeros(N * K);
    be->xent_backward(dl, probs, tgt, c.soft, 1.0f / N, N, K);
    check_grad(s ? "softmax+xent soft" : "softmax+xent hard", &c, c.x[0], dl, N * K);
  }
  /* 0·log 0 = 0: a class far below the others under a zero soft target costs nothing. */
  const float l3[3] = {1.0f, 1.0f, -200.0f};
  const double y3[3] = {0.5, 0.5, 0.0};
  assert_close(be->xent_loss(l3, NULL, y3, 1, 3), log(2.0), 1e-12);
  /* A target whose float probability underflows to 0 (a logit gap of 201) still has its finite
   * loss: log(e + e + e^-200) + 200 = 201 + log 2 nats (to 1e-87). */
  const int32_t last[1] = {2};
  assert_close(be->xent_loss(l3, last, NULL, 1, 3), 201.0 + log(2.0), 1e-12);
  /* An out-of-range target is reported as NaN, not read. */
  const int32_t bad[N] = {0, 1, K, 2};
  assert_true(isnan(be->xent_loss(logits, bad, NULL, N, K)));
}

/* --loss mse: the squared error of the predicted distribution, and its gradient through the
 * softmax, against the double mirror and central differences, for hard and soft targets. */
static void test_mse_grad(void **state) {
  const backend *be = *state;
  enum { N = 4, K = 5 };
  const int32_t tgt[N] = {0, 3, 4, 3};
  double *soft = soft_rows(N, K, 22);
  float *logits = frand(N * K, -3, 3, 23), *probs = fzeros(N * K);
  be->softmax_forward(probs, logits, N, K);
  for (int s = 0; s < 2; s++) {
    fd_ctx c = {.op = OP_MSE, .N = N, .K = K, .ints = tgt, .soft = s ? soft : NULL, .x = {widen(logits, N * K)}};
    double loss = be->mse_loss(probs, tgt, c.soft, N, K), ref = fd_loss(&c);
    print_message("  fwd %-21s rel err %.2e (tol 1e-6)\n", s ? "mse soft" : "mse hard", fabs(loss - ref) / ref);
    assert_true(fabs(loss - ref) < 1e-6 * ref);
    float *dl = fzeros(N * K);
    be->mse_backward(dl, probs, tgt, c.soft, 1.0f / N, N, K);
    check_grad(s ? "softmax+mse soft" : "softmax+mse hard", &c, c.x[0], dl, N * K);
  }
  /* By hand: a uniform pair against the one-hot of class 0 costs 0.25 + 0.25; a perfect prediction 0. */
  const float half[2] = {0.5f, 0.5f}, exact[2] = {1.0f, 0.0f};
  const int32_t zero[1] = {0}, bad[N] = {0, 1, K, 2};
  assert_close(be->mse_loss(half, zero, NULL, 1, 2), 0.5, 1e-12);
  assert_close(be->mse_loss(exact, zero, NULL, 1, 2), 0.0, 0);
  assert_true(isnan(be->mse_loss(probs, bad, NULL, N, K)));
}

/* --loss policy-gradient: the surrogate's gradient against central differences; and the estimator
 * it makes: over many sampled answers, the mean of (reward − expected reward) · ∂(−log p[a]) is
 * −∂ E[reward] = −p_j (y_j − Σ_k p_k y_k), for a hard target and a soft one. */
static void test_policy_gradient(void **state) {
  const backend *be = *state;
  enum { N = 4, K = 5, DRAWS = 200000 };
  const int32_t actions[N] = {2, 0, 4, 1};
  double w[N] = {0.7, -0.3, 0.0, 1.2};
  float *logits = frand(N * K, -2, 2, 24), *probs = fzeros(N * K);
  be->softmax_forward(probs, logits, N, K);
  fd_ctx c = {.op = OP_PG, .N = N, .K = K, .ints = actions, .soft = w, .x = {widen(logits, N * K)}};
  float *dl = fzeros(N * K);
  be->pg_backward(dl, probs, actions, w, 1.0f / N, N, K);
  check_grad("policy-gradient surrogate", &c, c.x[0], dl, N * K);
  for (int j = 0; j < K; j++) assert_true(dl[2 * K + j] == 0.0f); /* weight 0: no gradient */

  /* The estimator, on one row drawn DRAWS times (each draw its own row of the stream). */
  double *soft = soft_rows(1, K, 25);
  const int32_t tgt[1] = {3};
  int32_t *a = zalloc(sizeof(int32_t) * DRAWS);
  float *rows = fzeros((size_t)DRAWS * K);
  for (int d = 0; d < DRAWS; d++) memcpy(rows + (size_t)d * K, probs, sizeof(float) * K);
  bwt_sample_rows(a, rows, DRAWS, K, 99, 0);
  double count[K] = {0};
  for (int d = 0; d < DRAWS; d++) count[a[d]] += 1.0 / DRAWS;
  for (int j = 0; j < K; j++) assert_true(fabs(count[j] - probs[j]) < 5 * sqrt(probs[j] / DRAWS));
  /* The stream is indexed by row: rows 1000.. drawn alone are the same answers. */
  int32_t part[16];
  bwt_sample_rows(part, rows, 16, K, 99, 1000);
  assert_memory_equal(part, a + 1000, sizeof part);
  for (int s = 0; s < 2; s++) {
    const double *y = s ? soft : NULL;
    double reward, expected, grad[K] = {0}, ey = 0;
    for (int d = 0; d < DRAWS; d++) {
      bwt_pg_rewards(&reward, &expected, probs, a + d, tgt, y, 1, K);
      double wd = reward - expected;
      float g[K] = {0};
      be->pg_backward(g, probs, a + d, &wd, 1.0f, 1, K);
      for (int j = 0; j < K; j++) grad[j] += g[j] / DRAWS;
    }
    for (int k = 0; k < K; k++) ey += probs[k] * (y ? y[k] : (double)(k == tgt[0]));
    assert_close(expected, ey, 1e-12);
    double worst = 0;
    for (int j = 0; j < K; j++) {
      double exact = -probs[j] * ((y ? y[j] : (double)(j == tgt[0])) - ey);
      worst = fmax(worst, fabs(grad[j] - exact));
    }
    print_message("  policy gradient (%s): max |mean estimate − exact| %.2e over %d draws (tol 2e-3)\n",
                  s ? "soft" : "hard", worst, DRAWS);
    assert_true(worst < 2e-3);
  }
}

/* The recurrence: h against the mirror, and the gates' input gradient (what the backward gives
 * from dh = ∂L/∂h) against central differences through every step. */
static void test_lstm_grad(void **state) {
  const backend *be = *state;
  enum { T = 5, B = 2, H = 3, NA = T * B * 4 * H, NH = T * B * H };
  float *a = frand(NA, -1.5f, 1.5f, 24), *w = frand(4 * H * H, -1, 1, 25), *bh = frand(4 * H, -1, 1, 26);
  float *R = frand(NH, -1, 1, 27), *gates = fzeros(NA), *h = fzeros(NH), *c = fzeros(NH);
  fd_ctx ctx = {.op = OP_LSTM, .T = T, .B = B, .C = H, .out = dzeros(NH), .R = widen(R, NH), .nout = NH,
                .x = {widen(a, NA), widen(w, 4 * H * H), widen(bh, 4 * H)}};
  memcpy(gates, a, sizeof(float) * NA);
  be->lstm_forward(h, c, gates, w, bh, T, B, H);
  check_forward("lstm", &ctx, h, 1e-5);
  float *dgates = fzeros(NA), *dh = fzeros(NH), *dc = fzeros(B * H);
  memcpy(dh, R, sizeof(float) * NH);
  be->lstm_backward(dgates, dh, dc, gates, c, w, T, B, H);
  check_grad("lstm dgates", &ctx, ctx.x[0], dgates, NA);
}

/* ---- backward properties: accumulation, NULL gradients, determinism ------------------------ */

/* One backward on fixed random inputs (sizes scaled by `big` so the OpenMP paths run), with up to
 * three gradient outputs g[i] of size(i) floats (NULL to skip). */
typedef struct {
  const char *name;
  void (*run)(const backend *be, float *g[3], int big);
  size_t (*size)(int i, int big);
  int uses_blas; /* OpenBLAS is only promised deterministic for a fixed thread count */
  int exact_2x;  /* each gradient entry gets a single += per call */
} bwd_case;

/* Sizes of the cases: small for the accumulation test, above the OpenMP thresholds for the
 * determinism test. */
typedef struct {
  int N, C, T, B;
} dims;
static dims dims_of(int big) { return big ? (dims){700, 48, 96, 4} : (dims){9, 8, 6, 2}; }

static size_t mm_size(int i, int big) {
  dims d = dims_of(big);
  size_t IC = (size_t)d.C, OC = IC + 3; /* dinp, dweight, dbias */
  return i == 0 ? (size_t)d.N * IC : i == 1 ? OC * IC : i == 2 ? OC : 0;
}
static void mm_run(const backend *be, float *g[3], int big) {
  dims d = dims_of(big);
  int N = d.N, IC = d.C, OC = d.C + 3;
  float *inp = frand(N * IC, -1, 1, 30), *w = frand(OC * IC, -1, 1, 31);
  be->matmul_backward(g[0], g[1], g[2], frand(N * OC, -1, 1, 32), inp, w, N, IC, OC);
}
static size_t emb_size(int i, int big) {
  dims d = dims_of(big);
  return i == 0 ? 7 * (size_t)d.C : i == 1 ? (size_t)d.T * d.C : 0; /* V = 7 */
}
static void emb_run(const backend *be, float *g[3], int big) {
  dims d = dims_of(big);
  int32_t *tok = zalloc(sizeof(int32_t) * d.B * d.T);
  for (int i = 0; i < d.B * d.T; i++) tok[i] = (i * 5 + i / 3) % 7; /* with repeats */
  be->embedding_backward(g[0], g[1], frand(d.B * d.T * d.C, -1, 1, 33), tok, NULL, 0, d.B, d.T, d.C);
}
static size_t rms_size(int i, int big) { /* dinp, dweight */
  dims d = dims_of(big);
  return i == 0 ? (size_t)d.N * d.C : i == 1 ? (size_t)d.C : 0;
}
static size_t ln_size(int i, int big) { /* dinp, dweight, dbias */
  dims d = dims_of(big);
  return i == 0 ? (size_t)d.N * d.C : i <= 2 ? (size_t)d.C : 0;
}
static void rms_run(const backend *be, float *g[3], int big) {
  dims d = dims_of(big);
  int N = d.N, C = d.C;
  float *x = frand(N * C, -2, 2, 34), *w = frand(C, 0.5f, 1.5f, 35);
  float *dout = frand(N * C, -1, 1, 36);
  float *out = fzeros(N * C), *rstd = fzeros(N);
  be->rmsnorm_forward(out, rstd, x, w, N, C);
  be->rmsnorm_backward(g[0], g[1], dout, x, w, rstd, N, C);
}
static void ln_run(const backend *be, float *g[3], int big) {
  dims d = dims_of(big);
  int N = d.N, C = d.C;
  float *x = frand(N * C, -2, 2, 37), *w = frand(C, 0.5f, 1.5f, 38), *b = frand(C, -1, 1, 39);
  float *dout = frand(N * C, -1, 1, 40), *out = fzeros(N * C), *mean = fzeros(N), *rstd = fzeros(N);
  be->layernorm_forward(out, mean, rstd, x, w, b, N, C);
  be->layernorm_backward(g[0], g[1], g[2], dout, x, w, mean, rstd, N, C);
}
static size_t rows_size(int i, int big) { /* one (N,C) gradient */
  dims d = dims_of(big);
  return i == 0 ? (size_t)d.N * d.C : 0;
}
static void gelu_run(const backend *be, float *g[3], int big) {
  dims d = dims_of(big);
  size_t n = (size_t)d.N * d.C;
  be->gelu_backward(g[0], frand(n, -1, 1, 41), frand(n, -4, 4, 42), n);
}
static size_t att_size(int i, int big) {
  dims d = dims_of(big);
  return i < 3 ? (size_t)d.B * d.T * d.C : 0;
}
static void att_run(const backend *be, float *g[3], int big) {
  dims d = dims_of(big);
  enum { NH = 4 };
  const float mask[NH] = {1.0f, 0.5f, 0.0f, 2.0f};
  int B = d.B, T = d.T, C = d.C;
  size_t n = (size_t)B * T * C;
  float *q = frand(n, -2, 2, 43), *k = frand(n, -2, 2, 44), *v = frand(n, -1, 1, 45);
  float *dout = frand(n, -1, 1, 46), *out = fzeros(n), *att = fzeros((size_t)B * NH * T * T);
  be->attention_forward(out, att, q, k, v, mask, B, T, C, NH, T, NULL);
  be->attention_backward(g[0], g[1], g[2], dout, att, q, k, v, mask, B, T, C, NH, T, NULL, NULL);
}
static void xent_run(const backend *be, float *g[3], int big) {
  dims d = dims_of(big);
  int N = d.N, K = d.C;
  float *probs = fzeros((size_t)N * K);
  int32_t *tgt = zalloc(sizeof(int32_t) * N);
  for (int i = 0; i < N; i++) tgt[i] = (i * 3) % K;
  be->softmax_forward(probs, frand((size_t)N * K, -3, 3, 47), N, K);
  be->xent_backward(g[0], probs, tgt, NULL, 1.0f / N, N, K);
}
static const bwd_case bwd_cases[] = {
    {"matmul", mm_run, mm_size, 1, 0},       {"embedding", emb_run, emb_size, 0, 0},
    {"rmsnorm", rms_run, rms_size, 0, 1},    {"layernorm", ln_run, ln_size, 0, 1},
    {"gelu", gelu_run, rows_size, 0, 1},     {"attention", att_run, att_size, 0, 0},
    {"softmax+xent", xent_run, rows_size, 0, 1},
};
enum { N_CASES = sizeof bwd_cases / sizeof bwd_cases[0] };

/* Runs case `bc` `times` times into freshly zeroed gradients; only those flagged in `want`. */
static void run_case(const backend *be, const bwd_case *bc, float *g[3], int want, int times, int big) {
  float *gp[3];
  for (int i = 0; i < 3; i++) {
    g[i] = bc->size(i, big) ? fzeros(bc->size(i, big)) : NULL;
    gp[i] = (want >> i) & 1 ? g[i] : NULL;
  }
  for (int r = 0; r < times; r++) bc->run(be, gp, big);
}

/* Twice into the same buffers gives twice once (+=, not =): exactly where a kernel adds each
 * gradient entry once per call, within 1e-6 relative (floor 1e-3; entries are O(0.1..1)) where it
 * adds contributions one by one into the gradient (BLAS, repeated tokens, attention's dq/dk/dv).
 * A NULL gradient changes nothing about the others: each one alone equals, bit for bit, the same
 * one computed with all of them. */
static void test_backward_accumulates(void **state) {
  const backend *be = *state;
  for (int ci = 0; ci < N_CASES; ci++) {
    const bwd_case *bc = &bwd_cases[ci];
    float *once[3], *twice[3], *alone[3];
    run_case(be, bc, once, 7, 1, 0);
    run_case(be, bc, twice, 7, 2, 0);
    for (int i = 0; i < 3; i++) {
      size_t n = bc->size(i, 0);
      if (!n) continue;
      double worst = 0, sumsq = 0;
      for (size_t j = 0; j < n; j++) {
        double want2 = 2.0 * once[i][j];
        worst = fmax(worst, fabs(twice[i][j] - want2) / fmax(fabs(want2), 1e-3));
        sumsq += (double)once[i][j] * once[i][j];
      }
      if (!(sumsq > 0 && worst <= (bc->exact_2x ? 0.0 : 1e-6))) /* a real gradient, accumulated */
        fail_msg("%s gradient %d: sumsq %g, twice vs 2x once %g", bc->name, i, sumsq, worst);
      run_case(be, bc, alone, 1 << i, 1, 0);
      assert_memory_equal(alone[i], once[i], n * sizeof(float));
    }
    release_scratch(NULL);
  }
}

/* Same inputs, same thread count: bit-identical gradients. The non-BLAS kernels never let the
 * thread count change a sum's order, so 1 and 2 threads must agree bit for bit as well. Sizes are
 * large enough that the OpenMP paths are taken. */
static void test_backward_deterministic(void **state) {
  const backend *be = *state;
  int saved = omp_get_max_threads();
  for (int ci = 0; ci < N_CASES; ci++) {
    const bwd_case *bc = &bwd_cases[ci];
    float *a[3], *b[3], *one[3];
    omp_set_num_threads(2);
    run_case(be, bc, a, 7, 1, 1);
    run_case(be, bc, b, 7, 1, 1);
    omp_set_num_threads(1);
    run_case(be, bc, one, 7, 1, 1);
    for (int i = 0; i < 3; i++) {
      size_t n = bc->size(i, 1);
      if (!n) continue;
      assert_memory_equal(a[i], b[i], n * sizeof(float));
      if (!bc->uses_blas) assert_memory_equal(a[i], one[i], n * sizeof(float));
    }
    release_scratch(NULL);
  }
  omp_set_num_threads(saved);
}

/* ---- fast versus naive -------------------------------------------------------------------- */

/* Outputs here are O(1) sums of ~20 products; the relative error is floored at 0.1 so that
 * near-zero outputs (pure cancellation, absolute float error ~1e-7) do not dominate. */
static void test_matmul_fast_vs_naive(void **state) {
  const backend *be = *state;
  enum { N = 37, IC = 19, OC = 23 };
  float *inp = frand(N * IC, -1, 1, 50), *w = frand(OC * IC, -1, 1, 51), *b = frand(OC, -1, 1, 52);
  float *fast = fzeros(N * OC), *naive = fzeros(N * OC);
  for (int with_bias = 0; with_bias < 2; with_bias++) {
    be->matmul_forward(fast, inp, w, with_bias ? b : NULL, N, IC, OC);
    bwt_matmul_forward_naive(naive, inp, w, with_bias ? b : NULL, N, IC, OC);
    double e = test_max_rel_err(fast, naive, N * OC, 1e-1);
    print_message("  matmul fast vs naive (bias %d): max rel err %.2e (tol 1e-5, floor 0.1)\n",
                  with_bias, e);
    assert_true(e < 1e-5);
  }
}

static void test_attention_fast_vs_naive(void **state) {
  const backend *be = *state;
  enum { B = 3, T = 37, C = 24, NH = 4, BTC = B * T * C, A = B * NH * T * T };
  const float mask[NH] = {1.0f, 0.5f, 0.0f, 1.5f};
  float *q = frand(BTC, -2, 2, 53), *k = frand(BTC, -2, 2, 54), *v = frand(BTC, -1, 1, 55);
  float *out_f = fzeros(BTC), *out_n = fzeros(BTC), *att_f = fzeros(A), *att_n = fzeros(A);
  for (int with_mask = 0; with_mask < 2; with_mask++) {
    const float *m = with_mask ? mask : NULL;
    memset(att_f, 0x7f, sizeof(float) * A); /* garbage: the zeros above the diagonal are written */
    be->attention_forward(out_f, att_f, q, k, v, m, B, T, C, NH, T, NULL);
    bwt_attention_forward_naive(out_n, att_n, q, k, v, m, B, T, C, NH);
    /* floors: out is O(1) like matmul's; α is O(1/T) */
    double eo = test_max_rel_err(out_f, out_n, BTC, 1e-1);
    double ea = test_max_rel_err(att_f, att_n, A, 1e-3);
    print_message("  attention fast vs naive (mask %d): out %.2e, att %.2e (tol 1e-5)\n", with_mask,
                  eo, ea);
    assert_true(eo < 1e-5);
    assert_true(ea < 1e-5);
  }
  for (int b = 0; b < B * NH; b++) /* causal: nothing above the diagonal */
    for (int t = 0; t < T; t++)
      for (int s = t + 1; s < T; s++) assert_true(att_f[((size_t)b * T + t) * T + s] == 0.0f);
}

/* Queries at a subset of positions (the last block's supervised rows) must give exactly the rows
 * of the all-positions kernel, which the gradient checks above validate: the same out and α rows,
 * and, with the upstream gradient zero at the other positions, the same dq rows, dk and dv. */
static void test_attention_query_rows(void **state) {
  const backend *be = *state;
  enum { B = 2, T = 19, C = 40, NH = 2, NQ = 5, BTC = B * T * C, BQC = B * NQ * C };
  const int32_t qpos[B * NQ] = {0, 3, 4, 10, 18, 1, 2, 15, 16, 17};
  const float mask[NH] = {1.0f, 0.5f};
  float *q = frand(BTC, -1, 1, 56), *k = frand(BTC, -1, 1, 57), *v = frand(BTC, -1, 1, 58);
  float *g = frand(BQC, -1, 1, 59), *gfull = fzeros(BTC), *qsub = fzeros(BQC);
  for (int b = 0; b < B; b++)
    for (int j = 0; j < NQ; j++) {
      size_t full = ((size_t)b * T + qpos[b * NQ + j]) * C, sub = ((size_t)b * NQ + j) * C;
      memcpy(qsub + sub, q + full, sizeof(float) * C);
      memcpy(gfull + full, g + sub, sizeof(float) * C);
    }
  float *out = fzeros(BTC), *att = fzeros(B * NH * T * T), *outs = fzeros(BQC), *atts = fzeros(B * NH * NQ * T);
  assert_int_equal(be->attention_forward(out, att, q, k, v, mask, B, T, C, NH, T, NULL), BWT_STATUS_OK);
  assert_int_equal(be->attention_forward(outs, atts, qsub, k, v, mask, B, T, C, NH, NQ, qpos), BWT_STATUS_OK);
  float *dq = fzeros(BTC), *dk = fzeros(BTC), *dv = fzeros(BTC);
  float *dqs = fzeros(BQC), *dks = fzeros(BTC), *dvs = fzeros(BTC);
  be->attention_backward(dq, dk, dv, gfull, att, q, k, v, mask, B, T, C, NH, T, NULL, NULL);
  be->attention_backward(dqs, dks, dvs, g, atts, qsub, k, v, mask, B, T, C, NH, NQ, qpos, NULL);
  double worst = 0;
  for (int b = 0; b < B; b++)
    for (int j = 0; j < NQ; j++) {
      int t = qpos[b * NQ + j];
      size_t full = ((size_t)b * T + t) * C, sub = ((size_t)b * NQ + j) * C;
      worst = fmax(worst, test_max_rel_err(outs + sub, out + full, C, 1e-1));
      worst = fmax(worst, test_max_rel_err(dqs + sub, dq + full, C, 1e-1));
      for (int h = 0; h < NH; h++)
        worst = fmax(worst, test_max_rel_err(atts + (((size_t)b * NH + h) * NQ + j) * T,
                                             att + (((size_t)b * NH + h) * T + t) * T, T, 1e-3));
    }
  worst = fmax(worst, test_max_rel_err(dks, dk, BTC, 1e-1));
  worst = fmax(worst, test_max_rel_err(dvs, dv, BTC, 1e-1));
  print_message("  attention query rows vs all rows: max rel err %.2e (tol 1e-6)\n", worst);
  assert_true(worst < 1e-6);
}

/* ---- softmax, element-wise, AdamW ---------------------------------------------------------- */

static void test_softmax(void **state) {
  const backend *be = *state;
  enum { N = 6, K = 9 };
  float *logits = frand(N * K, -5, 5, 60), *probs = fzeros(N * K);
  /* Rows 4 and 5: huge logits that overflow a naive exp. */
  const float big[2][K] = {{1000, 999, -1000, 1000, 0, 998.5f, -999, 1000, 999},
                           {-1000, -1000, -999, -1001, -1000, -998, -1000, -1000, -1000}};
  memcpy(logits + 4 * K, big, sizeof big);
  be->softmax_forward(probs, logits, N, K);
  for (int n = 0; n < N; n++) {
    double sum = 0, mx = -INFINITY, z = 0;
    for (int j = 0; j < K; j++) mx = fmax(mx, logits[n * K + j]);
    for (int j = 0; j < K; j++) z += exp((double)logits[n * K + j] - mx);
    for (int j = 0; j < K; j++) {
      float p = probs[n * K + j];
      assert_true(isfinite(p) && p >= 0);
      assert_close(p, exp((double)logits[n * K + j] - mx) / z, 1e-6);
      sum += p;
    }
    assert_true(fabs(sum - 1.0) < 1e-6);
  }
}

static void test_add_sumsq(void **state) {
  const backend *be = *state;
  enum { N = 1001 };
  float *y = frand(N, -1, 1, 61), *x = frand(N, -1, 1, 62), *y0 = fzeros(N);
  memcpy(y0, y, sizeof(float) * N);
  be->add_inplace(y, x, N);
  for (int i = 0; i < N; i++) assert_true(y[i] == y0[i] + x[i]);
  double ref = 0;
  for (int i = 0; i < N; i++) ref += (double)x[i] * x[i];
  assert_close(be->sumsq(x, N), ref, 1e-12 * ref);
  assert_true(be->sumsq(x, 0) == 0.0);
  assert_true(be->sumsq(x, 3) == (double)x[0] * x[0] + (double)x[1] * x[1] + (double)x[2] * x[2]);
  /* bwt_zero: exactly its n entries, on the parallel path too, and nothing past them. */
  enum { BIG = 100003 };
  float *z = frand(BIG + 1, 1, 2, 63);
  be->zero(z, BIG);
  for (int i = 0; i < BIG; i++) assert_true(z[i] == 0.0f);
  assert_true(z[BIG] >= 1.0f);
}

/* PyTorch's AdamW step in double: decay first, then the bias-corrected Adam update. */
static void ref_adamw(double *p, double g, double *m, double *v, double lr, double b1, double b2,
                      double eps, double wd, int t) {
  *p *= 1 - lr * wd;
  *m = b1 * *m + (1 - b1) * g;
  *v = b2 * *v + (1 - b2) * g * g;
  double mhat = *m / (1 - pow(b1, t)), vhat = *v / (1 - pow(b2, t));
  *p -= lr * mhat / (sqrt(vhat) + eps);
}

static void test_adamw(void **state) {
  const backend *be = *state;
  /* By hand, lr 0.1, β 0.9/0.999, eps 1e-8, wd 0.01:
   * element 0 at t = 1 from zero moments, p 1, g 0.5:
   *   m = 0.05, v = 0.00025, m̂ = 0.5, v̂ = 0.25, p = 1·0.999 − 0.1·0.5/(0.5 + 1e-8)
   * element 1 at t = 1, p −2, g −1:
   *   m = −0.1, v = 0.001, m̂ = −1, v̂ = 1, p = −2·0.999 + 0.1/(1 + 1e-8) */
  float p[2] = {1.0f, -2.0f}, g[2] = {0.5f, -1.0f}, m[2] = {0}, v[2] = {0};
  be->adamw_update(p, g, m, v, 2, 0.1f, 0.9f, 0.999f, 1e-8f, 0.01f, 1);
  assert_close(m[0], 0.05, 1e-7);
  assert_close(v[0], 0.00025, 5e-8); /* 1 − 0.999f ≠ 0.001 exactly */
  assert_close(p[0], 0.999 - 0.1 * 0.5 / (0.5 + 1e-8), 1e-7);
  assert_close(m[1], -0.1, 1e-7);
  assert_close(v[1], 0.001, 5e-8);
  assert_close(p[1], -1.998 + 0.1 / (1 + 1e-8), 1e-7);
  /* element 0 again at t = 2 with g = 0.5: m = 0.095, v = 0.00049975,
   *   m̂ = 0.095/0.19 = 0.5, v̂ = 0.00049975/0.001999 = 0.25 → same step as t = 1 */
  double p0 = p[0];
  be->adamw_update(p, g, m, v, 1, 0.1f, 0.9f, 0.999f, 1e-8f, 0.01f, 2);
  assert_close(p[0], p0 * 0.999 - 0.1 * 0.5 / (0.5 + 1e-8), 2e-7);

  /* Three steps on random parameters against the double reimplementation. */
  enum { N = 50 };
  float *pf = frand(N, -1, 1, 70), *mf = fzeros(N), *vf = fzeros(N);
  double *pd = widen(pf, N), *md = dzeros(N), *vd = dzeros(N);
  for (int t = 1; t <= 3; t++) {
    float *gf = frand(N, -1, 1, 70 + (uint64_t)t);
    be->adamw_update(pf, gf, mf, vf, N, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, t);
    for (int i = 0; i < N; i++)
      ref_adamw(&pd[i], gf[i], &md[i], &vd[i], (float)1e-2, (float)0.9, (float)0.95, (float)1e-8,
                (float)0.1, t);
  }
  double e = 0;
  for (int i = 0; i < N; i++) e = fmax(e, fabs(pf[i] - pd[i]));
  print_message("  adamw 3 steps vs double: max abs err %.2e (tol 1e-6)\n", e);
  assert_true(e < 1e-6);
}

/* ---- memory: buffers, fill, copy, gathers, scatter-add, transpose, scale ---------------------- */

/* Buffers: zeroed, 64-byte aligned, and one counted allocation that the fault injection can fail
 * (with the message naming what was asked for). */
static void test_buffer_alloc(void **state) {
  (void)state;
  float *x = bwt_buffer_alloc(1001, "test buffer");
  assert_non_null(x);
  assert_true((uintptr_t)x % 64 == 0);
  for (int i = 0; i < 1001; i++) assert_true(x[i] == 0.0f);
  bwt_buffer_free(x);
  bwt_buffer_free(NULL);
  bwt_fault_arm(BWT_FAULT_ALLOC, 0);
  bwt_buffer_free(bwt_buffer_alloc(0, "empty"));
  assert_int_equal(bwt_fault_count(BWT_FAULT_ALLOC), 1);
  bwt_fault_arm(BWT_FAULT_ALLOC, 1);
  assert_null(bwt_buffer_alloc(16, "test buffer"));
  assert_true(bwt_fault_fired());
  assert_non_null(strstr(bwt_last_error(), "64 bytes for test buffer"));
  bwt_fault_arm(BWT_FAULT_ALLOC, 0);
  assert_null(bwt_buffer_alloc(SIZE_MAX / 2, "too much")); /* the size overflows: refused, not wrapped */
}

/* Fill, zero, copy, scale: exactly their n entries, on the parallel path too, and nothing past. */
static void test_fill_copy_scale(void **state) {
  const backend *be = *state;
  enum { BIG = 100003 };
  float *x = frand(BIG + 1, -1, 1, 80), *y = fzeros(BIG + 1), *x0 = fzeros(BIG + 1);
  memcpy(x0, x, sizeof(float) * (BIG + 1));
  be->copy(y, x, BIG);
  assert_memory_equal(y, x, sizeof(float) * BIG);
  assert_true(y[BIG] == 0.0f);
  be->scale(x, 0.5f, BIG);
  for (int i = 0; i < BIG; i++) assert_true(x[i] == 0.5f * x0[i]);
  assert_true(x[BIG] == x0[BIG]);
  be->fill(x, 2.5f, BIG);
  for (int i = 0; i < BIG; i++) assert_true(x[i] == 2.5f);
  assert_true(x[BIG] == x0[BIG]);
  be->fill(x, NAN, 3);
  assert_true(isnan(x[0]) && isnan(x[2]) && x[3] == 2.5f);
  be->zero(x, BIG);
  for (int i = 0; i < BIG; i++) assert_true(x[i] == 0.0f);
  assert_true(x[BIG] == x0[BIG]);
  /* Per-head scale: C 6, 3 heads of 2 channels, masks 1, 0.5, 0; a copy without a mask. */
  const float inp[2 * 6] = {1, 2, 3, 4, 5, 6, -1, -2, -3, -4, -5, -6}, mask[3] = {1.0f, 0.5f, 0.0f};
  const float want[2 * 6] = {1, 2, 1.5f, 2, 0, 0, -1, -2, -1.5f, -2, -0.0f, -0.0f}; /* 0 · (−5) = −0 */
  float out[2 * 6];
  be->scale_heads(out, inp, mask, 2, 6, 3);
  assert_memory_equal(out, want, sizeof want);
  be->scale_heads(out, inp, NULL, 2, 6, 3);
  assert_memory_equal(out, inp, sizeof inp);
}

/* Gathers by hand on a (5,3) source whose entry (r,c) is 10r + c, a skipped row (−1) and a repeat. */
static void test_gather(void **state) {
  const backend *be = *state;
  enum { R = 5, C = 3, N = 5 };
  float src[R * C];
  for (int i = 0; i < R * C; i++) src[i] = (float)(10 * (i / C) + i % C);
  const int32_t idx[N] = {4, -1, 0, 4, 2};
  const float want[N * C] = {40, 41, 42, 0, 0, 0, 0, 1, 2, 40, 41, 42, 20, 21, 22};
  float out[N * C];
  memset(out, 0x7f, sizeof out); /* garbage: every entry is written */
  be->gather_rows(out, src, idx, N, C);
  assert_memory_equal(out, want, sizeof want);
  be->gather_rows_add(out, src, idx, N, C); /* twice the rows, the skipped one still 0 */
  for (int i = 0; i < N * C; i++) assert_true(out[i] == 2 * want[i]);
  /* Large enough for the parallel path: every row equals its source row. */
  enum { BN = 3001, BC = 40, BR = 257 };
  float *big = frand((size_t)BR * BC, -1, 1, 81), *bo = fzeros((size_t)BN * BC);
  int32_t *bi = zalloc(sizeof(int32_t) * BN);
  for (int i = 0; i < BN; i++) bi[i] = (i * 37) % BR;
  be->gather_rows(bo, big, bi, BN, BC);
  for (int i = 0; i < BN; i++) assert_memory_equal(bo + (size_t)i * BC, big + (size_t)bi[i] * BC, sizeof(float) * BC);
}

/* The scatter-add against the naive loop, bit for bit (the same order of additions per entry),
 * for 1 and 2 threads, with repeated and skipped indices; a small case by hand. */
static void test_scatter_add(void **state) {
  const backend *be = *state;
  const int32_t idx[4] = {2, 0, 2, -1};
  const float src[4 * 2] = {1, 2, 10, 20, 100, 200, 1000, 2000};
  float dst[3 * 2] = {0.5f, 0.5f, 7, 7, 0.25f, 0.25f};
  const float want[3 * 2] = {10.5f, 20.5f, 7, 7, 101.25f, 202.25f};
  be->scatter_add_rows(dst, src, idx, 4, 2);
  assert_memory_equal(dst, want, sizeof want);
  int saved = omp_get_max_threads();
  enum { N = 3001, C = 40, R = 97 };
  float *s = frand((size_t)N * C, -1, 1, 82), *d0 = frand((size_t)R * C, -1, 1, 83);
  int32_t *ix = zalloc(sizeof(int32_t) * N);
  for (int i = 0; i < N; i++) ix[i] = i % 11 == 5 ? -1 : (i * 13 + i / 7) % R; /* every row many times */
  float *naive = fzeros((size_t)R * C);
  memcpy(naive, d0, sizeof(float) * R * C);
  bwt_scatter_add_rows_naive(naive, s, ix, N, C);
  for (int threads = 1; threads <= 2; threads++) {
    omp_set_num_threads(threads);
    float *fast = fzeros((size_t)R * C);
    memcpy(fast, d0, sizeof(float) * R * C);
    be->scatter_add_rows(fast, s, ix, N, C);
    assert_memory_equal(fast, naive, sizeof(float) * R * C);
  }
  omp_set_num_threads(saved);
  /* The naive loop's sums are the double sums to float rounding: a check that it adds at all. */
  double *ref = widen(d0, (size_t)R * C);
  for (int i = 0; i < N; i++)
    for (int c = 0; ix[i] >= 0 && c < C; c++) ref[(size_t)ix[i] * C + c] += s[(size_t)i * C + c];
  assert_true(rel_err_d(naive, ref, (size_t)R * C, 1.0) < 1e-5);
}

/* (A,B,C) → (B,A,C) against the naive loop, by hand, and there and back again. */
static void test_transpose(void **state) {
  const backend *be = *state;
  const float inp[2 * 3 * 2] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}; /* (A 2, B 3, C 2) */
  const float want[3 * 2 * 2] = {0, 1, 6, 7, 2, 3, 8, 9, 4, 5, 10, 11};
  float out[12];
  be->transpose(out, inp, 2, 3, 2);
  assert_memory_equal(out, want, sizeof want);
  enum { A = 64, B = 96, C = 48, n = A * B * C }; /* above the parallel threshold */
  float *x = frand(n, -1, 1, 84), *fast = fzeros(n), *naive = fzeros(n), *back = fzeros(n);
  be->transpose(fast, x, A, B, C);
  bwt_transpose_naive(naive, x, A, B, C);
  assert_memory_equal(fast, naive, sizeof(float) * n);
  assert_true(fast[((size_t)5 * A + 7) * C + 3] == x[((size_t)7 * B + 5) * C + 3]);
  be->transpose(back, fast, B, A, C);
  assert_memory_equal(back, x, sizeof(float) * n);
}

/* The scores against a double mirror, −∞ past each query's position, and consistent with the
 * forward's weights: softmax of a score row is that row of α. */
static void test_attention_scores(void **state) {
  const backend *be = *state;
  enum { B = 2, T = 7, C = 12, NH = 3, NQ = 3, hs = C / NH };
  const int32_t qpos[B * NQ] = {0, 3, 6, 2, 4, 5};
  float *q = frand(B * NQ * C, -1, 1, 85), *k = frand(B * T * C, -1, 1, 86), *v = frand(B * T * C, -1, 1, 87);
  float *sc = fzeros(B * NH * NQ * T), *att = fzeros(B * NH * NQ * T), *out = fzeros(B * NQ * C);
  be->attention_scores(sc, q, k, qpos, B, T, C, NH, NQ);
  assert_int_equal(be->attention_forward(out, att, q, k, v, NULL, B, T, C, NH, NQ, qpos), BWT_STATUS_OK);
  double worst = 0, worst_att = 0;
  for (int b = 0; b < B; b++)
    for (int h = 0; h < NH; h++)
      for (int j = 0; j < NQ; j++) {
        int pos = qpos[b * NQ + j];
        const float *row = sc + (((size_t)b * NH + h) * NQ + j) * T, *arow = att + (((size_t)b * NH + h) * NQ + j) * T;
        double z = 0;
        for (int s = 0; s <= pos; s++) z += exp((double)row[s] - row[0]);
        for (int s = 0; s < T; s++) {
          if (s > pos) {
            assert_true(isinf(row[s]) && row[s] < 0);
            continue;
          }
          double dot = 0;
          for (int i = 0; i < hs; i++) dot += (double)q[(b * NQ + j) * C + h * hs + i] * k[(b * T + s) * C + h * hs + i];
          worst = fmax(worst, fabs(row[s] - dot / sqrt((double)hs)) / fmax(fabs(dot), 1e-1));
          worst_att = fmax(worst_att, fabs(arow[s] - exp((double)row[s] - row[0]) / z));
        }
      }
  print_message("  attention scores vs double: max rel err %.2e, softmax vs α %.2e (tol 1e-6)\n", worst, worst_att);
  assert_true(worst < 1e-6);
  assert_true(worst_att < 1e-6);
}

int main(void) {
  const struct CMUnitTest per_backend[] = {
      cmocka_unit_test(test_matmul_grad),
      cmocka_unit_test(test_fd_checker_detects_errors),
      cmocka_unit_test(test_embedding_grad),
      cmocka_unit_test(test_embedding_offsets),
      cmocka_unit_test(test_rmsnorm_grad),
      cmocka_unit_test(test_layernorm_grad),
      cmocka_unit_test(test_gelu_grad),
      cmocka_unit_test(test_attention_grad),
      cmocka_unit_test(test_xent_grad),
      cmocka_unit_test(test_mse_grad),
      cmocka_unit_test(test_policy_gradient),
      cmocka_unit_test(test_lstm_grad),
      cmocka_unit_test(test_backward_accumulates),
      cmocka_unit_test(test_backward_deterministic),
      cmocka_unit_test(test_matmul_fast_vs_naive),
      cmocka_unit_test(test_attention_fast_vs_naive),
      cmocka_unit_test(test_attention_query_rows),
      cmocka_unit_test(test_attention_scores),
      cmocka_unit_test(test_softmax),
      cmocka_unit_test(test_add_sumsq),
      cmocka_unit_test(test_adamw),
      cmocka_unit_test(test_fill_copy_scale),
      cmocka_unit_test(test_gather),
      cmocka_unit_test(test_scatter_add),
      cmocka_unit_test(test_transpose),
  };
  enum { PER = sizeof per_backend / sizeof per_backend[0] };
  /* "backend: test", each with its backend row as the test's state. */
  static char names[N_BACKENDS][PER][96];
  struct CMUnitTest tests[N_BACKENDS * PER + 1];
  int n = 0;
  for (int b = 0; b < N_BACKENDS; b++)
    for (int i = 0; i < PER; i++) {
      snprintf(names[b][i], sizeof names[b][i], "%s: %s", backends[b].name, per_backend[i].name);
      tests[n++] = (struct CMUnitTest){names[b][i], per_backend[i].test_func, NULL, release_scratch, (void *)&backends[b]};
    }
  tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_buffer_alloc);
  return _cmocka_run_group_tests("test_kernels", tests, (size_t)n, NULL, NULL);
}
