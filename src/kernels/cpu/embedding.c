/* Token + position embedding: out[b,t] = wte[tokens[b,t]] + wpe[row(b, t)], where positions from
 * `from` on are shifted by offset[b]: row(b, t) = t < from ? t : t + offset[b]. */
#include <string.h>

#include "bwt/kernels.h"

#define EMB_OMP_MIN_WORK 16384
/* Channels per work item in the backward: each item owns a disjoint channel slice of dwte. */
#define EMB_CHANNEL_BLOCK 16

static inline int shifted_row(const int32_t *offset, int from, int b, int t) {
  return offset && t >= from ? t + offset[b] : t;
}

/* out(B,T,C); tokens(B,T); wte(V,C); wpe(maxT,C) or NULL; offset(B) or NULL (all 0). */
void bwt_embedding_forward(float *out, const int32_t *tokens, const float *wte, const float *wpe,
                           const int32_t *offset, int from, int B, int T, int C) {
  int BT = B * T;
#pragma omp parallel for schedule(static) if ((long)BT * C >= EMB_OMP_MIN_WORK)
  for (int bt = 0; bt < BT; bt++) {
    float *o = out + (size_t)bt * C;
    const float *te = wte + (size_t)tokens[bt] * C;
    if (wpe) {
      const float *pe = wpe + (size_t)shifted_row(offset, from, bt / T, bt % T) * C;
      for (int c = 0; c < C; c++) o[c] = te[c] + pe[c];
    } else {
      memcpy(o, te, sizeof(float) * (size_t)C);
    }
  }
}

/* dwte(V,C) += Σ over positions holding each token; dwpe(maxT,C) row r += Σ over the (b, t) with
 * row(b, t) = r of dout[b,t]. A token can repeat anywhere in the batch, so dwte is split by
 * channel and every slice visits the rows in order: no shared writes, and the sum order does not
 * depend on the thread count. */
void bwt_embedding_backward(float *dwte, float *dwpe, const float *dout, const int32_t *tokens,
                            const int32_t *offset, int from, int B, int T, int C) {
  int BT = B * T;
  int parallel = (long)BT * C >= EMB_OMP_MIN_WORK;
  if (dwte) {
    int nblocks = (C + EMB_CHANNEL_BLOCK - 1) / EMB_CHANNEL_BLOCK;
#pragma omp parallel for schedule(static) if (parallel)
    for (int blk = 0; blk < nblocks; blk++) {
      int c0 = blk * EMB_CHANNEL_BLOCK;
      int c1 = c0 + EMB_CHANNEL_BLOCK < C ? c0 + EMB_CHANNEL_BLOCK : C;
      for (int bt = 0; bt < BT; bt++) {
        float *g = dwte + (size_t)tokens[bt] * C;
        const float *d = dout + (size_t)bt * C;
        for (int c = c0; c < c1; c++) g[c] += d[c];
      }
    }
  }
  if (dwpe) {
    int rows = T;
    for (int b = 0; offset && b < B; b++)
      if (offset[b] + T > rows) rows = offset[b] + T;
    /* Each position owns its row of dwpe; the batch is summed in order. */
#pragma omp parallel for schedule(static) if (parallel)
    for (int r = 0; r < rows; r++) {
      float *g = dwpe + (size_t)r * C;
      for (int b = 0; b < B; b++) {
        int t = r < from || !offset ? r : r - offset[b]; /* the one t of sequence b read at row r, if any */
        if (t >= T || shifted_row(offset, from, b, t) != r) continue;
        const float *d = dout + ((size_t)b * T + t) * C;
        for (int c = 0; c < C; c++) g[c] += d[c];
      }
    }
  }
}
