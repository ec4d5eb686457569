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
  cli_option opts[64];
  int n = 0;
  opts[n++] = (cli_option){"out", OPT_STRING, out, "run directory to create"};
  opts[n++] = (cli_option){"resume", OPT_STRING, resume, "continue the run in this directory (takes only --threads and --stop-after besides)"};
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
  if (*resume) {
    for (int i = 1; i < argc; i++) {
      const char *a = argv[i];
      if (strncmp(a, "--", 2) != 0) continue;
      if (strncmp(a, "--resume", 8) && strncmp(a, "--threads", 9) && strncmp(a, "--stop-after", 12)) {
        fprintf(stderr, "bwt train: --resume continues the run as configured; '%s' cannot be changed\n", a);
        return 2;
      }
    }
    dir = resume;
    if (bwt_trainer_resume(&tr, dir) != BWT_STATUS_OK) return cli_error("train");
    if (o.cfg.train.threads > 0) tr->cfg.train.threads = o.cfg.train.threads;
    bwt_set_threads(tr->cfg.train.threads);
    fprintf(stderr, "resuming %s at step %d of %d\n", dir, tr->step, tr->cfg.train.steps);
  } else {
    if ((rc = run_options_finish(&o, "train"))) return rc;
    if (bwt_run_dir_prepare(dir) != BWT_STATUS_OK) return cli_error("train");
    if (bwt_trainer_create(&tr, &o.cfg) != BWT_STATUS_OK) return cli_error("train");
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
