#include "progress.h"

#include "options.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

void progress_init(progress_printer *p, const char *label) {
  p->label = label;
  p->tty = isatty(STDERR_FILENO);
  p->last_mae = NAN;
  p->last_line_step = 0;
}

static void fmt_duration(char *buf, size_t n, double s) {
  if (!(s >= 0) || s > 1e7) snprintf(buf, n, "?");
  else if (s >= 3600) snprintf(buf, n, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
  else if (s >= 60) snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
  else snprintf(buf, n, "%.0fs", s);
}

void progress_print(void *ctx, const bwt_progress *p) {
  progress_printer *pp = ctx;
  if (p->eval) pp->last_mae = p->eval->overall.entropy_mae;
  if (isnan(p->loss)) { /* the final evaluation */
    if (pp->tty) fprintf(stderr, "\n");
    fprintf(stderr, "%s: done, %d steps in %.1f s; held-out entropy MAE %.5f bits, KL %.5f bits\n",
            pp->label, p->step, p->elapsed_s, p->eval->overall.entropy_mae, p->eval->overall.kl_bits);
    return;
  }
  /* Off a terminal (a log file), stay quiet: about twenty lines per run, plus evaluations. */
  int every = p->steps / 20 > 0 ? p->steps / 20 : 1;
  if (!pp->tty && !p->eval && p->step != p->steps && p->step / every == pp->last_line_step / every)
    return;
  pp->last_line_step = p->step;
  char eta[32], mae[48] = "";
  fmt_duration(eta, sizeof eta, p->eta_s);
  if (!isnan(pp->last_mae)) snprintf(mae, sizeof mae, "  MAE %.4f bits", pp->last_mae);
  fprintf(stderr, "%s%s step %d/%d  loss %.4f%s  %.0f tok/s  ETA %s%s", pp->tty ? "\r" : "",
          pp->label, p->step, p->steps, p->loss, mae, p->tokens_per_s, eta, pp->tty ? "\033[K" : "\n");
  fflush(stderr);
}

static void on_signal(int sig) {
  (void)sig;
  bwt_request_stop();
}

void progress_catch_interrupt(void) {
  /* sigaction, not signal(): under strict POSIX feature macros glibc's signal() resets the handler
   * after one delivery, and a second Ctrl-C (or a signal sent to both the process and its group)
   * would then kill the run before it saves. */
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
}

int train_with_progress(bwt_trainer *tr, const char *dir, const char *label, const char *command) {
  progress_printer pp;
  progress_init(&pp, label);
  progress_catch_interrupt();
  if (tr->resumed && *tr->notes) fprintf(stderr, "bwt %s: warning: %s/metrics.jsonl: %s\n", command, dir, tr->notes);
  bwt_status s = bwt_train_run(tr, dir, progress_print, &pp);
  if (s != BWT_STATUS_OK && s != BWT_STATUS_STOPPED) {
    if (pp.tty) fprintf(stderr, "\n");
    return cli_error(command);
  }
  if (s == BWT_STATUS_STOPPED || tr->step < tr->cfg.train.steps) {
    if (pp.tty) fprintf(stderr, "\n");
    const char *during = s == BWT_STATUS_STOPPED ? " during an evaluation" : "";
    if (strcmp(command, "train") == 0)
      fprintf(stderr, "bwt %s: stopped at step %d of %d%s; checkpoint saved; continue with: bwt train --resume %s\n",
              command, tr->step, tr->cfg.train.steps, during, dir);
    else
      fprintf(stderr, "bwt %s: stopped at step %d of %d%s; checkpoint saved in %s\n", command, tr->step,
              tr->cfg.train.steps, during, dir);
    return tr->stop_after > 0 && s == BWT_STATUS_OK ? 0 : 130; /* interrupted, like a shell reports SIGINT */
  }
  return 0;
}

void progress_count(const char *what, int i, int n, const char *detail) {
  int tty = isatty(fileno(stderr));
  fprintf(stderr, "%s%s %d/%d%s%s", tty ? "\r" : "", what, i, n, detail, tty && i < n ? "   " : "\n");
}
