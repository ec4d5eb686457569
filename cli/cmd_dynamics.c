/* bwt dynamics: the gradient-dynamics instruments of Paper II (SPEC.md §6). */
#include <stdio.h>
#include <string.h>

#include "bwt/checkpoint.h"
#include "bwt/dynamics.h"
#include "commands.h"
#include "options.h"

static const char *const experiments =
    "experiments:\n"
    "  verify CKPT|RUN_DIR   on real batches of the checkpoint's task, runs the backward pass with every\n"
    "                        block's attention traced and checks the two identities of the softmax\n"
    "                        Jacobian against the gradients the kernels computed:\n"
    "                          routing law   dL/ds_ij = a_ij (b_ij - sum_k a_ik b_ik),  b_ij = u_i . v_j\n"
    "                          values        dL/dv_j  = sum_i a_ij u_i\n"
    "                        (u_i = dL/do_i, the upstream gradient of the attention output). Prints the\n"
    "                        largest deviation per block; exits 1 if one exceeds --tol relative to the\n"
    "                        block's largest gradient.\n";

static int verify(int argc, char **argv) {
  int batches = 4, batch = 32, threads = 0;
  uint64_t seed = 0x5eed;
  double tol = 1e-4;
  cli_option opts[] = {
      {"batches", OPT_INT, &batches, "real batches checked"},
      {"batch", OPT_INT, &batch, "sequences per batch"},
      {"seed", OPT_U64, &seed, "batch stream seed"},
      {"tol", OPT_DOUBLE, &tol, "largest deviation allowed, relative to the block's largest gradient"},
      {"threads", OPT_INT, &threads, "threads (0 = environment)"},
  };
  cli_spec spec = {"dynamics verify", "CHECKPOINT|RUN_DIR [options]",
                   "Checks the routing law and the responsibility-weighted value gradient against the real\n"
                   "backward pass of every attention block (see bwt dynamics --help).",
                   opts, (int)(sizeof opts / sizeof *opts), 1, 1};
  const char *pos[1];
  int npos = 0, rc = cli_parse(&spec, argc, argv, pos, &npos);
  if (rc) return rc == 1 ? 0 : rc;
  if (batches < 1 || batch < 1 || threads < 0 || !(tol > 0)) {
    fprintf(stderr, "bwt dynamics verify: --batches and --batch must be >= 1, --tol > 0, --threads >= 0\n");
    return 2;
  }
  bwt_set_threads(threads);
  char path[4096], dir[4096];
  checkpoint_path(path, dir, sizeof path, pos[0]);
  bwt_run_config cfg;
  bwt_model *model = NULL;
  bwt_task *task = NULL;
  int step = 0;
  if (bwt_checkpoint_load(path, &cfg, &model, NULL, NULL, &step) != BWT_STATUS_OK) return cli_error("dynamics verify");
  bwt_dynamics_check c[256];
  bwt_status s = model->cfg.n_layers <= 256 ? bwt_task_create(&task, &cfg.task)
                                            : bwt_fail(BWT_STATUS_ARG, "more than 256 blocks");
  if (s == BWT_STATUS_OK) s = bwt_dynamics_verify(model, task, seed, batches, batch, c);
  int failed = 0;
  if (s == BWT_STATUS_OK) {
    printf("%s, step %d: %d batches of %d sequences, every head of every block\n", path, step, batches, batch);
    printf("%6s %14s %14s %10s %14s %14s %10s\n", "block", "routing |diff|", "max |dL/ds|", "relative",
           "values |diff|", "max |dL/dv|", "relative");
    for (int l = 0; l < model->cfg.n_layers; l++) {
      double rs = c[l].score_scale > 0 ? c[l].score_max_abs / c[l].score_scale : 0;
      double rv = c[l].value_scale > 0 ? c[l].value_max_abs / c[l].value_scale : 0;
      failed |= rs > tol || rv > tol;
      printf("%6d %14.3e %14.3e %10.2e %14.3e %14.3e %10.2e\n", l, c[l].score_max_abs, c[l].score_scale, rs,
             c[l].value_max_abs, c[l].value_scale, rv);
    }
    printf(failed ? "FAILED: a deviation exceeds %g of its block's largest gradient\n"
                  : "both identities hold to rounding (tolerance %g relative)\n", tol);
  }
  rc = s != BWT_STATUS_OK ? cli_error("dynamics verify") : failed;
  bwt_task_free(task);
  bwt_model_free(model);
  return rc;
}

int cmd_dynamics(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
    fprintf(argc < 2 ? stderr : stdout,
            "usage: bwt dynamics EXPERIMENT [options]   (bwt dynamics EXPERIMENT --help for its options)\n\n"
            "The gradient dynamics of attention (Paper II, SPEC.md section 6).\n\n%s",
            experiments);
    return argc < 2 ? 2 : 0;
  }
  if (strcmp(argv[1], "verify") == 0) return verify(argc - 1, argv + 1);
  fprintf(stderr, "bwt dynamics: unknown experiment '%s' (see bwt dynamics --help)\n", argv[1]);
  return 2;
}
