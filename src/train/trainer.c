/* The trainer: task, model and optimiser state, and one optimisation step. The run loop and its
 * directory are in run.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/checkpoint.h"
#include "bwt/fileio.h"
#include "bwt/kernels.h"
#include "bwt/rng.h"
#include "optim.h"

/* Mixed into a batch's seed to draw its position offsets ("jitter" in ASCII). */
#define JITTER_SEED_TAG 0x6a6974746572ULL
/* ... and its answers sampled for the policy gradient ("reinforce"). */
#define PG_SEED_TAG 0x7265696e666f7263ULL

/* Copies the weights of the checkpoint at path into m, which must have the same tensors. */
static bwt_status start_from(bwt_model *m, const char *path) {
  bwt_run_config c;
  bwt_model *from = NULL;
  int step;
  BWT_TRY(bwt_checkpoint_load(path, &c, &from, NULL, NULL, &step));
  bwt_status s = from->n_tensors == m->n_tensors && from->n_params == m->n_params ? BWT_STATUS_OK
                 : bwt_fail(BWT_STATUS_ARG, "--init-from %s: its model has %zu parameters in %d tensors, this run's %zu in %d",
                            path, from->n_params, from->n_tensors, m->n_params, m->n_tensors);
  for (int i = 0; s == BWT_STATUS_OK && i < m->n_tensors; i++) {
    const bwt_tensor_desc *a = &m->tensors[i], *b = &from->tensors[i];
    if (strcmp(a->name, b->name) != 0 || a->ndim != b->ndim || a->shape[0] != b->shape[0] || a->shape[1] != b->shape[1])
      s = bwt_fail(BWT_STATUS_ARG, "--init-from %s: its tensor %s does not match this run's %s (change only the task's settings, not the model's)",
                   path, b->name, a->name);
  }
  if (s == BWT_STATUS_OK) bwt_copy(m->params, from->params, m->n_params);
  bwt_model_free(from);
  return s;
}

bwt_status bwt_trainer_create(bwt_trainer **out, const bwt_run_config *cfg) {
  *out = NULL;
  BWT_TRY(bwt_run_config_check(cfg));
  bwt_trainer *tr = bwt_calloc(1, sizeof *tr, "trainer");
  if (!tr) return BWT_STATUS_NOMEM;
  tr->cfg = *cfg;
  tr->lock_fd = -1;
  tr->dp = (bwt_data_parallel){.rank = 0, .size = 1};
  bwt_status s = bwt_set_threads(cfg->train.threads);
  if (s == BWT_STATUS_OK) s = bwt_task_create(&tr->task, &cfg->task);
  if (s == BWT_STATUS_OK) s = bwt_model_create(&tr->model, &cfg->model, cfg->train.seed);
  if (s == BWT_STATUS_OK) s = bwt_model_check_task(tr->model, tr->task);
  if (s == BWT_STATUS_OK && cfg->train.init_from[0]) s = start_from(tr->model, cfg->train.init_from);
  if (s == BWT_STATUS_OK) s = bwt_batch_alloc(&tr->batch, tr->task, cfg->train.batch);
  int jitter = cfg->train.position_jitter;
  if (s == BWT_STATUS_OK && jitter > 0) {
    if (cfg->model.positions == BWT_POS_LEARNED && tr->task->seq_len + jitter > cfg->model.max_T)
      s = bwt_fail(BWT_STATUS_ARG, "--position-jitter %d with learned positions needs --max-T >= %d (the task's length %d + the jitter; the model has %d)",
                   jitter, tr->task->seq_len + jitter, tr->task->seq_len, cfg->model.max_T);
    else if (!(tr->batch.pos_offset = bwt_calloc((size_t)cfg->train.batch, sizeof(int32_t), "position offsets")))
      s = BWT_STATUS_NOMEM;
    tr->batch.pos_offset_from = cfg->train.position_jitter_from;
  }
  if (s == BWT_STATUS_OK) {
    size_t P = tr->model->n_params, MK = (size_t)cfg->train.batch * tr->task->n_sup * tr->task->n_classes;
    tr->adam_m = bwt_buffer_alloc(P, "optimiser state");
    tr->adam_v = bwt_buffer_alloc(P, "optimiser state");
    tr->probs = bwt_buffer_alloc(MK, "probabilities");
    tr->dlogits = bwt_buffer_alloc(MK, "logit gradients");
    if (!tr->adam_m || !tr->adam_v || !tr->probs || !tr->dlogits) s = BWT_STATUS_NOMEM;
  }
  if (s == BWT_STATUS_OK && cfg->train.loss == BWT_LOSS_PG) {
    size_t M = (size_t)cfg->train.batch * tr->task->n_sup;
    tr->pg_action = bwt_calloc(M, sizeof *tr->pg_action, "sampled answers");
    tr->pg_reward = bwt_calloc(3 * M, sizeof *tr->pg_reward, "rewards");
    if (!tr->pg_action || !tr->pg_reward) s = BWT_STATUS_NOMEM;
    else tr->pg_expected = tr->pg_reward + M, tr->pg_weight = tr->pg_reward + 2 * M;
  }
  if (s != BWT_STATUS_OK) {
    bwt_trainer_free(tr);
    return s;
  }
  *out = tr;
  return BWT_STATUS_OK;
}

void bwt_trainer_free(bwt_trainer *tr) {
  if (!tr) return;
  bwt_task_free(tr->task);
  bwt_model_free(tr->model);
  bwt_batch_free(&tr->batch);
  bwt_buffer_free(tr->adam_m);
  bwt_buffer_free(tr->adam_v);
  bwt_buffer_free(tr->probs);
  bwt_buffer_free(tr->dlogits);
  free(tr->pg_action);
  free(tr->pg_reward);
  bwt_eval_result_free(&tr->final);
  bwt_dir_unlock(tr->lock_fd);
  free(tr);
}

bwt_status bwt_trainer_set_parallel(bwt_trainer *tr, const bwt_data_parallel *dp) {
  int B = tr->cfg.train.batch;
  if (dp->size < 1 || dp->rank < 0 || dp->rank >= dp->size || (dp->size > 1 && !dp->sum))
    return bwt_fail(BWT_STATUS_ARG, "data parallelism: rank %d of %d processes, or no way to sum gradients", dp->rank, dp->size);
  if (dp->size > B)
    return bwt_fail(BWT_STATUS_ARG, "%d processes share a batch of %d sequences: give each at least one (--batch >= %d)", dp->size, B, dp->size);
  int first = (int)((long)dp->rank * B / dp->size), n = (int)((long)(dp->rank + 1) * B / dp->size) - first;
  bwt_batch b;
  BWT_TRY(bwt_batch_alloc(&b, tr->task, n));
  if (tr->batch.pos_offset && !(b.pos_offset = bwt_calloc((size_t)n, sizeof(int32_t), "position offsets"))) {
    bwt_batch_free(&b);
    return BWT_STATUS_NOMEM;
  }
  b.pos_offset_from = tr->batch.pos_offset_from;
  bwt_batch_free(&tr->batch);
  tr->batch = b;
  tr->shard_first = first;
  tr->dp = *dp;
  return BWT_STATUS_OK;
}

/* The supervised positions of each sequence the loss reads: the first H (--loss-horizon), else all. */
static int horizon(const bwt_trainer *tr) {
  int h = tr->cfg.train.loss_horizon, n = tr->batch.n_sup;
  return h > 0 && h < n ? h : n;
}

/* REINFORCE on this batch (probs filled): an answer sampled at every supervised position, from a
 * stream of the batch's seed indexed by the row's place in the global batch; each sequence's reward R
 * is the mean over its first H positions, its baseline b the model's own expected mean reward there
 * (which no sample changes), and the rows get weight R − b. Returns the mean expected error 1 − b. */
static double policy_gradient(bwt_trainer *tr, uint64_t batch_seed, const double *soft, int H, float scale) {
  bwt_batch *b = &tr->batch;
  int n = b->n_sup, K = b->n_classes, M = b->B * n;
  bwt_sample_rows(tr->pg_action, tr->probs, M, K, bwt_hash2(batch_seed, PG_SEED_TAG), (uint64_t)tr->shard_first * n);
  bwt_pg_rewards(tr->pg_reward, tr->pg_expected, tr->probs, tr->pg_action, b->target, soft, M, K);
  double error = 0;
  for (int s = 0; s < b->B; s++) {
    double R = 0, base = 0;
    for (int t = 0; t < H; t++) R += tr->pg_reward[s * n + t] / H, base += tr->pg_expected[s * n + t] / H;
    for (int t = 0; t < n; t++) tr->pg_weight[s * n + t] = t < H ? R - base : 0.0;
    error += 1.0 - base;
  }
  bwt_pg_backward(tr->dlogits, tr->probs, tr->pg_action, tr->pg_weight, scale, M, K);
  return error / b->B;
}

/* The step's objective on this process's rows (probs filled, dlogits zeroed): adds its gradient,
 * scaled for the mean over every process's rows, to dlogits and returns its mean over this
 * process's rows. */
static double objective(bwt_trainer *tr, const float *logits, uint64_t batch_seed) {
  const bwt_train_config *c = &tr->cfg.train;
  bwt_batch *b = &tr->batch;
  int K = b->n_classes, n = b->n_sup, H = horizon(tr);
  const double *soft = c->soft_targets ? b->posterior : NULL;
  float scale = 1.0f / (float)((long)c->batch * H); /* over the global batch */
  if (c->loss == BWT_LOSS_PG) return policy_gradient(tr, batch_seed, soft, H, scale);
  /* The first H rows of each sequence (all of them at once when H is every position). */
  int runs = H == n ? 1 : b->B, rows = H == n ? b->B * n : H;
  double total = 0, mean = 0;
  for (int s = 0; s < runs; s++) {
    size_t r = (size_t)s * n;
    const double *sr = soft ? soft + r * K : NULL;
    float *d = tr->dlogits + r * K;
    const float *p = tr->probs + r * K;
    if (c->loss == BWT_LOSS_MSE) {
      mean = bwt_mse_loss(p, b->target + r, sr, rows, K);
      bwt_mse_backward(d, p, b->target + r, sr, scale, rows, K);
    } else {
      mean = bwt_xent_loss(logits + r * K, b->target + r, sr, rows, K);
      bwt_xent_backward(d, p, b->target + r, sr, scale, rows, K);
    }
    total += mean * rows;
  }
  return runs == 1 ? mean : total / ((double)runs * rows);
}

uint64_t bwt_train_batch_seed(uint64_t seed, int t) { return bwt_hash2(seed, (uint64_t)(t - 1)); }

bwt_status bwt_trainer_step(bwt_trainer *tr, double *loss, double *grad_norm, double *lr) {
  const bwt_train_config *c = &tr->cfg.train;
  bwt_model *m = tr->model;
  bwt_batch *b = &tr->batch;
  /* M rows here, of M_all over every process of a data-parallel run: the loss is their mean. */
  int M = b->B * b->n_sup, K = b->n_classes, B_all = c->batch;
  uint64_t batch_seed = bwt_train_batch_seed(c->seed, tr->step + 1);
  tr->out_of_step = tr->dp.size > 1; /* until the sum: the others wait in it if this step fails before */
  BWT_TRY(bwt_task_sample_at(tr->task, batch_seed, (uint64_t)tr->shard_first, b));
  if (b->pos_offset) { /* its own stream of the batch's seed: the sequences stay those of an unshifted run */
    bwt_rng rng;
    bwt_rng_seed(&rng, bwt_hash2(batch_seed, JITTER_SEED_TAG), 0);
    for (int i = 0; i < tr->shard_first; i++) bwt_rng_below(&rng, (uint32_t)c->position_jitter + 1); /* the other shards' */
    for (int i = 0; i < b->B; i++) b->pos_offset[i] = (int32_t)bwt_rng_below(&rng, (uint32_t)c->position_jitter + 1);
  }
  const float *logits = NULL;
  BWT_TRY(bwt_model_forward(m, b, &logits));
  bwt_softmax_forward(tr->probs, logits, M, K);
  bwt_zero(tr->dlogits, (size_t)M * K);
  *loss = objective(tr, logits, batch_seed) + bwt_model_aux_loss(m); /* the auxiliary loss's gradient is the model's */
  bwt_model_zero_grad(m);
  BWT_TRY(bwt_model_backward(m, b, tr->dlogits));
  if (tr->dp.size > 1) { /* the sums over the processes: gradients, this share of the mean loss, stop votes */
    double extras[2] = {*loss * b->B / B_all, bwt_stop_requested() ? 1.0 : 0.0};
    BWT_TRY(tr->dp.sum(tr->dp.ctx, m->grads, m->n_params, extras, 2));
    tr->out_of_step = 0;
    *loss = extras[0];
    tr->stop_agreed = extras[1] > 0;
  }
  *grad_norm = optim_clip(m, c->clip);
  if (!isfinite(*loss) || !isfinite(*grad_norm))
    return bwt_fail(BWT_STATUS_NUMERIC, "step %d: loss %g, gradient norm %g are not finite (the run diverged; continue from the last checkpoint with a lower learning rate: bwt train --resume DIR --lr X)",
                    tr->step + 1, *loss, *grad_norm);
  *lr = bwt_lr_at(c, tr->step + 1);
  optim_adamw(m, tr->adam_m, tr->adam_v, c, *lr, tr->step + 1);
  tr->step++;
  return BWT_STATUS_OK;
}

