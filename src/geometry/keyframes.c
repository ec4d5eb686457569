/* Key frames (SPEC.md §5): the keys a block gives the task's hypothesis tokens, read straight from
 * the weights, k_v = W_K · Norm_l(emb[v]) without the bias (a shared offset would make every pair
 * look aligned). */
#include <stdlib.h>

#include "bwt/lab/geometry.h"
#include "bwt/kernels.h"

int bwt_geometry_hypotheses(const bwt_task *task, int *lo) {
  *lo = task->hyp_lo;
  return task->vocab > 0 ? task->n_hyp : 0; /* continuous inputs: no token embeddings */
}


bwt_status bwt_geometry_keys(const bwt_model *m, int l, int lo, int n_hyp, float *keys) {
  const bwt_model_config *c = &m->cfg;
  if (!bwt_model_has(m, BWT_CAP_ATTENTION) || c->input_dim > 0)
    return bwt_fail(BWT_STATUS_ARG, "key frames need a transformer with a token embedding");
  if (l < 0 || l >= c->n_layers || lo < 0 || n_hyp < 1 || lo + n_hyp > c->vocab)
    return bwt_fail(BWT_STATUS_ARG, "key frames: block %d or tokens %d..%d out of range", l, lo, lo + n_hyp - 1);
  int C = c->d_model;
  const float *nw = bwt_model_params_of(m, bwt_model_tensor(m, BWT_ROLE_ATTN_NORM, l, 0));
  const float *nb = bwt_model_params_of(m, bwt_model_tensor(m, BWT_ROLE_ATTN_NORM, l, 1));
  const float *wk = bwt_model_params_of(m, bwt_model_tensor(m, BWT_ROLE_ATTN_K, l, 0));
  const float *emb = bwt_model_params_of(m, bwt_model_tensor(m, BWT_ROLE_TOKEN_EMBEDDING, -1, 0));
  if (!nw || !wk || !emb || (c->norm == BWT_NORM_LAYER && !nb))
    return bwt_fail(BWT_STATUS_FORMAT, "key frames: the model lacks block %d's norm or key weights", l);
  float *normed = bwt_calloc((size_t)n_hyp * C, sizeof(float), "key frames");
  float *stat = bwt_calloc(2 * (size_t)n_hyp, sizeof(float), "key frames");
  if (!normed || !stat) {
    free(normed);
    free(stat);
    return BWT_STATUS_NOMEM;
  }
  const float *rows = emb + (size_t)lo * C;
  if (c->norm == BWT_NORM_LAYER)
    bwt_layernorm_forward(normed, stat, stat + n_hyp, rows, nw, nb, n_hyp, C);
  else
    bwt_rmsnorm_forward(normed, stat, rows, nw, n_hyp, C);
  bwt_matmul_forward(keys, normed, wk, NULL, n_hyp, C, C);
  free(normed);
  free(stat);
  return BWT_STATUS_OK;
}
