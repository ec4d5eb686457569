/* bwt: the Bayesian wind tunnel command line. Each subcommand lives in its own file. */
#include <stdio.h>
#include <string.h>

#include "bwt/checkpoint.h"
#include "commands.h"

static const struct {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *summary;
} commands[] = {
    {"demo", cmd_demo, "the main job: transformer vs context-free MLP on the bijection, against the exact posterior"},
    {"train", cmd_train, "train a model on a wind tunnel (or --resume a run directory)"},
    {"eval", cmd_eval, "evaluate a checkpoint against the exact posterior"},
    {"sample", cmd_sample, "export sequences with their exact posteriors as JSONL"},
    {"geometry", cmd_geometry, "the mechanism view of a transformer checkpoint: key frames, attention, value manifold"},
    {"ablate", cmd_ablate, "remove heads, branches and blocks one at a time; the change against the exact posterior"},
    {"dynamics", cmd_dynamics, "gradient dynamics of attention: check the routing law on a checkpoint's real backward"},
    {"reproduce", cmd_reproduce, "run a declared grid of experiments over seeds and tabulate it beside the papers"},
};

static void usage(FILE *f) {
  fprintf(f, "usage: bwt COMMAND [options]   (bwt COMMAND --help for its options)\n\ncommands:\n");
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
  fprintf(f, "\nbwt %s\n", bwt_code_version());
}

int main(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (strcmp(argv[1], "--version") == 0) {
    printf("bwt %s\n", bwt_code_version());
    return 0;
  }
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
  fprintf(stderr, "bwt: unknown command '%s' (see bwt --help)\n", argv[1]);
  return 2;
}
