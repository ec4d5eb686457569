/* The run's metrics.jsonl (metrics_log.h): one JSON object per line, appended with one write each,
 * fsynced before every checkpoint, and on resume cut back to what the checkpoint covers. */
#include "metrics_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bwt/fileio.h"

bwt_status metrics_log_open(metrics_log *log, const char *dir, int fresh) {
  log->fd = -1;
  if (snprintf(log->path, sizeof log->path, "%s/metrics.jsonl", dir) >= (int)sizeof log->path)
    return bwt_fail(BWT_STATUS_ARG, "path too long: %s", dir);
  if (fresh) BWT_TRY(bwt_write_file_atomic(log->path, "", 0));
  return bwt_open_append(log->path, &log->fd);
}

bwt_status metrics_log_append(metrics_log *log, cJSON *o, int complete) {
  char *line = o && complete ? cJSON_PrintUnformatted(o) : NULL;
  cJSON_Delete(o);
  if (!line) return bwt_fail(BWT_STATUS_NOMEM, "out of memory formatting a line of %s", log->path);
  size_t n = strlen(line);
  char *full = bwt_realloc(line, n + 2, log->path);
  if (!full) return free(line), BWT_STATUS_NOMEM;
  full[n] = '\n';
  full[n + 1] = '\0';
  /* One write of the whole line (O_APPEND): a crash leaves at most a cut last line, which the
   * repair on resume drops with a warning. */
  bwt_status s = bwt_write_all(log->fd, full, n + 1, log->path);
  free(full);
  return s;
}

bwt_status metrics_log_sync(metrics_log *log) { return bwt_fsync(log->fd, log->path); }

void metrics_log_close(metrics_log *log) {
  if (log->fd >= 0) close(log->fd);
  log->fd = -1;
}

/* What a repair found, for its warning. */
typedef struct {
  int kept, past, final, bad, first_bad_line, cut_last;
  double last_kept_step;
} repair_counts;

static void add_note(char *notes, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void add_note(char *notes, size_t cap, const char *fmt, ...) {
  size_t len = strlen(notes);
  if (len + 3 >= cap) return;
  if (len) len += (size_t)snprintf(notes + len, cap - len, "; ");
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(notes + len, cap - len, fmt, ap);
  va_end(ap);
}

bwt_status metrics_log_repair(const char *dir, int step, char *notes, size_t cap, int *eval_at_step) {
  *eval_at_step = 0;
  char path[4096];
  if (snprintf(path, sizeof path, "%s/metrics.jsonl", dir) >= (int)sizeof path) return bwt_fail(BWT_STATUS_ARG, "path too long: %s", dir);
  if (!bwt_path_exists(path)) {
    if (step > 0) add_note(notes, cap, "metrics.jsonl was missing; it restarts at step %d", step);
    return BWT_STATUS_OK;
  }
  char *text = NULL;
  size_t n = 0;
  BWT_TRY(bwt_read_file(path, &text, &n));
  repair_counts c;
  memset(&c, 0, sizeof c);
  c.last_kept_step = -1;
  size_t out = 0;
  int line_no = 0;
  /* Lines by length, not by NUL: a NUL byte in the file damages one line, not everything after it. */
  for (size_t at = 0; at < n;) {
    const char *line = text + at, *nl = memchr(line, '\n', n - at);
    size_t len = nl ? (size_t)(nl - line) : n - at;
    line_no++;
    at += len + (nl ? 1 : 0);
    long failures = bwt_alloc_failures();
    cJSON *o = memchr(line, '\0', len) ? NULL : cJSON_ParseWithLength(line, len);
    if (!o && bwt_alloc_failures() != failures) { /* not damage: memory; the log stays as it is */
      free(text);
      return bwt_fail(BWT_STATUS_NOMEM, "out of memory reading %s", path);
    }
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(o, "step");
    int is_final = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "final"));
    int is_eval = cJSON_GetObjectItemCaseSensitive(o, "eval") != NULL;
    int valid = cJSON_IsObject(o) && cJSON_IsNumber(st);
    double st_v = valid ? st->valuedouble : 0;
    cJSON_Delete(o);
    if (!nl && len > 0 && !valid) {
      c.cut_last = 1; /* a write cut short by a crash */
      continue;
    }
    if (len == 0) continue;
    if (!valid) {
      if (!c.bad++) c.first_bad_line = line_no;
      continue;
    }
    if (st_v > step) { c.past++; continue; }
    if (is_final) { c.final++; continue; } /* the resumed run evaluates again and writes it once */
    memmove(text + out, line, len);
    out += len;
    text[out++] = '\n';
    c.kept++;
    c.last_kept_step = st_v;
    if (is_eval && st_v == step) *eval_at_step = 1;
  }
  if (c.cut_last) add_note(notes, cap, "dropped an incomplete last line (a write cut short)");
  if (c.bad) add_note(notes, cap, "dropped %d damaged line%s (not a JSON object with a step; the first is line %d)", c.bad, c.bad > 1 ? "s" : "", c.first_bad_line);
  if (c.past) add_note(notes, cap, "dropped %d line%s past the checkpoint's step %d (the run repeats those steps)", c.past, c.past > 1 ? "s" : "", step);
  if (step > 0 && c.last_kept_step < 0) add_note(notes, cap, "metrics.jsonl held no line up to step %d", step);
  bwt_status s = bwt_write_file_atomic(path, text, out);
  free(text);
  return s;
}
