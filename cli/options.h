/* Table-driven long options: every subcommand declares its options once, and the same table
 * parses argv and prints --help with each option's default (its value before parsing). */
#ifndef BWT_CLI_OPTIONS_H
#define BWT_CLI_OPTIONS_H

#include <limits.h>
#include <stdint.h>
#include <stdio.h>

#include "bwt/train.h"

typedef enum { OPT_INT, OPT_U64, OPT_DOUBLE, OPT_FLAG, OPT_STRING } opt_type;

#define OPT_STRING_MAX 512

typedef struct {
  const char *name; /* without the leading "--" */
  opt_type type;
  void *dest;       /* int*, uint64_t*, double*, int* (flag), char[OPT_STRING_MAX] */
  const char *help;
  int given;        /* set by cli_parse: the option was on the command line */
} cli_option;

typedef struct {
  const char *command;  /* "train" */
  const char *synopsis; /* "[options]" */
  const char *summary;  /* one paragraph */
  cli_option *opts;
  int n_opts;
  int min_positional, max_positional;
} cli_spec;

/* Parses argv (argv[0] is the subcommand). Returns 0 on success, 1 if --help was printed, 2 on a
 * bad command line (a one-line error was printed). Positional arguments go to positional[]. Numbers
 * are whole strings (no sign where none fits, no blanks); string values may not be empty. */
int cli_parse(const cli_spec *spec, int argc, char **argv, const char **positional, int *n_positional);
/* Whether the option named `name` (without "--") was given. */
int cli_given(const cli_spec *spec, const char *name);
void cli_usage(FILE *f, const cli_spec *spec);

/* Options shared by several subcommands: the task, the model and the training recipe, all writing
 * into one run config. */
/* An int or flag destination holding this is shown as "[unchanged]" in --help: an override that
 * was not given (bwt eval's task options). */
#define OPT_INT_UNSET INT_MIN

typedef struct {
  bwt_run_config cfg;
  char arch[OPT_STRING_MAX], norm[OPT_STRING_MAX], preset[OPT_STRING_MAX], positions[OPT_STRING_MAX];
  char init[OPT_STRING_MAX], decay[OPT_STRING_MAX], ssm_variant[OPT_STRING_MAX], loss[OPT_STRING_MAX];
  int no_attn_bias;
  int max_T; /* 0: the task's length */
} run_options;

/* Room for every option of a subcommand: the task, model and train groups and its own
 * (tests/test_settings.c checks the groups leave room for a subcommand's own 16). */
#define RUN_OPTIONS_MAX 128

void run_options_default(run_options *o);
/* Appends the task options (n written) to opts. */
int task_options(cli_option *opts, run_options *o);
int model_options(cli_option *opts, run_options *o);
int train_options(cli_option *opts, run_options *o);
/* Parses flags (space-separated task, model and train options, no quoting) into o. Returns 0, or 2
 * after printing an error. */
int run_options_parse_flags(run_options *o, const char *flags, const char *command);
/* Applies --preset before the other flags are parsed (so explicit flags override it): the flags of
 * the reproduce grid's cell for the --task and --arch given. Returns 0, or 2 after printing an error. */
int run_options_preset(run_options *o, int argc, char **argv, const char *command);
/* Resolves names (arch, norm) and sizes derived from the task; prints an error and returns 2 if the
 * configuration is impossible. */
int run_options_finish(run_options *o, const char *command);
/* Options given on the command line that do not apply to the chosen task or architecture (--V with
 * --task hmm, --heads with --arch mlp) are errors: prints one and returns 2, else 0. */
int task_options_check(const cli_spec *spec, const run_options *o, const char *command);
int run_options_check_given(const cli_spec *spec, const run_options *o, const char *command);

/* Task overrides (bwt eval, bwt reproduce): a run_options whose task fields are all
 * OPT_INT_UNSET, so that task_options() parsing records which were given; applying them replaces
 * those settings in cfg, and fails (exit code 2, one line) for another task's setting or a
 * different --task. */
void task_overrides_init(run_options *given);
int task_overrides_apply(bwt_task_config *cfg, const bwt_task_config *given, const char *command);

/* "a,b,c": integers in lo..hi (lo >= 0; no signs or blanks) into out, at most cap; returns the
 * count, or -1 when empty, malformed or out of range. */
int parse_int_list(const char *text, int *out, int cap, long lo, long hi);

/* The option group every subcommand shares: --threads, declared here once (help NULL: "threads
 * (0 = environment)"). */
cli_option threads_option(int *threads, const char *help);

/* The directory a command writes into: out if given, else RUN_DIR/sub. */
void output_dir(char *outdir, size_t cap, const char *out, const char *run_dir, const char *sub);
/* Writes text to dir/name (creating dir) and frees it; NULL text means it could not be formatted. */
bwt_status write_output(const char *dir, const char *name, char *text);

/* Prints "bwt CMD: message" for the last library error and returns 1. */
int cli_error(const char *command);

#endif
