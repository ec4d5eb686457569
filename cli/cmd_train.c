/* bwt train: train a model on a wind tunnel into a run directory, or continue one (--resume). */
#include <stdio.h>
#include <string.h>

#include "bwt/checkpoint.h"
#include "commands.h"
#include "options.h"
#include "progress.h"

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
  const char *dir = out;
  if (cli_given(&spec, "resume")) {
    /* A resumed run keeps its configuration; only how it runs (threads, where it stops) and, to
     * continue past a divergence, the learning rate may change. */
    static const char *const allowed[] = {"resume", "threads", "stop-after", "lr"};
    for (int k = 0; k < n; k++) {
      int ok = !opts[k].given;
      for (size_t i = 0; i < sizeof allowed / sizeof *allowed; i++) ok |= strcmp(opts[k].name, allowed[i]) == 0;
      if (!ok) {
        fprintf(stderr, "bwt train: --resume continues the run as configured; --%s cannot be changed (only --threads, --stop-after and --lr)\n", opts[k].name);
        return 2;
      }
    }
    dir = resume;
    if (bwt_trainer_resume(&tr, dir) != BWT_STATUS_OK) return cli_error("train");
    double old_lr = tr->cfg.train.lr;
    if (cli_given(&spec, "lr") && bwt_trainer_set_lr(tr, o.cfg.train.lr) != BWT_STATUS_OK) {
      bwt_trainer_free(tr);
      return cli_error("train") + 1;
    }
    if (cli_given(&spec, "threads")) tr->cfg.train.threads = o.cfg.train.threads;
    if (bwt_set_threads(tr->cfg.train.threads) != BWT_STATUS_OK) {
      bwt_trainer_free(tr);
      return cli_error("train");
    }
    fprintf(stderr, "resuming %s at step %d of %d", dir, tr->step, tr->cfg.train.steps);
    if (tr->cfg.train.lr != old_lr) fprintf(stderr, ", learning rate %g (was %g)", tr->cfg.train.lr, old_lr);
    fprintf(stderr, "\n");
  } else {
    if ((rc = run_options_finish(&o, "train")) || (rc = run_options_check_given(&spec, &o, "train"))) return rc;
    if (bwt_run_dir_prepare(dir) != BWT_STATUS_OK) return cli_error("train");
    if (bwt_trainer_create(&tr, &o.cfg) != BWT_STATUS_OK) return cli_error("train");
    if (bwt_trainer_take_dir(tr, dir) != BWT_STATUS_OK) {
      bwt_trainer_free(tr);
      return cli_error("train");
    }
    char task[128];
    fprintf(stderr, "training %s (%zu parameters) on %s for %d steps, batch %d, into %s\n",
            bwt_arch_name(o.cfg.model.arch), tr->model->n_params,
            bwt_task_config_describe(&o.cfg.task, task, sizeof task), o.cfg.train.steps,
            o.cfg.train.batch, dir);
  }
  tr->stop_after = stop_after;
  rc = train_with_progress(tr, dir, bwt_arch_name(tr->cfg.model.arch), "train");
  bwt_trainer_free(tr);
  return rc;
}
