/* bwt's side of the benchmark (bench/run.py drives it and the PyTorch side): times a training step
 * and a forward-only evaluation of one model config on the bijection task, measures the sgemm
 * ceiling on the model's own matrix shapes, and prints one JSON object.
 *
 *   bench_step --config small|mid|paper [--arch transformer|mlp|window_mlp|lstm|mamba] [--threads N]
 *              [--warmup N] [--repeats N] [--dump DIR]
 *
 * --dump writes DIR/weights.safetensors (the initial weights, bwt's checkpoint format) and
 * DIR/batch.safetensors (the batch of step 1), so that the reference trains the identical model on
 * the identical batch. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

#include "bwt/checkpoint.h"
#include "bwt/kernels.h"
#include "bwt/rng.h"
#include "bwt/safetensors.h"
#include "bwt/train.h"

typedef struct {
  const char *name;
  int d_model, n_layers, n_heads, batch;
} bench_config;

static const bench_config configs[] = {
    {"small", 64, 2, 4, 64},
    {"mid", 128, 4, 4, 64},
    {"paper", 192, 6, 6, 128},
};

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *x, int n) {
  qsort(x, n, sizeof *x, cmp_double);
  return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

/* Resident set size now, in bytes (/proc/self/statm). */
static double rss_now(void) {
  long pages = 0, resident = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (!f) return NAN;
  if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
  fclose(f);
  return (double)resident * 4096.0;
}

/* Peak resident set size of this process image, in bytes (VmHWM; unlike getrusage's ru_maxrss it
 * does not inherit the parent's peak across fork and exec). */
static double rss_peak(void) {
  char line[256];
  double kb = NAN;
  FILE *f = fopen("/proc/self/status", "r");
  if (!f) return NAN;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "VmHWM: %lf kB", &kb) == 1) break;
  fclose(f);
  return kb * 1024.0;
}

/* The matrix products of one training step, as (M, N, K) of C(M,N) = A(M,K)·B(K,N); a forward
 * product of a linear layer with n rows, in → out features, gives three: the forward, dinp and
 * dweight. Attention's per-head products are not sgemm calls in bwt and are counted apart. */
typedef struct {
  int m, n, k, count;
  int trans_a, trans_b; /* as bwt calls it */
} gemm_shape;

static int linear_shapes(gemm_shape *s, int rows, int in, int out, int count) {
  s[0] = (gemm_shape){rows, out, in, count, 0, 1}; /* out = x·Wᵀ */
  s[1] = (gemm_shape){rows, in, out, count, 0, 0}; /* dx = dout·W */
  s[2] = (gemm_shape){out, in, rows, count, 1, 0}; /* dW = doutᵀ·x */
  return 3;
}

/* Mamba's products, which bwt computes densely too: per block in_proj (C → 2Di, as two halves),
 * x_proj (Di → R, Ns, Ns), dt_proj (R → Di), out_proj (Di → C); then the head. */
static int mamba_shapes(gemm_shape *s, const bwt_model_config *m, int B, int T, int n_sup) {
  int N = B * T, C = m->d_model, L = m->n_layers, n = 0;
  int Di = (m->ssm_expand ? m->ssm_expand : 2) * C, Ns = m->ssm_state ? m->ssm_state : 16, R = (C + 15) / 16;
  n += linear_shapes(s + n, N, C, Di, 2 * L);
  n += linear_shapes(s + n, N, Di, R, L);
  n += linear_shapes(s + n, N, Di, Ns, 2 * L);
  n += linear_shapes(s + n, N, R, Di, L);
  n += linear_shapes(s + n, N, Di, C, L);
  n += linear_shapes(s + n, B * n_sup, C, m->n_classes, 1);
  return n;
}

/* The step's products as the model defines them (dense: every position of every block). */
static int model_shapes(gemm_shape *s, const bwt_model_config *m, int B, int T, int n_sup) {
  int N = B * T, C = m->d_model, n = 0;
  int blocks = m->n_layers;
  if (m->arch == BWT_ARCH_MAMBA) return mamba_shapes(s, m, B, T, n_sup);
  if (m->arch == BWT_ARCH_TRANSFORMER) n += linear_shapes(s + n, N, C, C, 4 * blocks);
  if (m->arch == BWT_ARCH_WINDOW_MLP) n += linear_shapes(s + n, N, m->window * C, C, 1);
  n += linear_shapes(s + n, N, C, 4 * C, blocks);
  n += linear_shapes(s + n, N, 4 * C, C, blocks);
  n += linear_shapes(s + n, B * n_sup, C, m->n_classes, 1);
  return n;
}

/* The products bwt computes: the transformer's last block at the supervised rows (M) except its
 * keys and values, the flat baselines at the supervised rows throughout. */
static int bwt_shapes(gemm_shape *s, const bwt_model_config *m, int B, int T, int n_sup) {
  int N = B * T, M = B * n_sup, C = m->d_model, n = 0, L = m->n_layers;
  if (m->arch == BWT_ARCH_MAMBA) return mamba_shapes(s, m, B, T, n_sup);
  if (m->arch == BWT_ARCH_TRANSFORMER) {
    n += linear_shapes(s + n, N, C, C, 4 * (L - 1));
    n += linear_shapes(s + n, N, C, 4 * C, L - 1);
    n += linear_shapes(s + n, N, 4 * C, C, L - 1);
    n += linear_shapes(s + n, N, C, C, 2); /* the last block's keys and values */
    n += linear_shapes(s + n, M, C, C, 2); /* its queries and output projection */
  }
  if (m->arch == BWT_ARCH_WINDOW_MLP) n += linear_shapes(s + n, M, m->window * C, C, 1);
  int mlp_blocks = m->arch == BWT_ARCH_TRANSFORMER ? 1 : L;
  n += linear_shapes(s + n, M, C, 4 * C, mlp_blocks);
  n += linear_shapes(s + n, M, 4 * C, C, mlp_blocks);
  n += linear_shapes(s + n, M, C, m->n_classes, 1);
  return n;
}

static double shapes_flops(const gemm_shape *s, int n, int forward_only) {
  double f = 0;
  for (int i = 0; i < n; i += forward_only ? 3 : 1) f += 2.0 * s[i].m * s[i].n * s[i].k * s[i].count;
  return f;
}

/* Causal attention as computed (only s ≤ t): q·k and α·v forward, four such products backward. */
static double attention_flops(const bwt_model_config *m, int B, int T, int forward_only) {
  if (m->arch != BWT_ARCH_TRANSFORMER) return 0;
  double fwd = 2.0 * 2.0 * B * m->d_model * (T * (T + 1) / 2.0) * m->n_layers;
  return forward_only ? fwd : 3 * fwd;
}

/* The selective scan alone, forward and backward, on one block's shapes of the step, times the
 * number of blocks: the median seconds per step spent in the scan kernels. Inputs are O(1)
 * values of the right signs (Δ > 0, A < 0); the time does not depend on them. */
static double scan_seconds(const bwt_model_config *m, int B, int T, int repeats) {
  if (m->arch != BWT_ARCH_MAMBA) return 0;
  int Di = (m->ssm_expand ? m->ssm_expand : 2) * m->d_model, Ns = m->ssm_state ? m->ssm_state : 16;
  size_t N = (size_t)B * T, NDi = N * Di, NNs = N * Ns, H = NDi * Ns, DN = (size_t)Di * Ns;
  size_t total = 6 * NDi + 4 * NNs + 2 * H + 2 * DN + 2 * (size_t)Di;
  float *buf = bwt_buffer_alloc(total, "scan bench");
  if (!buf) return NAN;
  float *p = buf, *u = p, *delta = (p += NDi), *dy = (p += NDi), *y = (p += NDi), *du = (p += NDi),
        *dd = (p += NDi), *Bm = (p += NDi), *Cm = (p += NNs), *dB = (p += NNs), *dC = (p += NNs),
        *h = (p += NNs), *g = (p += H), *A = (p += H), *dA = (p += DN), *D = (p += DN), *dD = (p += Di);
  for (size_t i = 0; i < total; i++) buf[i] = 0.5f + 0.001f * (float)(i % 997);
  for (size_t i = 0; i < DN; i++) A[i] = -A[i];
  double *t = calloc(repeats, sizeof(double));
  for (int r = 0; r < repeats; r++) {
    double t0 = now_s();
    bwt_selective_scan_forward(y, h, u, delta, A, Bm, Cm, D, B, T, Di, Ns);
    bwt_selective_scan_backward(du, dd, dA, dB, dC, dD, g, dy, h, u, delta, A, Bm, Cm, D, B, T, Di, Ns);
    t[r] = (now_s() - t0) * m->n_layers;
  }
  double med = median(t, repeats);
  free(t);
  bwt_buffer_free(buf);
  return med;
}

/* The best sgemm time for the step's shapes: each shape timed alone (median of repeats), summed
 * with its count. Returns GFLOP/s. */
static double sgemm_ceiling(const gemm_shape *s, int n) {
  size_t maxf = 0;
  for (int i = 0; i < n; i++) {
    size_t a = (size_t)s[i].m * s[i].k, b = (size_t)s[i].k * s[i].n, c = (size_t)s[i].m * s[i].n;
    size_t big = a > b ? a : b;
    if (c > big) big = c;
    if (big > maxf) maxf = big;
  }
  float *A = malloc(sizeof(float) * maxf), *Bm = malloc(sizeof(float) * maxf), *Cm = malloc(sizeof(float) * maxf);
  if (!A || !Bm || !Cm) return NAN;
  for (size_t i = 0; i < maxf; i++) A[i] = Bm[i] = 0.001f * (float)(i % 997), Cm[i] = 0;
  double total_s = 0, total_f = 0;
  for (int i = 0; i < n; i++) {
    double t[9];
    for (int r = 0; r < 9; r++) {
      double t0 = now_s();
      cblas_sgemm(CblasRowMajor, s[i].trans_a ? CblasTrans : CblasNoTrans,
                  s[i].trans_b ? CblasTrans : CblasNoTrans, s[i].m, s[i].n, s[i].k, 1.0f, A,
                  s[i].trans_a ? s[i].m : s[i].k, Bm, s[i].trans_b ? s[i].k : s[i].n, 1.0f, Cm, s[i].n);
      t[r] = now_s() - t0;
    }
    total_s += median(t, 9) * s[i].count;
    total_f += 2.0 * s[i].m * s[i].n * s[i].k * s[i].count;
  }
  free(A);
  free(Bm);
  free(Cm);
  return total_f / total_s / 1e9;
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: bench_step --config small|mid|paper [--arch transformer|mlp|window_mlp|lstm|mamba] [--threads N]\n"
          "                  [--warmup N] [--repeats N] [--dump DIR]\n"
          "Times a bwt training step and a forward pass on the bijection task; prints JSON.\n");
}

static void print_times(const char *key, const double *x, int n) {
  printf("\"%s\":[", key);
  for (int i = 0; i < n; i++) printf("%s%.6g", i ? "," : "", x[i]);
  printf("],");
}

static int dump(const char *dir, const bwt_trainer *tr) {
  char path[4096];
  snprintf(path, sizeof path, "%s/weights.safetensors", dir);
  if (bwt_checkpoint_save(path, &tr->cfg, tr->model, NULL, NULL, 0) != BWT_STATUS_OK) return 1;
  const bwt_batch *b = &tr->batch;
  bwt_st_tensor t[3] = {
      {"tokens", BWT_DTYPE_I32, 2, {b->B, b->T}, b->tokens},
      {"sup_pos", BWT_DTYPE_I32, 2, {b->B, b->n_sup}, b->sup_pos},
      {"targets", BWT_DTYPE_I32, 2, {b->B, b->n_sup}, b->target},
  };
  snprintf(path, sizeof path, "%s/batch.safetensors", dir);
  return bwt_safetensors_write(path, t, 3, NULL, NULL, 0) != BWT_STATUS_OK;
}

int main(int argc, char **argv) {
  const char *config = NULL, *arch = "transformer", *dump_dir = NULL;
  int threads = 1, warmup = 3, repeats = 10;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--help") == 0) {
      usage(stdout);
      return 0;
    }
    if (!v) {
      fprintf(stderr, "bench_step: %s needs a value\n", a);
      return 2;
    }
    if (strcmp(a, "--config") == 0) config = v;
    else if (strcmp(a, "--arch") == 0) arch = v;
    else if (strcmp(a, "--threads") == 0) threads = atoi(v);
    else if (strcmp(a, "--warmup") == 0) warmup = atoi(v);
    else if (strcmp(a, "--repeats") == 0) repeats = atoi(v);
    else if (strcmp(a, "--dump") == 0) dump_dir = v;
    else {
      fprintf(stderr, "bench_step: unknown option %s\n", a);
      usage(stderr);
      return 2;
    }
    i++;
  }
  const bench_config *bc = NULL;
  for (size_t i = 0; config && i < sizeof configs / sizeof *configs; i++)
    if (strcmp(configs[i].name, config) == 0) bc = &configs[i];
  if (!bc || threads < 1 || warmup < 0 || repeats < 1 || repeats > 1000) {
    fprintf(stderr, "bench_step: need --config small|mid|paper, --threads >= 1, --repeats 1..1000\n");
    return 2;
  }

  if (bwt_set_threads(threads) != BWT_STATUS_OK) {
    fprintf(stderr, "bench_step: %s\n", bwt_last_error());
    return 2;
  }
  { /* Start the thread pools before the memory baseline. */
    float a[64 * 64] = {0}, c[64 * 64] = {0};
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 64, 64, 64, 1.0f, a, 64, a, 64, 0.0f, c, 64);
  }
  double rss_base = rss_now();

  bwt_run_config rc;
  memset(&rc, 0, sizeof rc);
  bwt_train_config_default(&rc.train);
  bwt_task_config_default(&rc.task, "bijection");
  bwt_task *task = NULL;
  bwt_arch a;
  if (bwt_arch_parse(arch, &a) != BWT_STATUS_OK || bwt_task_create(&task, &rc.task) != BWT_STATUS_OK) {
    fprintf(stderr, "bench_step: %s\n", bwt_last_error());
    return 2;
  }
  bwt_model_config_default(&rc.model, a, task);
  rc.model.d_model = bc->d_model;
  rc.model.n_layers = bc->n_layers;
  rc.model.n_heads = bc->n_heads;
  rc.train.batch = bc->batch;
  rc.train.steps = 1000000;
  rc.train.threads = threads;
  bwt_trainer *tr = NULL;
  if (bwt_trainer_create(&tr, &rc) != BWT_STATUS_OK) {
    fprintf(stderr, "bench_step: %s\n", bwt_last_error());
    return 1;
  }

  double loss, gnorm, lr, *t_step = calloc(repeats, sizeof(double)), *t_eval = calloc(repeats, sizeof(double));
  for (int i = 0; i < warmup + repeats; i++) {
    double t0 = now_s();
    if (bwt_trainer_step(tr, &loss, &gnorm, &lr) != BWT_STATUS_OK) {
      fprintf(stderr, "bench_step: %s\n", bwt_last_error());
      return 1;
    }
    if (i >= warmup) t_step[i - warmup] = now_s() - t0;
    if (i == 0 && dump_dir && dump(dump_dir, tr)) {
      fprintf(stderr, "bench_step: %s\n", bwt_last_error());
      return 1;
    }
  }
  const float *logits;
  for (int i = 0; i < warmup + repeats; i++) {
    double t0 = now_s();
    bwt_model_forward(tr->model, &tr->batch, &logits);
    if (i >= warmup) t_eval[i - warmup] = now_s() - t0;
  }
  double peak = rss_peak();

  const bwt_batch *b = &tr->batch;
  gemm_shape model[32], own[32];
  int n_model = model_shapes(model, &rc.model, b->B, b->T, b->n_sup);
  int n_own = bwt_shapes(own, &rc.model, b->B, b->T, b->n_sup);
  double step_flops = shapes_flops(model, n_model, 0) + attention_flops(&rc.model, b->B, b->T, 0);
  double fwd_flops = shapes_flops(model, n_model, 1) + attention_flops(&rc.model, b->B, b->T, 1);
  double gemm_flops = shapes_flops(own, n_own, 0);
  double ceiling = sgemm_ceiling(own, n_own);
  double scan_s = scan_seconds(&rc.model, b->B, b->T, repeats);

  /* What a step must hold: weights, gradients, two AdamW moments, and the activations the
   * backward pass reads. Per transformer block: the block input, both norm outputs, q, k, v, the
   * attention weights and output, the mid-block stream and the MLP's pre- and post-GELU; the last
   * block keeps k, v, its input and first norm at every position and the rest at the supervised
   * rows only. The MLPs keep a norm output, the stream and the MLP's two H-wide arrays at the
   * supervised rows. */
  double N = (double)b->B * b->T, M = (double)b->B * b->n_sup, C = rc.model.d_model;
  double att_full = (double)b->B * rc.model.n_heads * b->T * b->T, L = rc.model.n_layers;
  double acts = rc.model.arch == BWT_ARCH_TRANSFORMER
                    ? (L - 1) * (16 * N * C + att_full) + 4 * N * C + 12 * M * C + att_full * b->n_sup / b->T
                    : L * 10 * M * C;
  /* And the backward's least working set: the gradients of the stream, of a norm's input and of
   * the MLP's widest array. */
  double working = rc.model.arch == BWT_ARCH_TRANSFORMER ? 6 * N * C : 6 * M * C;
  if (rc.model.arch == BWT_ARCH_MAMBA) {
    /* Mamba keeps every position: per block its norm output, ten Di-wide arrays, x_proj's outputs
     * and the states h (Di·Ns a row); the backward's scratch is as large again, ∂L/∂h included. */
    double Di = (rc.model.ssm_expand ? rc.model.ssm_expand : 2) * C, Ns = rc.model.ssm_state ? rc.model.ssm_state : 16;
    acts = L * (2 * N * C + 10 * N * Di + N * ((C + 15) / 16 + 2 * Ns) + N * Di * Ns);
    working = 2 * N * C + 10 * N * Di + N * Di * Ns;
  }
  double needed = 4.0 * (4.0 * tr->model->n_params + acts + working);

  printf("{\"impl\":\"bwt\",\"config\":\"%s\",\"arch\":\"%s\",\"threads\":%d,\"blas_core\":\"%s\",\"params\":%zu,",
         bc->name, arch, threads, openblas_get_corename(), tr->model->n_params);
  printf("\"B\":%d,\"T\":%d,\"n_sup\":%d,\"step_flops\":%.6g,\"fwd_flops\":%.6g,\"gemm_flops\":%.6g,",
         b->B, b->T, b->n_sup, step_flops, fwd_flops, gemm_flops);
  print_times("step_s", t_step, repeats);
  print_times("eval_s", t_eval, repeats);
  printf("\"step_s_median\":%.6g,\"eval_s_median\":%.6g,", median(t_step, repeats), median(t_eval, repeats));
  printf("\"sgemm_ceiling_gflops\":%.6g,\"peak_rss_bytes\":%.6g,\"base_rss_bytes\":%.6g,"
         "\"needed_bytes\":%.6g,\"scan_s\":%.6g,\"loss\":%.6g}\n",
         ceiling, peak, rss_base, needed, scan_s, loss);
  free(t_step);
  free(t_eval);
  bwt_trainer_free(tr);
  bwt_task_free(task);
  return 0;
}
