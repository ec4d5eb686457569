/* Buffers and the ops that move floats between them: fill, copy, row gathers and their scatter-add,
 * and the leading-axes transpose. The models reach their memory only through these. */
#include <stdlib.h>
#include <string.h>

#include "bwt/kernels.h"

#define MEM_OMP_MIN_WORK 32768
/* Channels per work item of the scatter-add: each item owns a disjoint slice of dst's columns. */
#define SCATTER_CHANNEL_BLOCK 16
/* A cache line (and an AVX-512 vector): no row of a buffer's first tensor straddles one. */
#define BUFFER_ALIGN 64

float *bwt_buffer_alloc(size_t n, const char *what) {
  return bwt_calloc_aligned(n, sizeof(float), BUFFER_ALIGN, what);
}

void bwt_buffer_free(float *x) { free(x); }

/* x(n) = value, the halves on both threads of a 2-core machine (a serial memset leaves the other
 * thread waiting). */
void bwt_fill(float *x, float value, size_t n) {
#pragma omp parallel for schedule(static) if (n >= MEM_OMP_MIN_WORK)
  for (size_t i = 0; i < n; i++) x[i] = value;
}

void bwt_zero(float *x, size_t n) { bwt_fill(x, 0.0f, n); }

void bwt_copy(float *dst, const float *src, size_t n) {
  if (n) memcpy(dst, src, sizeof(float) * n);
}

/* out(N,C) row i = (or, accumulating, +=) src row idx[i]; negative indices give zeros (or nothing). */
static void gather(float *out, const float *src, const int32_t *idx, int N, int C, int accumulate) {
#pragma omp parallel for schedule(static) if ((long)N * C >= MEM_OMP_MIN_WORK)
  for (int i = 0; i < N; i++) {
    float *o = out + (size_t)i * C;
    const float *s = idx[i] >= 0 ? src + (size_t)idx[i] * C : NULL;
    if (accumulate) {
      for (int c = 0; s && c < C; c++) o[c] += s[c];
    } else if (s) {
      memcpy(o, s, sizeof(float) * (size_t)C);
    } else {
      memset(o, 0, sizeof(float) * (size_t)C);
    }
  }
}

void bwt_gather_rows(float *out, const float *src, const int32_t *idx, int N, int C) {
  gather(out, src, idx, N, C, 0);
}

void bwt_gather_rows_add(float *out, const float *src, const int32_t *idx, int N, int C) {
  gather(out, src, idx, N, C, 1);
}

/* Rows may share a destination, so the work is split by channel: every slice visits the rows in
 * order, no two threads write the same float, and each sum has the naive loop's order. */
void bwt_scatter_add_rows(float *dst, const float *src, const int32_t *idx, int N, int C) {
  int nblocks = (C + SCATTER_CHANNEL_BLOCK - 1) / SCATTER_CHANNEL_BLOCK;
#pragma omp parallel for schedule(static) if ((long)N * C >= MEM_OMP_MIN_WORK && nblocks > 1)
  for (int blk = 0; blk < nblocks; blk++) {
    int c0 = blk * SCATTER_CHANNEL_BLOCK, c1 = c0 + SCATTER_CHANNEL_BLOCK < C ? c0 + SCATTER_CHANNEL_BLOCK : C;
    for (int i = 0; i < N; i++) {
      if (idx[i] < 0) continue;
      float *d = dst + (size_t)idx[i] * C;
      const float *s = src + (size_t)i * C;
      for (int c = c0; c < c1; c++) d[c] += s[c];
    }
  }
}

void bwt_scatter_add_rows_naive(float *dst, const float *src, const int32_t *idx, int N, int C) {
  for (int i = 0; i < N; i++)
    for (int c = 0; idx[i] >= 0 && c < C; c++) dst[(size_t)idx[i] * C + c] += src[(size_t)i * C + c];
}

/* Whole rows of C floats: one memcpy per (a, b). */
void bwt_transpose(float *out, const float *inp, int A, int B, int C) {
#pragma omp parallel for schedule(static) if ((long)A * B * C >= MEM_OMP_MIN_WORK)
  for (int b = 0; b < B; b++)
    for (int a = 0; a < A; a++)
      memcpy(out + ((size_t)b * A + a) * C, inp + ((size_t)a * B + b) * C, sizeof(float) * (size_t)C);
}

void bwt_transpose_naive(float *out, const float *inp, int A, int B, int C) {
  for (int a = 0; a < A; a++)
    for (int b = 0; b < B; b++)
      for (int c = 0; c < C; c++) out[((size_t)b * A + a) * C + c] = inp[((size_t)a * B + b) * C + c];
}
