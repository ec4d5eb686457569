/* Thread-local last-error message behind bwt_fail / bwt_last_error. */
#include "bwt/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static _Thread_local char last_error[512];

bwt_status bwt_fail(bwt_status s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_error, sizeof last_error, fmt, ap);
  va_end(ap);
  return s;
}

const char *bwt_last_error(void) { return last_error; }

const char *bwt_status_name(bwt_status s) {
  switch (s) {
    case BWT_STATUS_OK: return "ok";
    case BWT_STATUS_ARG: return "bad argument";
    case BWT_STATUS_IO: return "i/o error";
    case BWT_STATUS_FORMAT: return "bad file format";
    case BWT_STATUS_NOMEM: return "out of memory";
    case BWT_STATUS_NUMERIC: return "numeric error";
  }
  return "unknown status";
}

void *bwt_calloc(size_t count, size_t size, const char *what) {
  void *p = calloc(count ? count : 1, size ? size : 1);
  if (!p) bwt_fail(BWT_STATUS_NOMEM, "out of memory allocating %zu x %zu bytes for %s", count, size, what);
  return p;
}
