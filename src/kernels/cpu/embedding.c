/* Token + position embedding: out[b,t] = wte[tokens[b,t]] + wpe[t]. */
#include <string.h>

#include "bwt/kernels.h"

#define EMB_OMP_MIN_WORK 16384
/* Channels per work item in the backward: each item owns a disjoint channel slice of dwte. */
#define EMB_CHANNEL_BLOCK 16

/* out(B,T,C); tokens(B,T); wte(V,C); wpe(maxT,C) or NULL. */
void bwt_embedding_forward(float *out, const int32_t *tokens, const float *wte, const float *wpe,
                           int B, int T, int C) {
  int BT = B * T;
#pragma omp parallel for schedule(static) if ((long)BT * C >= EMB_OMP_MIN_WORK)
  for (int bt = 0; bt < BT; bt++) {
    float *o = out + (size_t)bt * C;
    const float *te = wte + (size_t)tokens[bt] * C;
    if (wpe) {
      const float *pe = wpe + (size_t)(bt % T) * C;
      for (int c = 0; c < C; c++) o[c] = te[c] + pe[c];
    } else {
      memcpy(o, te, sizeof(float) * (size_t)C);
    }
  }
}

/* dwte(V,C) += Σ over positions holding each token; dwpe(maxT,C) += Σ_b dout[b,t]. A token can
 * repeat anywhere in the batch, so dwte is split by channel and every slice visits the rows in
 * order: no shared writes, and the sum order does not depend on the thread count. */
void bwt_embedding_backward(float *dwte, float *dwpe, const float *dout, const int32_t *tokens,
                            int B, int T, int C) {
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
    /* Each position owns its row of dwpe; the batch is summed in order. */
#pragma omp parallel for schedule(static) if (parallel)
    for (int t = 0; t < T; t++) {
      float *g = dwpe + (size_t)t * C;
      for (int b = 0; b < B; b++) {
        const float *d = dout + ((size_t)b * T + t) * C;
        for (int c = 0; c < C; c++) g[c] += d[c];
      }
    }
  }
}
