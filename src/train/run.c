/* A training run in its directory: config.json, metrics.jsonl, checkpoint.safetensors, snapshots/,
 * eval.json and positions.csv, under the directory's lock; and resuming one. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "bwt/checkpoint.h"
#include "bwt/fileio.h"
#include "bwt/kernels.h"
#include "bwt/report.h"
#include "io/report_json.h"
#include "metrics_log.h"
#include "train_observer.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void path_in(char *buf, size_t n, const char *dir, const char *file) {
  snprintf(buf, n, "%s/%s", dir, file);
}

bwt_status bwt_run_dir_prepare(const char *dir) {
  char path[4096];
  BWT_TRY(bwt_mkdir_p(dir));
  path_in(path, sizeof path, dir, "checkpoint.safetensors");
  if (bwt_path_exists(path))
    return bwt_fail(BWT_STATUS_ARG, "%s already holds a run (use --resume %s, or another --out)", dir, dir);
  return BWT_STATUS_OK;
}

bwt_status bwt_trainer_take_dir(bwt_trainer *tr, const char *dir) {
  if (tr->lock_fd >= 0) return BWT_STATUS_OK;
  if (!tr->resumed) BWT_TRY(bwt_mkdir_p(dir));
  BWT_TRY(bwt_dir_lock(dir, &tr->lock_fd));
  return tr->resumed ? BWT_STATUS_OK : bwt_run_dir_prepare(dir);
}

/* The step's checkpoint: the log first reaches the disk, so a checkpoint never covers lost lines. */
static bwt_status save_checkpoint(bwt_trainer *tr, const char *dir, metrics_log *log) {
  char path[4096];
  BWT_TRY(metrics_log_sync(log));
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

/* Evaluates on the held-out stream and logs it with the wall time of this invocation so far
 * (elapsed_s) and the part of it not spent in evaluations (train_s: the x axis of a time-to-accuracy
 * curve). *eval_s accumulates the time spent evaluating. The final evaluation's line says so. */
static bwt_status evaluate_and_log(bwt_trainer *tr, metrics_log *log, bwt_eval_result *r, double t0,
                                   double *eval_s, int final) {
  const bwt_train_config *c = &tr->cfg.train;
  double start = now_s();
  bwt_eval_result_free(r);
  BWT_TRY(bwt_evaluate(tr->model, tr->task, c->eval_seed, c->eval_seqs, c->batch, r));
  cJSON *o = cJSON_CreateObject();
  int ok = cJSON_AddNumberToObject(o, "step", tr->step) && (!final || cJSON_AddBoolToObject(o, "final", 1)) &&
           cJSON_AddNumberToObject(o, "elapsed_s", start - t0) &&
           cJSON_AddNumberToObject(o, "train_s", start - t0 - *eval_s) &&
           bwt_json_add(o, "eval", bwt_metrics_to_json(&r->overall)) &&
           cJSON_AddNumberToObject(o, "entropy_mae_curves", r->entropy_mae_curves);
  *eval_s += now_s() - start;
  return metrics_log_append(log, o, ok);
}

static int eval_due(const bwt_train_config *c, int step) {
  return c->eval_every > 0 && step > 0 && step % c->eval_every == 0 && step < c->steps;
}

bwt_status bwt_trainer_set_lr(bwt_trainer *tr, double lr) {
  bwt_train_config t = tr->cfg.train;
  t.lr = lr;
  bwt_run_config cfg = tr->cfg;
  cfg.train = t;
  BWT_TRY(bwt_run_config_check(&cfg));
  if (lr != tr->cfg.train.lr) tr->lr_before = tr->cfg.train.lr;
  tr->cfg.train.lr = lr;
  return BWT_STATUS_OK;
}

/* The instruments of every run, each one field of the logged steps' lines. */
static const train_observer *const observers[] = {&attention_observer};
#define N_OBSERVERS (sizeof observers / sizeof observers[0])

/* The log line of a step: loss, gradient norm, learning rate, speed, and each observer's field
 * (state: the observers' states, NULL for one with nothing to observe). */
static cJSON *step_line(const bwt_trainer *tr, const bwt_progress *p, void *const *state) {
  cJSON *o = cJSON_CreateObject();
  int ok = cJSON_AddNumberToObject(o, "step", tr->step) && cJSON_AddNumberToObject(o, "loss", p->loss) &&
           cJSON_AddNumberToObject(o, "grad_norm", p->grad_norm) && cJSON_AddNumberToObject(o, "lr", p->lr) &&
           cJSON_AddNumberToObject(o, "tokens_per_s", p->tokens_per_s) &&
           cJSON_AddNumberToObject(o, "elapsed_s", p->elapsed_s);
  for (size_t i = 0; ok && i < N_OBSERVERS; i++)
    if (state[i]) ok = bwt_json_add(o, observers[i]->key, observers[i]->after_step(state[i], tr->model));
  if (!ok) cJSON_Delete(o);
  return ok ? o : NULL;
}

/* Whether the loop stops before the next step: on the request of this process, or in a data-parallel
 * run on what every process agreed during the last step (so all stop after the same one). */
static int stop_now(const bwt_trainer *tr) { return tr->dp.size > 1 ? tr->stop_agreed : bwt_stop_requested(); }

static int stop_step(const bwt_trainer *tr) {
  const bwt_train_config *c = &tr->cfg.train;
  return tr->stop_after > 0 && tr->stop_after < c->steps ? tr->stop_after : c->steps;
}

/* Whether every process takes another step: rank 0's word (go), told to the others through the
 * gradient sum with no gradients. Rank 0 says it before each step and once when it stops for any
 * reason, so that no process waits in a sum the others never reach. */
static int all_go(bwt_trainer *tr, int go) {
  if (tr->dp.size == 1) return go;
  double word = tr->dp.rank == 0 && go;
  return tr->dp.sum(tr->dp.ctx, NULL, 0, &word, 1) == BWT_STATUS_OK && word > 0;
}

/* A data-parallel process other than rank 0: the steps rank 0 says to take, nothing written. */
static bwt_status follow_run(bwt_trainer *tr) {
  while (all_go(tr, 0)) {
    double loss, gnorm, lr;
    BWT_TRY(bwt_trainer_step(tr, &loss, &gnorm, &lr));
  }
  return BWT_STATUS_OK;
}

bwt_status bwt_train_run(bwt_trainer *tr, const char *dir, bwt_progress_fn progress, void *ctx) {
  if (tr->dp.rank != 0) return follow_run(tr);
  const bwt_train_config *c = &tr->cfg.train;
  char path[4096];
  BWT_TRY(bwt_trainer_take_dir(tr, dir));
  char *config = bwt_run_config_to_json(&tr->cfg);
  path_in(path, sizeof path, dir, "config.json");
  bwt_status s = config ? bwt_write_file_atomic(path, config, strlen(config)) : bwt_fail(BWT_STATUS_NOMEM, "out of memory writing %s", path);
  free(config);
  BWT_TRY(s);
  metrics_log log;
  BWT_TRY(metrics_log_open(&log, dir, !tr->resumed));

  int stop_at = stop_step(tr);
  double t0 = now_s(), t_last = t0, eval_s = 0;
  int step_last = tr->step, start = tr->step;
  long tokens_per_step = (long)c->batch * tr->batch.T; /* over every process of a data-parallel run */
  bwt_eval_result r;
  memset(&r, 0, sizeof r);
  int saved_at = tr->resumed ? tr->step : -1; /* the step of the checkpoint on disk */
  if (tr->lr_before > 0) { /* a resume with a new learning rate: the log and the checkpoint record it */
    cJSON *o = cJSON_CreateObject();
    int ok = cJSON_AddNumberToObject(o, "step", tr->step) && cJSON_AddNumberToObject(o, "lr_changed_from", tr->lr_before) &&
             cJSON_AddNumberToObject(o, "lr_changed_to", c->lr);
    s = metrics_log_append(&log, o, ok);
    if (s == BWT_STATUS_OK) s = save_checkpoint(tr, dir, &log);
    tr->lr_before = 0;
  }
  /* A periodic evaluation that a stop cut short is made up before going on. */
  if (s == BWT_STATUS_OK && tr->resumed && !tr->eval_logged && eval_due(c, tr->step))
    s = evaluate_and_log(tr, &log, &r, t0, &eval_s, 0);
  void *state[N_OBSERVERS] = {NULL};
  for (size_t i = 0; s == BWT_STATUS_OK && i < N_OBSERVERS; i++) s = observers[i]->open(tr->model, &state[i]);
  /* A stop requested before the loop (a Ctrl-C during start-up) is kept: the run saves its step. */
  while (all_go(tr, s == BWT_STATUS_OK && tr->step < stop_at && !stop_now(tr))) {
    double loss, gnorm, lr;
    /* Lines follow the run's own schedule, never where a run happens to stop: a run stopped and
     * resumed writes the same lines as one that was not. A step's line comes before its evaluation,
     * so a stop during the evaluation (which the resume makes up) loses no line. */
    int logged = (tr->step + 1) % c->log_every == 0 || tr->step + 1 == c->steps;
    for (size_t i = 0; logged && i < N_OBSERVERS; i++)
      if (state[i]) observers[i]->before_step(state[i], tr->model);
    s = bwt_trainer_step(tr, &loss, &gnorm, &lr);
    if (s != BWT_STATUS_OK) break;
    double t = now_s();
    bwt_progress p = {tr->step, c->steps, loss, gnorm, lr, 0, t - t0, 0, NULL};
    p.tokens_per_s = t > t_last ? (double)(tr->step - step_last) * tokens_per_step / (t - t_last) : 0;
    p.eta_s = (t - t0) / (tr->step - start) * (c->steps - tr->step);
    if (logged) s = metrics_log_append(&log, step_line(tr, &p, state), 1);
    int evaluated = eval_due(c, tr->step);
    if (s == BWT_STATUS_OK && evaluated) {
      s = evaluate_and_log(tr, &log, &r, t0, &eval_s, 0);
      p.eval = &r;
    }
    if (s == BWT_STATUS_OK && (logged || tr->step == stop_at || evaluated)) {
      t_last = t;
      step_last = tr->step;
      if (progress) progress(ctx, &p);
    }
    if (s == BWT_STATUS_OK && c->ckpt_every > 0 && tr->step % c->ckpt_every == 0) {
      s = save_checkpoint(tr, dir, &log);
      saved_at = tr->step;
    }
    if (s == BWT_STATUS_OK && bwt_snapshot_due(c, tr->step)) s = save_snapshot(tr, dir);
  }
  /* Whatever stopped the loop, the last good state is saved (unless a write itself failed, or it is
   * on disk already): a diverged step leaves the weights as they were, a stop during an evaluation
   * leaves a step whose evaluation the resume makes up. */
  if ((s == BWT_STATUS_OK || s == BWT_STATUS_NUMERIC || s == BWT_STATUS_STOPPED) && saved_at != tr->step) {
    char why[512];
    snprintf(why, sizeof why, "%s", bwt_last_error());
    bwt_status cs = save_checkpoint(tr, dir, &log);
    if (s == BWT_STATUS_OK) s = cs;
    else if (cs == BWT_STATUS_OK) bwt_fail(s, "%s", why); /* keep the message of what stopped the run */
  }
  if (s == BWT_STATUS_OK && tr->step == c->steps) {
    s = evaluate_and_log(tr, &log, &r, t0, &eval_s, 1);
    path_in(path, sizeof path, dir, "eval.json");
    if (s == BWT_STATUS_OK) s = bwt_eval_write_json(path, &r);
    path_in(path, sizeof path, dir, "positions.csv");
    if (s == BWT_STATUS_OK) s = bwt_eval_write_csv(path, &r);
    if (s == BWT_STATUS_OK) s = metrics_log_sync(&log);
    if (s == BWT_STATUS_OK && progress) {
      bwt_progress p = {tr->step, c->steps, NAN, NAN, NAN, 0, now_s() - t0, 0, &r};
      progress(ctx, &p);
    }
    if (s == BWT_STATUS_OK) {
      bwt_eval_result_free(&tr->final);
      tr->final = r; /* the trainer keeps the final result */
      memset(&r, 0, sizeof r);
    }
  }
  bwt_eval_result_free(&r);
  metrics_log_close(&log);
  for (size_t i = 0; i < N_OBSERVERS; i++)
    if (state[i]) observers[i]->close(state[i]);
  return s;
}

bwt_status bwt_trainer_resume(bwt_trainer **out, const char *dir) {
  *out = NULL;
  char path[4096];
  int lock = -1;
  path_in(path, sizeof path, dir, "checkpoint.safetensors");
  if (!bwt_path_exists(path))
    return bwt_fail(BWT_STATUS_IO, "%s holds no checkpoint.safetensors to resume from (start a run there with --out %s)", dir, dir);
  /* The lock before reading: nobody else may be writing the run while it is read and its log repaired. */
  BWT_TRY(bwt_dir_lock(dir, &lock));
  bwt_run_config cfg;
  bwt_model *model = NULL;
  float *am = NULL, *av = NULL;
  int step = 0;
  bwt_status s = bwt_checkpoint_load(path, &cfg, &model, &am, &av, &step);
  bwt_trainer *tr = NULL;
  /* The weights come from the checkpoint: a run started --init-from another needs that one no more. */
  bwt_run_config fresh = cfg;
  fresh.train.init_from[0] = '\0';
  if (s == BWT_STATUS_OK) s = bwt_trainer_create(&tr, &fresh);
  if (s == BWT_STATUS_OK) {
    size_t P = model->n_params;
    memcpy(tr->cfg.train.init_from, cfg.train.init_from, sizeof cfg.train.init_from);
    bwt_copy(tr->model->params, model->params, P);
    bwt_copy(tr->adam_m, am, P);
    bwt_copy(tr->adam_v, av, P);
    tr->step = step;
    tr->resumed = 1;
    tr->lock_fd = lock;
    lock = -1;
    s = metrics_log_repair(dir, step, tr->notes, sizeof tr->notes, &tr->eval_logged);
  }
  bwt_model_free(model);
  free(am);
  free(av);
  bwt_dir_unlock(lock);
  if (s != BWT_STATUS_OK) {
    bwt_trainer_free(tr);
    return s;
  }
  *out = tr;
  return BWT_STATUS_OK;
}
