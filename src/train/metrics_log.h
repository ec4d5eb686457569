/* The training log, RUN_DIR/metrics.jsonl (private to src/train). */
#ifndef BWT_METRICS_LOG_H
#define BWT_METRICS_LOG_H

#include <cjson/cJSON.h>

#include "bwt/status.h"

typedef struct {
  int fd;
  char path[4096];
} metrics_log;

/* Opens dir/metrics.jsonl for appending; fresh: empties it first. */
bwt_status metrics_log_open(metrics_log *log, const char *dir, int fresh);
/* Appends o as one line, in one write, and deletes o. o NULL or complete 0 (a cJSON allocation
 * failed while o was built) fail as out of memory: a line missing a field is never written. */
bwt_status metrics_log_append(metrics_log *log, cJSON *o, int complete);
/* Flushes the log to disk: done before each checkpoint, so a checkpoint never covers lost lines. */
bwt_status metrics_log_sync(metrics_log *log);
void metrics_log_close(metrics_log *log);
/* Cuts dir/metrics.jsonl back to the lines a checkpoint at `step` covers: those with a step up to
 * it, minus the final evaluation (written after the last checkpoint, so a resume writes it again).
 * Damaged lines (a NUL byte, not a JSON object with a number "step", a cut last line) are dropped.
 * Whatever was dropped for a reason other than being repeated is described in notes (cap bytes,
 * appended, "; "-separated) for a warning. *eval_at_step: whether an evaluation line at `step` was kept. */
bwt_status metrics_log_repair(const char *dir, int step, char *notes, size_t cap, int *eval_at_step);

#endif
