/* bwt eval: a checkpoint against the exact posterior on a held-out stream. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/checkpoint.h"
#include "bwt/fileio.h"
#include "bwt/report.h"
#include "commands.h"
#include "options.h"

static void print_result(const bwt_eval_result *r, int per_position) {
  const bwt_metrics *m = &r->overall;
  printf("held-out sequences %ld (seed %llu), supervised rows %ld\n", r->n_seqs, (unsigned long long)r->seed, m->n);
  printf("entropy MAE            %.6f bits\n", m->entropy_mae);
  printf("entropy MAE (renorm)   %.6f bits   (p renormalised over the answer slice)\n", m->entropy_mae_renorm);
  printf("entropy MAE (curves)   %.6f bits   (|mean H(p) - mean H(q)| per position, averaged)\n", r->entropy_mae_curves);
  printf("KL(q||p)               %.6f bits\n", m->kl_bits);
  printf("total variation        %.6f\n", m->tv);
  printf("cross-entropy          %.6f bits   (Bayes floor %.6f, excess %.6f)\n", m->ce_bits, m->bayes_entropy, m->excess_ce_bits);
  if (m->n_point_mass) printf("accuracy               %.4f       (%ld point-mass rows)\n", m->accuracy, m->n_point_mass);
  if (!per_position) return;
  printf("\n%4s %10s %10s %10s %10s %10s\n", "pos", "H(model)", "H(Bayes)", "|dH|", "KL", "TV");
  for (int j = 0; j < r->n_pos; j++) {
    const bwt_metrics *p = &r->pos[j];
    printf("%4d %10.5f %10.5f %10.6f %10.6f %10.6f\n", j, p->model_entropy, p->bayes_entropy, p->entropy_mae, p->kl_bits, p->tv);
  }
}

int cmd_eval(int argc, char **argv) {
  int eval_seqs = 0, batch = 0, threads = -1, per_position = 0;
  uint64_t eval_seed = 0;
  char json[OPT_STRING_MAX] = "", csv[OPT_STRING_MAX] = "";
  run_options given; /* only its task part: the overrides */
  task_overrides_init(&given);
  cli_option opts[RUN_OPTIONS_MAX] = {
      {"eval-seqs", OPT_INT, &eval_seqs, "held-out sequences (0 = the run's eval-seqs)"},
      {"eval-seed", OPT_U64, &eval_seed, "held-out stream seed (0 = the run's eval-seed)"},
      {"batch", OPT_INT, &batch, "sequences per forward pass (0 = the run's batch; speed and memory only: the sequences scored do not change)"},
      {"per-position", OPT_FLAG, &per_position, "also print the per-position table"},
      {"json", OPT_STRING, json, "write the result as JSON to this file"},
      {"csv", OPT_STRING, csv, "write the per-position metrics as CSV to this file"},
      threads_option(&threads, "threads (-1 = the run's, 0 = environment)"),
  };
  int n_opts = 7;
  n_opts += task_options(opts + n_opts, &given);
  cli_spec spec = {"eval", "CHECKPOINT|RUN_DIR [options]",
                   "Evaluates a checkpoint against the exact posterior of its task on a held-out stream:\n"
                   "entropy MAE (three variants), KL(q||p), TV, accuracy and excess cross-entropy, in bits.\n"
                   "Task options replace the checkpoint's task settings, e.g. --K 50 for an HMM model trained\n"
                   "at K=20 (longer sequences need --positions sinusoidal or --max-T at training).",
                   opts, n_opts, 1, 1};
  const char *pos[1];
  int npos = 0, rc = cli_parse(&spec, argc, argv, pos, &npos);
  if (rc) return rc == 1 ? 0 : rc;
  if (eval_seqs < 0 || batch < 0 || threads < -1 || threads > 1024) {
    fprintf(stderr, "bwt eval: --eval-seqs and --batch must be >= 0, --threads in -1..1024\n");
    return 2;
  }
  /* By default the run's own batch and threads: then RUN/eval.json is reproduced to the bit. */
  bwt_run run;
  if (bwt_run_open(&run, pos[0], threads, BWT_RUN_THREADS_AFTER | BWT_RUN_NO_TASK) != BWT_STATUS_OK) return cli_error("eval");
  const bwt_run_config *cfg = &run.cfg;
  if (batch == 0) batch = cfg->train.batch;
  if ((rc = task_overrides_apply(&run.cfg.task, &given.cfg.task, "eval"))) {
    bwt_run_close(&run);
    return rc;
  }
  bwt_eval_result r;
  memset(&r, 0, sizeof r);
  bwt_status s = bwt_run_create_task(&run);
  if (s == BWT_STATUS_OK)
    s = bwt_evaluate(run.model, run.task, eval_seed ? eval_seed : cfg->train.eval_seed,
                     eval_seqs ? eval_seqs : cfg->train.eval_seqs, batch, &r);
  if (s == BWT_STATUS_OK) {
    char desc[128];
    printf("%s: %s on %s, step %d\n", run.path, bwt_arch_name(cfg->model.arch),
           bwt_task_config_describe(&cfg->task, desc, sizeof desc), run.step);
    print_result(&r, per_position);
    if (*json) s = bwt_eval_write_json(json, &r);
    if (s == BWT_STATUS_OK && *csv) s = bwt_eval_write_csv(csv, &r);
  }
  rc = s == BWT_STATUS_OK ? 0 : cli_error("eval");
  bwt_eval_result_free(&r);
  bwt_run_close(&run);
  return rc;
}
