/* Training progress on stderr: one self-overwriting line on a terminal, plain log lines otherwise. */
#ifndef BWT_CLI_PROGRESS_H
#define BWT_CLI_PROGRESS_H

#include "bwt/train.h"

typedef struct {
  const char *label; /* e.g. "transformer" */
  int tty;
  double last_mae;   /* the latest evaluated entropy MAE (NaN before the first) */
  int last_line_step; /* the step of the last line printed */
} progress_printer;

void progress_init(progress_printer *p, const char *label);
void progress_print(void *ctx, const bwt_progress *p);
/* "what i/n (detail)" on stderr: overwriting itself on a terminal, one line each otherwise. */
void progress_count(const char *what, int i, int n, const char *detail);
/* Installs a SIGINT/SIGTERM handler that asks the training loop to stop and checkpoint. */
void progress_catch_interrupt(void);

/* Runs tr into dir with a progress line (bwt train, demo and reproduce), first warning about what a
 * resume's log repair dropped; returns the exit code. */
int train_with_progress(bwt_trainer *tr, const char *dir, const char *label, const char *command);

#endif
