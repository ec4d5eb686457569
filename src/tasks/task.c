/* The generic task layer: config defaults, dispatch by name, batches, entropy. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/task.h"

const char *const bwt_task_names[] = {"bijection", NULL};

bwt_status bwt_task_config_default(bwt_task_config *cfg, const char *name) {
  memset(cfg, 0, sizeof *cfg);
  if (strcmp(name, "bijection") != 0)
    return bwt_fail(BWT_STATUS_ARG, "unknown task '%s' (known: bijection)", name);
  snprintf(cfg->name, sizeof cfg->name, "%s", name);
  cfg->V = 20;
  cfg->L = 19;
  return BWT_STATUS_OK;
}

bwt_status bwt_task_create(bwt_task **out, const bwt_task_config *cfg) {
  *out = NULL;
  if (strcmp(cfg->name, "bijection") == 0) return bwt_bijection_create(out, cfg);
  return bwt_fail(BWT_STATUS_ARG, "unknown task '%s' (known: bijection)", cfg->name);
}

void bwt_task_free(bwt_task *task) {
  if (task) task->ops->destroy(task);
}

bwt_status bwt_task_sample(const bwt_task *task, uint64_t seed, bwt_batch *out) {
  if (out->T != task->seq_len || out->n_sup != task->n_sup || out->n_classes != task->n_classes ||
      out->B < 1)
    return bwt_fail(BWT_STATUS_ARG, "batch shape (T=%d, n_sup=%d, K=%d) does not fit task %s (T=%d, n_sup=%d, K=%d)",
                    out->T, out->n_sup, out->n_classes, task->cfg.name, task->seq_len, task->n_sup, task->n_classes);
  return task->ops->sample(task, seed, out);
}

bwt_status bwt_batch_alloc(bwt_batch *b, const bwt_task *task, int B) {
  memset(b, 0, sizeof *b);
  if (B < 1) return bwt_fail(BWT_STATUS_ARG, "batch size must be >= 1 (got %d)", B);
  b->B = B;
  b->T = task->seq_len;
  b->n_sup = task->n_sup;
  b->n_classes = task->n_classes;
  b->input_dim = task->input_dim;
  size_t BT = (size_t)B * b->T, BN = (size_t)B * b->n_sup;
  if (task->vocab > 0) b->tokens = bwt_calloc(BT, sizeof *b->tokens, "batch tokens");
  else b->inputs = bwt_calloc(BT * task->input_dim, sizeof *b->inputs, "batch inputs");
  b->sup_pos = bwt_calloc(BN, sizeof *b->sup_pos, "batch positions");
  b->target = bwt_calloc(BN, sizeof *b->target, "batch targets");
  b->posterior = bwt_calloc(BN * b->n_classes, sizeof *b->posterior, "batch posteriors");
  if ((!b->tokens && !b->inputs) || !b->sup_pos || !b->target || !b->posterior) {
    bwt_batch_free(b);
    return BWT_STATUS_NOMEM;
  }
  return BWT_STATUS_OK;
}

void bwt_batch_free(bwt_batch *b) {
  free(b->tokens);
  free(b->inputs);
  free(b->sup_pos);
  free(b->target);
  free(b->posterior);
  b->tokens = NULL;
  b->inputs = NULL;
  b->sup_pos = b->target = NULL;
  b->posterior = NULL;
}

double bwt_entropy_bits(const double *p, int K) {
  double h = 0;
  for (int k = 0; k < K; k++)
    if (p[k] > 0) h -= p[k] * log2(p[k]);
  return h;
}
