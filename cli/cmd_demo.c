/* bwt demo: the main job. Trains a transformer and the context-free MLP on the bijection wind
 * tunnel and prints, side by side, how far each is from the exact Bayesian posterior. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "bwt/fileio.h"
#include "io/report_json.h"
#include "commands.h"
#include "options.h"
#include "progress.h"

typedef struct {
  const char *label;
  bwt_run_config cfg;
  bwt_eval_result result;
  size_t n_params;
} demo_arm;

/* Trains one arm in dir (resuming a run left there by an earlier demo with the same config). */
static int run_arm(demo_arm *arm, const char *dir) {
  char ckpt[4096];
  snprintf(ckpt, sizeof ckpt, "%s/checkpoint.safetensors", dir);
  bwt_trainer *tr = NULL;
  if (bwt_path_exists(ckpt)) {
    if (bwt_trainer_resume(&tr, dir) != BWT_STATUS_OK) return cli_error("demo");
    char *want = bwt_run_config_to_json(&arm->cfg), *have = bwt_run_config_to_json(&tr->cfg);
    int same = want && have && strcmp(want, have) == 0;
    free(want);
    free(have);
    if (!same) {
      bwt_trainer_free(tr);
      fprintf(stderr, "bwt demo: %s holds a run with other settings; use another --out\n", dir);
      return 1;
    }
    fprintf(stderr, "%s: continuing %s at step %d\n", arm->label, dir, tr->step);
  } else if (bwt_trainer_create(&tr, &arm->cfg) != BWT_STATUS_OK) {
    return cli_error("demo");
  }
  arm->n_params = tr->model->n_params;
  fprintf(stderr, "%s: %zu parameters, %d steps of batch %d\n", arm->label, arm->n_params,
          arm->cfg.train.steps, arm->cfg.train.batch);
  int rc = train_with_progress(tr, dir, arm->label, "demo");
  if (rc == 0) {
    arm->result = tr->final; /* the run's final held-out evaluation */
    memset(&tr->final, 0, sizeof tr->final);
  }
  bwt_trainer_free(tr);
  return rc;
}

int cmd_demo(int argc, char **argv) {
  char out[OPT_STRING_MAX] = "runs/demo";
  int V = 20, steps = 10000, mlp_steps = 1000, threads = 0, eval_seqs = 2000, d_model = 64, layers = 2,
      heads = 4, batch = 64, soft = 0;
  double lr = 1e-3;
  uint64_t seed = 1;
  cli_option opts[] = {
      {"out", OPT_STRING, out, "directory for the two runs (an unfinished demo there is continued)"},
      {"V", OPT_INT, &V, "bijection domain size (L = V-1 keys)"},
      {"steps", OPT_INT, &steps, "transformer training steps"},
      {"mlp-steps", OPT_INT, &mlp_steps, "context-free MLP training steps (it plateaus early)"},
      {"d-model", OPT_INT, &d_model, "transformer width"},
      {"layers", OPT_INT, &layers, "transformer blocks"},
      {"heads", OPT_INT, &heads, "transformer heads"},
      {"batch", OPT_INT, &batch, "sequences per step"},
      {"lr", OPT_DOUBLE, &lr, "peak learning rate"},
      {"soft-targets", OPT_FLAG, &soft, "train against the exact posterior (faster, tighter) instead of sampled tokens"},
      {"seed", OPT_U64, &seed, "seed of weights and batches"},
      {"eval-seqs", OPT_INT, &eval_seqs, "held-out sequences for the final table"},
      threads_option(&threads, NULL),
  };
  cli_spec spec = {"demo", "[options]",
                   "The main job: trains a transformer and the context-free MLP (the papers' control) on\n"
                   "the bijection wind tunnel and prints entropy MAE and KL of each against the exact\n"
                   "posterior. The MLP should sit at its analytic plateau; the transformer far below it.",
                   opts, (int)(sizeof opts / sizeof opts[0]), 0, 0};
  const char *pos[1];
  int npos = 0, rc = cli_parse(&spec, argc, argv, pos, &npos);
  if (rc) return rc == 1 ? 0 : rc;

  demo_arm arms[2];
  memset(arms, 0, sizeof arms);
  const char *labels[2] = {"transformer", "mlp"};
  for (int a = 0; a < 2; a++) {
    run_options o;
    run_options_default(&o);
    o.cfg.task.V = V;
    o.cfg.task.L = V - 1;
    strcpy(o.arch, labels[a]);
    o.cfg.model.d_model = d_model;
    o.cfg.model.n_layers = a == 0 ? layers : 4;
    o.cfg.model.n_heads = heads;
    bwt_train_config *t = &o.cfg.train;
    t->steps = a == 0 ? steps : mlp_steps;
    t->batch = batch;
    t->lr = lr;
    t->soft_targets = soft;
    t->warmup = t->steps / 20;
    t->seed = seed;
    t->eval_seqs = eval_seqs;
    t->threads = threads;
    t->ckpt_every = 500;
    t->log_every = 25;
    t->eval_every = a == 0 ? steps / 6 : 0;
    if ((rc = run_options_finish(&o, "demo"))) return rc;
    arms[a].label = labels[a];
    arms[a].cfg = o.cfg;
  }
  if (bwt_mkdir_p(out) != BWT_STATUS_OK) return cli_error("demo");
  for (int a = 0; a < 2 && rc == 0; a++) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/%s", out, labels[a]);
    rc = run_arm(&arms[a], dir);
  }
  if (rc == 0) {
    /* log2 V − (1/L)Σ_t log2(V − t): where a model that cannot see its context must sit. */
    int L = V - 1;
    double plateau = log2((double)V), mean_hq = 0;
    for (int t = 0; t < L; t++) mean_hq += log2((double)(V - t)) / L;
    plateau -= mean_hq;
    printf("\nbijection V=%d L=%d: held-out %d sequences, against the exact posterior (bits)\n", V, L, eval_seqs);
    printf("%-12s %10s %7s %12s %12s %12s %10s\n", "model", "params", "steps", "entropy MAE", "KL(q||p)", "MAE renorm", "TV");
    for (int a = 0; a < 2; a++) {
      const bwt_metrics *m = &arms[a].result.overall;
      printf("%-12s %10zu %7d %12.5f %12.5f %12.5f %10.5f\n", labels[a], arms[a].n_params,
             arms[a].cfg.train.steps, m->entropy_mae, m->kl_bits, m->entropy_mae_renorm, m->tv);
    }
    double ratio = arms[1].result.overall.entropy_mae / arms[0].result.overall.entropy_mae;
    printf("analytic plateau of a context-free model: %.5f bits\n", plateau);
    printf("entropy MAE ratio mlp/transformer: %.1fx\n", ratio);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "V", V);
    cJSON_AddNumberToObject(o, "analytic_mlp_plateau_bits", plateau);
    cJSON_AddNumberToObject(o, "mae_ratio_mlp_over_transformer", ratio);
    for (int a = 0; a < 2; a++) cJSON_AddItemToObject(o, labels[a], bwt_eval_to_json(&arms[a].result));
    char *text = cJSON_Print(o), path[4096];
    cJSON_Delete(o);
    snprintf(path, sizeof path, "%s/summary.json", out);
    if (!text || bwt_write_file_atomic(path, text, strlen(text)) != BWT_STATUS_OK) rc = cli_error("demo");
    else printf("written: %s\n", path);
    free(text);
  }
  for (int a = 0; a < 2; a++) bwt_eval_result_free(&arms[a].result);
  return rc;
}
