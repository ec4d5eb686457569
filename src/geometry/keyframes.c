/* Key frames (SPEC.md §5): the keys a block gives the task's hypothesis tokens, read straight from
 * the weights, k_v = W_K · Norm_l(emb[v]) without the bias (a shared offset would make every pair
 * look aligned). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/geometry.h"
#include "bwt/kernels.h"

int bwt_geometry_hypotheses(const bwt_task *task, int *lo) {
  *lo = 0;
  if (task->vocab == 0) return 0; /* continuous inputs: no token embeddings */
  if (strcmp(task->cfg.name, "hmm") == 0) {
    *lo = task->vocab - task->cfg.O; /* the observation symbols */
    return task->cfg.O;
  }
  if (task->n_classes != task->vocab) return 0;
  *lo = task->answer_lo;
  return task->answer_hi - task->answer_lo;
}

static const float *tensor(const bwt_model *m, const char *name) {
  const bwt_tensor_desc *d = bwt_model_find_tensor(m, name);
  return d ? m->params + d->offset : NULL;
}

bwt_status bwt_geometry_keys(const bwt_model *m, int l, int lo, int n_hyp, float *keys) {
  const bwt_model_config *c = &m->cfg;
  if (c->arch != BWT_ARCH_TRANSFORMER || c->input_dim > 0)
    return bwt_fail(BWT_STATUS_ARG, "key frames need a transformer with a token embedding");
  if (l < 0 || l >= c->n_layers || lo < 0 || n_hyp < 1 || lo + n_hyp > c->vocab)
    return bwt_fail(BWT_STATUS_ARG, "key frames: block %d or tokens %d..%d out of range", l, lo, lo + n_hyp - 1);
  int C = c->d_model;
  char name[BWT_TENSOR_NAME_MAX];
  snprintf(name, sizeof name, "blocks.%d.norm1.weight", l);
  const float *nw = tensor(m, name);
  snprintf(name, sizeof name, "blocks.%d.norm1.bias", l);
  const float *nb = tensor(m, name);
  snprintf(name, sizeof name, "blocks.%d.attn.wk.weight", l);
  const float *wk = tensor(m, name);
  const float *emb = tensor(m, "tok_emb");
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
