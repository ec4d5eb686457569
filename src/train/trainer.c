/* The training step and the run loop with its run directory (config.json, metrics.jsonl,
 * checkpoint.safetensors, eval.json, positions.csv). */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "bwt/checkpoint.h"
#include "attention_log.h"
#include "bwt/fileio.h"
#include "bwt/kernels.h"
#include "bwt/report.h"
#include "bwt/rng.h"
#include "optim.h"

static volatile sig_atomic_t stop_requested;

void bwt_train_request_stop(void) { stop_requested = 1; }

bwt_status bwt_trainer_create(bwt_trainer **out, const bwt_run_config *cfg) {
  *out = NULL;
  BWT_TRY(bwt_run_config_check(cfg));
  bwt_trainer *tr = bwt_calloc(1, sizeof *tr, "trainer");
  if (!tr) return BWT_STATUS_NOMEM;
  tr->cfg = *cfg;
  bwt_set_threads(cfg->train.threads);
  bwt_status s = bwt_task_create(&tr->task, &cfg->task);
  if (s == BWT_STATUS_OK) s = bwt_model_create(&tr->model, &cfg->model, cfg->train.seed);
  if (s == BWT_STATUS_OK) s = bwt_model_check_task(tr->model, tr->task);
  if (s == BWT_STATUS_OK) s = bwt_batch_alloc(&tr->batch, tr->task, cfg->train.batch);
  if (s == BWT_STATUS_OK) {
    size_t P = tr->model->n_params, MK = (size_t)cfg->train.batch * tr->task->n_sup * tr->task->n_classes;
    tr->adam_m = bwt_calloc(P, sizeof(float), "optimiser state");
    tr->adam_v = bwt_calloc(P, sizeof(float), "optimiser state");
    tr->probs = bwt_calloc(MK, sizeof(float), "probabilities");
    tr->dlogits = bwt_calloc(MK, sizeof(float), "logit gradients");
    if (!tr->adam_m || !tr->adam_v || !tr->probs || !tr->dlogits) s = BWT_STATUS_NOMEM;
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
  free(tr->adam_m);
  free(tr->adam_v);
  free(tr->probs);
  free(tr->dlogits);
  bwt_eval_result_free(&tr->final);
  free(tr);
}

bwt_status bwt_trainer_step(bwt_trainer *tr, double *loss, double *grad_norm, double *lr) {
  const bwt_train_config *c = &tr->cfg.train;
  bwt_model *m = tr->model;
  bwt_batch *b = &tr->batch;
  int M = b->B * b->n_sup, K = b->n_classes;
  BWT_TRY(bwt_task_sample(tr->task, bwt_hash2(c->seed, (uint64_t)tr->step), b));
  const float *logits = NULL;
  BWT_TRY(bwt_model_forward(m, b, &logits));
  bwt_softmax_forward(tr->probs, logits, M, K);
  const double *soft = c->soft_targets ? b->posterior : NULL;
  memset(tr->dlogits, 0, sizeof(float) * (size_t)M * K);
  int H = c->loss_horizon > 0 && c->loss_horizon < b->n_sup ? c->loss_horizon : b->n_sup;
  if (H == b->n_sup) {
    *loss = bwt_xent_loss(tr->probs, b->target, soft, M, K);
    bwt_xent_backward(tr->dlogits, tr->probs, b->target, soft, 1.0f / (float)M, M, K);
  } else { /* the mean over the first H positions of each sequence; the other rows get no gradient */
    double total = 0;
    for (int s = 0; s < b->B; s++) {
      size_t r = (size_t)s * b->n_sup;
      const double *sr = soft ? soft + r * K : NULL;
      total += bwt_xent_loss(tr->probs + r * K, b->target + r, sr, H, K) * H;
      bwt_xent_backward(tr->dlogits + r * K, tr->probs + r * K, b->target + r, sr, 1.0f / (float)(b->B * H), H, K);
    }
    *loss = total / ((double)b->B * H);
  }
  bwt_model_zero_grad(m);
  BWT_TRY(bwt_model_backward(m, b, tr->dlogits));
  *grad_norm = optim_clip(m, c->clip);
  if (!isfinite(*loss) || !isfinite(*grad_norm))
    return bwt_fail(BWT_STATUS_NUMERIC, "step %d: loss %g, gradient norm %g are not finite (try a lower --lr)", tr->step + 1, *loss, *grad_norm);
  *lr = bwt_lr_at(c, tr->step + 1);
  optim_adamw(m, tr->adam_m, tr->adam_v, c, *lr, tr->step + 1);
  tr->step++;
  return BWT_STATUS_OK;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void path_in(char *buf, size_t n, const char *dir, const char *file) {
  snprintf(buf, n, "%s/%s", dir, file);
}

static bwt_status save_checkpoint(bwt_trainer *tr, const char *dir) {
  char path[4096];
  path_in(path, sizeof path, dir, "checkpoint.safetensors");
  return bwt_checkpoint_save(path, &tr->cfg, tr->model, tr->adam_m, tr->adam_v, tr->step);
}

/* Weights only, for the frame-precision series (bwt geometry --series); written before the resumable
 * checkpoint of the same step, so a resumed run never misses one. */
static bwt_status save_snapshot(bwt_trainer *tr, const char *dir) {
  char path[4096];
  path_in(path, sizeof path, dir, "snapshots");
  BWT_TRY(bwt_mkdir_p(path));
  snprintf(path, sizeof path, "%s/snapshots/step_%07d.safetensors", dir, tr->step);
  return bwt_checkpoint_save(path, &tr->cfg, tr->model, NULL, NULL, tr->step);
}

static bwt_status log_json(FILE *f, cJSON *o, const char *path) {
  char *line = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  int ok = line && fprintf(f, "%s\n", line) > 0 && fflush(f) == 0;
  free(line);
  return ok ? BWT_STATUS_OK : bwt_fail(BWT_STATUS_IO, "cannot append to %s", path);
}

static bwt_status evaluate_and_log(bwt_trainer *tr, FILE *log, const char *log_path,
                                   bwt_eval_result *r) {
  const bwt_train_config *c = &tr->cfg.train;
  BWT_TRY(bwt_evaluate(tr->model, tr->task, c->eval_seed, c->eval_seqs, c->batch, r));
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "step", tr->step);
  cJSON_AddItemToObject(o, "eval", bwt_metrics_to_json(&r->overall));
  cJSON_AddNumberToObject(o, "entropy_mae_curves", r->entropy_mae_curves);
  return log_json(log, o, log_path);
}

bwt_status bwt_run_dir_prepare(const char *dir) {
  char path[4096];
  BWT_TRY(bwt_mkdir_p(dir));
  path_in(path, sizeof path, dir, "checkpoint.safetensors");
  if (bwt_path_exists(path))
    return bwt_fail(BWT_STATUS_ARG, "%s already holds a run (use --resume %s, or another --out)", dir, dir);
  return BWT_STATUS_OK;
}

bwt_status bwt_train_run(bwt_trainer *tr, const char *dir, bwt_progress_fn progress, void *ctx) {
  const bwt_train_config *c = &tr->cfg.train;
  char path[4096], log_path[4096];
  if (tr->step == 0) BWT_TRY(bwt_run_dir_prepare(dir));
  char *config = bwt_run_config_to_json(&tr->cfg);
  path_in(path, sizeof path, dir, "config.json");
  bwt_status s = config ? bwt_write_file_atomic(path, config, strlen(config)) : BWT_STATUS_NOMEM;
  free(config);
  BWT_TRY(s);
  path_in(log_path, sizeof log_path, dir, "metrics.jsonl");
  FILE *log = fopen(log_path, tr->step == 0 ? "w" : "a");
  if (!log) return bwt_fail(BWT_STATUS_IO, "cannot write %s", log_path);

  int stop_at = tr->stop_after > 0 && tr->stop_after < c->steps ? tr->stop_after : c->steps;
  double t0 = now_s(), t_last = t0;
  int step_last = tr->step, start = tr->step;
  long tokens_per_step = (long)tr->batch.B * tr->batch.T;
  /* A stop requested before the loop (a Ctrl-C during start-up) is kept: the run saves step 0. */
  bwt_eval_result r;
  memset(&r, 0, sizeof r);
  /* The attention weights before each logged step, for the timescales log. */
  float *prev = NULL;
  size_t n_prev = attention_log_floats(tr->model);
  if (n_prev && !(prev = bwt_calloc(n_prev, sizeof(float), "timescales log"))) s = BWT_STATUS_NOMEM;
  while (s == BWT_STATUS_OK && tr->step < stop_at && !stop_requested) {
    double loss, gnorm, lr;
    int logged = (tr->step + 1) % c->log_every == 0 || tr->step + 1 == stop_at;
    if (prev && logged) attention_log_save(tr->model, prev);
    s = bwt_trainer_step(tr, &loss, &gnorm, &lr);
    if (s != BWT_STATUS_OK) break;
    int evaluated = c->eval_every > 0 && tr->step % c->eval_every == 0 && tr->step < c->steps;
    if (evaluated) {
      bwt_eval_result_free(&r);
      s = evaluate_and_log(tr, log, log_path, &r);
    }
    if (s == BWT_STATUS_OK && (tr->step % c->log_every == 0 || tr->step == stop_at || evaluated)) {
      double t = now_s();
      bwt_progress p = {tr->step, c->steps, loss, gnorm, lr, 0, t - t0, 0, evaluated ? &r : NULL};
      p.tokens_per_s = t > t_last ? (double)(tr->step - step_last) * tokens_per_step / (t - t_last) : 0;
      p.eta_s = (t - t0) / (tr->step - start) * (c->steps - tr->step);
      t_last = t;
      step_last = tr->step;
      cJSON *o = cJSON_CreateObject();
      cJSON_AddNumberToObject(o, "step", tr->step);
      cJSON_AddNumberToObject(o, "loss", loss);
      cJSON_AddNumberToObject(o, "grad_norm", gnorm);
      cJSON_AddNumberToObject(o, "lr", lr);
      cJSON_AddNumberToObject(o, "tokens_per_s", p.tokens_per_s);
      cJSON_AddNumberToObject(o, "elapsed_s", p.elapsed_s);
      if (prev && logged) cJSON_AddItemToObject(o, "attention", attention_log_json(tr->model, prev));
      s = log_json(log, o, log_path);
      if (progress) progress(ctx, &p);
    }
    if (s == BWT_STATUS_OK && c->ckpt_every > 0 && tr->step % c->ckpt_every == 0) s = save_checkpoint(tr, dir);
    if (s == BWT_STATUS_OK && bwt_snapshot_due(c, tr->step)) s = save_snapshot(tr, dir);
  }
  /* Whatever stopped the loop, the last good state is saved (unless a write itself failed). */
  if (s == BWT_STATUS_OK || s == BWT_STATUS_NUMERIC) {
    bwt_status cs = save_checkpoint(tr, dir);
    if (s == BWT_STATUS_OK) s = cs;
  }
  if (s == BWT_STATUS_OK && tr->step == c->steps) {
    bwt_eval_result_free(&r);
    s = evaluate_and_log(tr, log, log_path, &r);
    path_in(path, sizeof path, dir, "eval.json");
    if (s == BWT_STATUS_OK) s = bwt_eval_write_json(path, &r);
    path_in(path, sizeof path, dir, "positions.csv");
    if (s == BWT_STATUS_OK) s = bwt_eval_write_csv(path, &r);
    if (s == BWT_STATUS_OK && progress) {
      bwt_progress p = {tr->step, c->steps, NAN, NAN, NAN, 0, now_s() - t0, 0, &r};
      progress(ctx, &p);
    }
    bwt_eval_result_free(&tr->final);
    tr->final = r; /* the trainer keeps the final result */
    memset(&r, 0, sizeof r);
  }
  bwt_eval_result_free(&r);
  fclose(log);
  free(prev);
  return s;
}

/* Keeps the metrics.jsonl lines whose "step" is at most `step` (a resumed run repeats the rest). */
static bwt_status truncate_log(const char *path, int step) {
  if (!bwt_path_exists(path)) return BWT_STATUS_OK;
  char *text = NULL;
  size_t n = 0;
  BWT_TRY(bwt_read_file(path, &text, &n));
  size_t out = 0;
  for (char *line = text; *line;) {
    char *end = strchr(line, '\n');
    size_t len = end ? (size_t)(end - line) + 1 : strlen(line);
    char saved = line[len - (end ? 1 : 0)];
    line[len - (end ? 1 : 0)] = '\0';
    cJSON *o = cJSON_Parse(line);
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(o, "step");
    int keep = cJSON_IsNumber(st) && st->valuedouble <= step;
    cJSON_Delete(o);
    line[len - (end ? 1 : 0)] = saved;
    if (keep) memmove(text + out, line, len), out += len;
    line += len;
  }
  bwt_status s = bwt_write_file_atomic(path, text, out);
  free(text);
  return s;
}

bwt_status bwt_trainer_resume(bwt_trainer **out, const char *dir) {
  *out = NULL;
  char path[4096];
  path_in(path, sizeof path, dir, "checkpoint.safetensors");
  if (!bwt_path_exists(path)) return bwt_fail(BWT_STATUS_IO, "%s holds no checkpoint.safetensors to resume from", dir);
  bwt_run_config cfg;
  bwt_model *model = NULL;
  float *am = NULL, *av = NULL;
  int step = 0;
  BWT_TRY(bwt_checkpoint_load(path, &cfg, &model, &am, &av, &step));
  bwt_trainer *tr = NULL;
  bwt_status s = bwt_trainer_create(&tr, &cfg);
  if (s == BWT_STATUS_OK && step > cfg.train.steps)
    s = bwt_fail(BWT_STATUS_FORMAT, "%s: step %d is past the run's %d steps", path, step, cfg.train.steps);
  if (s == BWT_STATUS_OK) {
    size_t P = model->n_params;
    memcpy(tr->model->params, model->params, sizeof(float) * P);
    memcpy(tr->adam_m, am, sizeof(float) * P);
    memcpy(tr->adam_v, av, sizeof(float) * P);
    tr->step = step;
    path_in(path, sizeof path, dir, "metrics.jsonl");
    s = truncate_log(path, step);
  }
  bwt_model_free(model);
  free(am);
  free(av);
  if (s != BWT_STATUS_OK) {
    bwt_trainer_free(tr);
    return s;
  }
  *out = tr;
  return BWT_STATUS_OK;
}
