/* bwt's side of the language-model forward benchmark (bench/lm_run.py drives it and the PyTorch
 * side, bench/lm_torch.py): opens a Hugging Face model directory with bwt_lm_open, times the
 * prefill of one prompt (bwt_lm_reset, then bwt_lm_forward over all its tokens, logits of every
 * position), measures the sgemm ceiling on the model's own matrix shapes, and prints one JSON object.
 *
 *   lm_forward --model DIR [--tokens N] [--threads N] [--warmup N] [--repeats N] [--logits PATH]
 *              [--no-ceiling]
 *
 * The prompt is token i = (1103515245·i + 12345) mod 2³¹ mod V, the same in bench/lm_torch.py.
 * --logits writes the last repeat's (N,V) logits as raw little-endian float32. "times" are wall
 * seconds per forward, "cpu_times" the process's CPU seconds (user + system, all threads) over it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sys/resource.h>

#include <cblas.h>

#include "bwt/lm.h"
#include "bwt/train.h"

/* bwt_lm_forward's chunk of queries (LM_CHUNK in src/lm/lm_forward.c): the row counts of its
 * products. */
#define BENCH_LM_CHUNK 512

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* CPU seconds of this process (user + system, all threads). */
static double cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + 1e-6 * ru.ru_utime.tv_usec + ru.ru_stime.tv_sec + 1e-6 * ru.ru_stime.tv_usec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *x, int n) {
  qsort(x, n, sizeof *x, cmp_double);
  return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

/* A line "KEY: N kB" of /proc/self/status, in bytes (VmRSS now, VmHWM the peak). */
static double proc_status(const char *key) {
  char line[256], fmt[64];
  double kb = NAN;
  snprintf(fmt, sizeof fmt, "%s: %%lf kB", key);
  FILE *f = fopen("/proc/self/status", "r");
  if (!f) return NAN;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, fmt, &kb) == 1) break;
  fclose(f);
  return kb * 1024.0;
}

typedef struct {
  int m, n, k, count; /* C(m,n) = A(m,k)·B(n,k)ᵀ, as bwt_matmul_forward */
} gemm_shape;

/* The products of one prefill of T tokens: per chunk of rows, per layer q, k, v, o, gate, up,
 * down, and the head once per chunk. Returns the count written to s. */
static int forward_shapes(gemm_shape *s, const bwt_lm_config *c, int T) {
  int n = 0, Q = c->NH * c->hs, K = c->NKV * c->hs;
  for (int done = 0; done < T; done += BENCH_LM_CHUNK) {
    int m = T - done < BENCH_LM_CHUNK ? T - done : BENCH_LM_CHUNK;
    gemm_shape layer[] = {{m, Q, c->C, c->L}, {m, K, c->C, 2 * c->L}, {m, c->C, Q, c->L},
                          {m, c->F, c->C, 2 * c->L}, {m, c->C, c->F, c->L}, {m, c->V, c->C, 1}};
    for (size_t i = 0; i < sizeof layer / sizeof *layer; i++) {
      int merged = 0;
      for (int j = 0; j < n && !merged; j++)
        if (s[j].m == layer[i].m && s[j].n == layer[i].n && s[j].k == layer[i].k) {
          s[j].count += layer[i].count;
          merged = 1;
        }
      if (!merged) s[n++] = layer[i];
    }
  }
  return n;
}

static double shapes_flops(const gemm_shape *s, int n) {
  double f = 0;
  for (int i = 0; i < n; i++) f += 2.0 * s[i].m * s[i].n * s[i].k * s[i].count;
  return f;
}

/* Causal attention's products (q·k and p·v over the seen keys), counted apart: they are not
 * among the projection shapes. */
static double attention_flops(const bwt_lm_config *c, int T) {
  double f = 0;
  for (int t = 0; t < T; t++) {
    int seen = c->sliding_window > 0 && c->sliding_window < t + 1 ? c->sliding_window : t + 1;
    f += 4.0 * c->NH * c->hs * seen;
  }
  return f * c->L;
}

/* Seconds the shapes take alone through cblas_sgemm (each timed `reps` times, the median, times
 * its count), as bwt_matmul_forward calls it (B transposed, beta 1). */
static double sgemm_seconds(const gemm_shape *s, int n, int reps) {
  size_t maxf = 0;
  for (int i = 0; i < n; i++) {
    size_t a = (size_t)s[i].m * s[i].k, b = (size_t)s[i].k * s[i].n, c = (size_t)s[i].m * s[i].n;
    size_t big = a > b ? a : b;
    if (c > big) big = c;
    if (big > maxf) maxf = big;
  }
  float *A = malloc(sizeof(float) * maxf), *Bm = malloc(sizeof(float) * maxf), *Cm = malloc(sizeof(float) * maxf);
  double total = NAN;
  if (A && Bm && Cm) {
    for (size_t i = 0; i < maxf; i++) A[i] = Bm[i] = 0.001f * (float)(i % 997), Cm[i] = 0;
    total = 0;
    for (int i = 0; i < n; i++) {
      double t[16];
      for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s[i].m, s[i].n, s[i].k, 1.0f, A, s[i].k, Bm,
                    s[i].k, 1.0f, Cm, s[i].n);
        t[r] = now_s() - t0;
      }
      total += median(t, reps) * s[i].count;
    }
  }
  free(A);
  free(Bm);
  free(Cm);
  return total;
}

int main(int argc, char **argv) {
  const char *dir = NULL, *logits_path = NULL;
  int T = 128, threads = 1, warmup = 1, repeats = 3, ceiling = 1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--no-ceiling") == 0) {
      ceiling = 0;
      continue;
    }
    if (!v) {
      fprintf(stderr, "lm_forward: %s needs a value\n", a);
      return 2;
    }
    if (strcmp(a, "--model") == 0) dir = v;
    else if (strcmp(a, "--tokens") == 0) T = atoi(v);
    else if (strcmp(a, "--threads") == 0) threads = atoi(v);
    else if (strcmp(a, "--warmup") == 0) warmup = atoi(v);
    else if (strcmp(a, "--repeats") == 0) repeats = atoi(v);
    else if (strcmp(a, "--logits") == 0) logits_path = v;
    else {
      fprintf(stderr, "usage: lm_forward --model DIR [--tokens N] [--threads N] [--warmup N] [--repeats N] [--logits PATH] [--no-ceiling]\n");
      return 2;
    }
    i++;
  }
  if (!dir || T < 1 || threads < 1 || warmup < 0 || repeats < 1 || repeats > 100) {
    fprintf(stderr, "lm_forward: need --model DIR, --tokens >= 1, --threads >= 1, --repeats 1..100\n");
    return 2;
  }
  if (bwt_set_threads(threads) != BWT_STATUS_OK) {
    fprintf(stderr, "lm_forward: %s\n", bwt_last_error());
    return 1;
  }
  { /* Start the thread pools before the memory baseline. */
    float a[64 * 64] = {0}, c[64 * 64] = {0};
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 64, 64, 64, 1.0f, a, 64, a, 64, 0.0f, c, 64);
  }
  double rss_base = proc_status("VmRSS");
  double t0 = now_s();
  bwt_lm *lm = NULL;
  if (bwt_lm_open(&lm, dir) != BWT_STATUS_OK) {
    fprintf(stderr, "lm_forward: %s\n", bwt_last_error());
    return 1;
  }
  double open_s = now_s() - t0, rss_open = proc_status("VmRSS");
  const bwt_lm_config *c = bwt_lm_config_of(lm);
  if (T > c->max_pos) T = c->max_pos;
  int32_t *tokens = malloc(sizeof(int32_t) * (size_t)T);
  float *logits = malloc(sizeof(float) * (size_t)T * c->V);
  double *t = malloc(sizeof(double) * (size_t)repeats), *cpu = malloc(sizeof(double) * (size_t)repeats);
  if (!tokens || !logits || !t || !cpu) {
    fprintf(stderr, "lm_forward: out of memory\n");
    return 1;
  }
  for (int i = 0; i < T; i++) tokens[i] = (int32_t)(((1103515245ull * (unsigned)i + 12345ull) % 2147483648ull) % (unsigned)c->V);
  for (int r = 0; r < warmup + repeats; r++) {
    bwt_lm_reset(lm);
    double s0 = now_s(), c0 = cpu_s();
    if (bwt_lm_forward(lm, tokens, T, logits) != BWT_STATUS_OK) {
      fprintf(stderr, "lm_forward: %s\n", bwt_last_error());
      return 1;
    }
    if (r >= warmup) t[r - warmup] = now_s() - s0, cpu[r - warmup] = cpu_s() - c0;
  }
  double peak = proc_status("VmHWM");
  if (logits_path) {
    FILE *f = fopen(logits_path, "wb");
    if (!f || fwrite(logits, sizeof(float), (size_t)T * c->V, f) != (size_t)T * c->V || fclose(f) != 0) {
      fprintf(stderr, "lm_forward: cannot write %s\n", logits_path);
      return 1;
    }
  }
  gemm_shape shapes[64];
  int n_shapes = forward_shapes(shapes, c, T);
  double gemm_s = ceiling ? sgemm_seconds(shapes, n_shapes, 3) : NAN;
  double med = median(t, repeats);
  printf("{\"impl\":\"bwt\",\"model\":\"%s\",\"tokens\":%d,\"threads\":%d,\"blas_core\":\"%s\",\"dtype\":\"%s\","
         "\"params\":%zu,\"converted_bytes\":%zu,\"open_s\":%.6g,\"median_s\":%.6g,\"tokens_per_s\":%.6g,\"times\":[",
         c->architecture, T, threads, openblas_get_corename(), c->dtype, c->n_params, c->converted_bytes, open_s, med,
         T / med);
  for (int r = 0; r < repeats; r++) printf("%s%.6g", r ? "," : "", t[r]);
  printf("],\"cpu_times\":[");
  for (int r = 0; r < repeats; r++) printf("%s%.6g", r ? "," : "", cpu[r]);
  printf("],\"gemm_flops\":%.6g,\"attention_flops\":%.6g,\"sgemm_s\":", shapes_flops(shapes, n_shapes),
         attention_flops(c, T));
  printf(isnan(gemm_s) ? "null" : "%.6g", gemm_s);
  printf(",\"base_rss_bytes\":%.6g,\"open_rss_bytes\":%.6g,\"peak_rss_bytes\":%.6g}\n", rss_base, rss_open, peak);
  free(tokens);
  free(logits);
  free(t);
  free(cpu);
  bwt_lm_close(lm);
  return 0;
}
