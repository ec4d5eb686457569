/* bwt: the Bayesian wind tunnel command line. Each subcommand lives in its own file. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bwt/checkpoint.h"
#include "commands.h"
#include "parallel.h"

static const struct {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *summary;
  int many_ranks; /* runs as the ranks of an MPI job (the others take one process) */
} commands[] = {
    {"demo", cmd_demo, "the main job: transformer vs context-free MLP on the bijection, against the exact posterior"},
    {"train", cmd_train, "train a model on a wind tunnel (or --resume a run directory)", 1},
    {"eval", cmd_eval, "evaluate a checkpoint against the exact posterior"},
    {"sample", cmd_sample, "export sequences with their exact posteriors as JSONL"},
    {"geometry", cmd_geometry, "the mechanism view of a transformer checkpoint: key frames, attention, value manifold"},
    {"ablate", cmd_ablate, "remove heads, branches and blocks one at a time; the change against the exact posterior"},
    {"dynamics", cmd_dynamics, "gradient dynamics (Paper II): routing-law check, EM vs SGD, falsification, timescales, detector"},
    {"lm", cmd_lm, "language models (Hugging Face checkpoints): info, run, ppl, capture, tokenize"},
    {"reproduce", cmd_reproduce, "run a declared grid of experiments over seeds and tabulate it beside the papers", 1},
};

char *openblas_get_corename(void); /* OpenBLAS's own API (cblas.h is not on the CLI's include path) */

/* Debian's OpenBLAS 0.3.21 does not recognise some newer CPUs (seen here: a Xeon with AVX-512 FP16)
 * and falls back to its Prescott (SSE3) kernels, which makes every matrix product 2-3x slower. It
 * reads OPENBLAS_CORETYPE only when it loads, so when it has fallen back and the user has not
 * chosen a core, bwt names the kernels the CPU can run and starts itself again. A core the user
 * sets is always kept. */
static void choose_blas_core(char **argv) {
  if (getenv("OPENBLAS_CORETYPE") || strcmp(openblas_get_corename(), "Prescott") != 0) return;
  __builtin_cpu_init();
  const char *core = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")
                         ? "SkylakeX"
                     : __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? "Haswell"
                                                                                          : NULL;
  if (!core || setenv("OPENBLAS_CORETYPE", core, 1) != 0) return;
  execv("/proc/self/exe", argv); /* returns only on failure: then go on with Prescott */
  unsetenv("OPENBLAS_CORETYPE");
}

static void usage(FILE *f) {
  fprintf(f, "usage: bwt COMMAND [options]   (bwt COMMAND --help for its options)\n\ncommands:\n");
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
  fprintf(f, "\nbwt %s\n", bwt_code_version());
}

static int run(int argc, char **argv) {
  /* A file-size limit (ulimit -f) then fails the write with EFBIG, which bwt reports, keeping the
   * last good file, instead of killing the process without a word. */
  signal(SIGXFSZ, SIG_IGN);
  if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (strcmp(argv[1], "--version") == 0) {
    printf("bwt %s (OpenBLAS kernels: %s; %s build)\n", bwt_code_version(), openblas_get_corename(), parallel_kind());
    return 0;
  }
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
    if (strcmp(argv[1], commands[i].name) != 0) continue;
    if (parallel_size() > 1 && !commands[i].many_ranks) {
      fprintf(stderr, "bwt %s: runs as one process, not as %d MPI ranks (only train and reproduce use ranks; mpirun -np 1)\n",
              argv[1], parallel_size());
      return 2;
    }
    return commands[i].run(argc - 1, argv + 1);
  }
  fprintf(stderr, "bwt: unknown command '%s' (see bwt --help)\n", argv[1]);
  return 2;
}

int main(int argc, char **argv) {
  choose_blas_core(argv); /* before MPI starts: it may start the program again */
  parallel_init(&argc, &argv);
  /* The ranks of an MPI job all run the command; one of them speaks on standard output. */
  if (parallel_rank() != 0 && !freopen("/dev/null", "w", stdout)) return parallel_finish(1);
  return parallel_finish(run(argc, argv));
}
