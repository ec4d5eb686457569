/* bwt train: train a model on a wind tunnel into a run directory, or continue one (--resume); under
 * mpirun (the MPI build) data-parallel over the ranks: rank 0 opens the run as one process would and
 * hands the others its configuration and state (docs/cluster.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/checkpoint.h"
#include "commands.h"
#include "options.h"
#include "parallel.h"
#include "progress.h"

/* The other ranks get rank 0's outcome (rc), then its configuration and state, and every rank its
 * share of the batch. Returns the exit code. */
static int share_trainer(bwt_trainer **tr, int rc) {
  int rank = parallel_rank();
  bwt_status s = parallel_broadcast(&rc, sizeof rc);
  if (s != BWT_STATUS_OK) return cli_error("train");
  if (rc) return rc; /* rank 0 said why */
  char *json = rank == 0 ? bwt_run_config_to_json(&(*tr)->cfg) : NULL;
  size_t len = json ? strlen(json) + 1 : 0;
  if (rank == 0 && !json) parallel_abort(1);
  s = parallel_broadcast(&len, sizeof len);
  if (s == BWT_STATUS_OK && rank != 0 && !(json = calloc(len, 1))) s = bwt_fail(BWT_STATUS_NOMEM, "out of memory");
  if (s == BWT_STATUS_OK) s = parallel_broadcast(json, len);
  if (s == BWT_STATUS_OK && rank != 0) {
    bwt_run_config cfg;
    s = bwt_run_config_from_json(&cfg, json, "rank 0's configuration");
    cfg.train.init_from[0] = '\0'; /* the weights come from rank 0 */
    if (s == BWT_STATUS_OK) s = bwt_trainer_create(tr, &cfg);
  }
  free(json);
  if (s == BWT_STATUS_OK) {
    bwt_trainer *t = *tr;
    size_t P = t->model->n_params * sizeof(float);
    s = parallel_broadcast(&t->step, sizeof t->step);
    if (s == BWT_STATUS_OK) s = parallel_broadcast(t->model->params, P);
    if (s == BWT_STATUS_OK) s = parallel_broadcast(t->adam_m, P);
    if (s == BWT_STATUS_OK) s = parallel_broadcast(t->adam_v, P);
    bwt_data_parallel dp = {.rank = rank, .size = parallel_size(), .sum = parallel_sum};
    if (s == BWT_STATUS_OK) s = bwt_trainer_set_parallel(t, &dp);
  }
  if (s == BWT_STATUS_OK) return 0;
  fprintf(stderr, "bwt train: rank %d: %s\n", rank, bwt_last_error());
  parallel_abort(1); /* the other ranks wait in a broadcast */
}

/* A data-parallel run's end: every rank waits for the others unless this one left its steps out of
 * turn (the others then wait in a sum it will never join: stop them all). */
static int finish_ranks(const bwt_trainer *tr, int rc) {
  if (tr->out_of_step) {
    fprintf(stderr, "bwt train: rank %d failed during a step (%s); stopping every rank\n", parallel_rank(), bwt_last_error());
    parallel_abort(rc ? rc : 1);
  }
  parallel_barrier();
  long sums;
  double seconds, bytes;
  parallel_sum_stats(&sums, &seconds, &bytes);
  if (parallel_rank() == 0 && sums > 0)
    fprintf(stderr, "gradient sums over %d ranks: %ld, %.2f ms and %.3f MB each\n", parallel_size(), sums,
            1e3 * seconds / sums, bytes / sums / 1e6);
  return rc;
}

/* Rank 0 (or the only process): the trainer of a fresh run, or of the run to resume, holding the run
 * directory. Returns the exit code. */
static int open_trainer(const cli_spec *spec, run_options *o, const char *dir, bwt_trainer **out) {
  int rc;
  bwt_trainer *tr = NULL;
  if (cli_given(spec, "resume")) {
    /* A resumed run keeps its configuration; only how it runs (threads, where it stops) and, to
     * continue past a divergence, the learning rate may change. */
    static const char *const allowed[] = {"resume", "threads", "stop-after", "lr"};
    for (int k = 0; k < spec->n_opts; k++) {
      const cli_option *opt = &spec->opts[k];
      int ok = !opt->given;
      for (size_t i = 0; i < sizeof allowed / sizeof *allowed; i++) ok |= strcmp(opt->name, allowed[i]) == 0;
      if (!ok) {
        fprintf(stderr, "bwt train: --resume continues the run as configured; --%s cannot be changed (only --threads, --stop-after and --lr)\n", opt->name);
        return 2;
      }
    }
    if (bwt_trainer_resume(&tr, dir) != BWT_STATUS_OK) return cli_error("train");
    double old_lr = tr->cfg.train.lr;
    if (cli_given(spec, "lr") && bwt_trainer_set_lr(tr, o->cfg.train.lr) != BWT_STATUS_OK) {
      bwt_trainer_free(tr);
      return cli_error("train") + 1;
    }
    if (cli_given(spec, "threads")) tr->cfg.train.threads = o->cfg.train.threads;
    if (bwt_set_threads(tr->cfg.train.threads) != BWT_STATUS_OK) {
      bwt_trainer_free(tr);
      return cli_error("train");
    }
    fprintf(stderr, "resuming %s at step %d of %d", dir, tr->step, tr->cfg.train.steps);
    if (tr->cfg.train.lr != old_lr) fprintf(stderr, ", learning rate %g (was %g)", tr->cfg.train.lr, old_lr);
    fprintf(stderr, "\n");
  } else {
    if ((rc = run_options_finish(o, "train")) || (rc = run_options_check_given(spec, o, "train"))) return rc;
    if (bwt_run_dir_prepare(dir) != BWT_STATUS_OK) return cli_error("train");
    if (bwt_trainer_create(&tr, &o->cfg) != BWT_STATUS_OK) return cli_error("train");
    if (bwt_trainer_take_dir(tr, dir) != BWT_STATUS_OK) {
      bwt_trainer_free(tr);
      return cli_error("train");
    }
    char task[128];
    fprintf(stderr, "training %s (%zu parameters) on %s for %d steps, batch %d, into %s\n",
            bwt_arch_name(o->cfg.model.arch), tr->model->n_params,
            bwt_task_config_describe(&o->cfg.task, task, sizeof task), o->cfg.train.steps, o->cfg.train.batch, dir);
  }
  *out = tr;
  return 0;
}

int cmd_train(int argc, char **argv) {
  run_options o;
  run_options_default(&o);
  char out[OPT_STRING_MAX] = "runs/train", resume[OPT_STRING_MAX] = "";
  int stop_after = 0;
  cli_option opts[RUN_OPTIONS_MAX];
  int n = 0;
  opts[n++] = (cli_option){"out", OPT_STRING, out, "run directory to create"};
  opts[n++] = (cli_option){"resume", OPT_STRING, resume, "continue the run in this directory (takes only --threads, --stop-after and --lr besides)"};
  opts[n++] = (cli_option){"stop-after", OPT_INT, &stop_after, "stop (with a checkpoint) after this step; 0 = run to the end"};
  n += task_options(opts + n, &o);
  n += model_options(opts + n, &o);
  n += train_options(opts + n, &o);
  cli_spec spec = {"train", "[options]",
                   "Trains a model on a wind tunnel. The run directory gets config.json, metrics.jsonl,\n"
                   "checkpoint.safetensors (atomic, every --ckpt-every steps), eval.json and positions.csv.\n"
                   "Ctrl-C stops after the current step with a checkpoint; --resume continues bit-exactly.",
                   opts, n, 0, 0};
  if (run_options_preset(&o, argc, argv, "train")) return 2;
  const char *pos[1];
  int npos = 0, rc = cli_parse(&spec, argc, argv, pos, &npos);
  if (rc) return rc == 1 ? 0 : rc;
  if (stop_after < 0) {
    fprintf(stderr, "bwt train: --stop-after must be >= 0 (got %d)\n", stop_after);
    return 2;
  }

  bwt_trainer *tr = NULL;
  const char *dir = cli_given(&spec, "resume") ? resume : out;
  int ranks = parallel_size();
  if (parallel_rank() == 0) rc = open_trainer(&spec, &o, dir, &tr);
  if (ranks > 1) rc = share_trainer(&tr, rc);
  if (rc) return rc;
  tr->stop_after = stop_after;
  if (parallel_rank() == 0) {
    if (ranks > 1) fprintf(stderr, "data-parallel over %d MPI ranks: %d sequences each of the batch of %d\n", ranks, tr->batch.B, tr->cfg.train.batch);
    rc = train_with_progress(tr, dir, bwt_arch_name(tr->cfg.model.arch), "train");
  } else {
    progress_catch_interrupt(); /* mpirun's Ctrl-C reaches every rank as SIGTERM */
    if (bwt_train_run(tr, dir, NULL, NULL) != BWT_STATUS_OK && !tr->out_of_step)
      rc = 1; /* the same failure as rank 0's after their sum (a diverged step): rank 0 reports it */
  }
  if (ranks > 1) rc = finish_ranks(tr, rc);
  bwt_trainer_free(tr);
  return rc;
}
