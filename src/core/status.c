/* Thread-local last-error message behind bwt_fail / bwt_last_error. */
#include "bwt/status.h"

#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "fault.h"

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
    case BWT_STATUS_STOPPED: return "stopped";
  }
  return "unknown status";
}

/* Records the out-of-memory message (what may be NULL: the caller names it, or nobody needs to). */
static _Thread_local long alloc_failures;

long bwt_alloc_failures(void) { return alloc_failures; }

static void *out_of_memory(size_t bytes, const char *what) {
  alloc_failures++;
  bwt_fail(BWT_STATUS_NOMEM, "out of memory allocating %zu bytes%s%s", bytes, what ? " for " : "", what ? what : "");
  return NULL;
}

void *bwt_calloc(size_t count, size_t size, const char *what) {
  void *p = bwt_fault_hit(BWT_FAULT_ALLOC) ? NULL : calloc(count ? count : 1, size ? size : 1);
  return p ? p : out_of_memory(count * size, what);
}

void *bwt_calloc_aligned(size_t count, size_t size, size_t align, const char *what) {
  if (size && count > (SIZE_MAX - align) / size) return out_of_memory(SIZE_MAX, what);
  size_t bytes = (count * size + align - 1) / align * align; /* aligned_alloc wants a multiple */
  void *p = bwt_fault_hit(BWT_FAULT_ALLOC) ? NULL : aligned_alloc(align, bytes ? bytes : align);
  if (!p) return out_of_memory(count * size, what);
  return memset(p, 0, bytes);
}

void *bwt_malloc(size_t size, const char *what) {
  void *p = bwt_fault_hit(BWT_FAULT_ALLOC) ? NULL : malloc(size ? size : 1);
  return p ? p : out_of_memory(size, what);
}

void *bwt_realloc(void *p, size_t size, const char *what) {
  void *q = bwt_fault_hit(BWT_FAULT_ALLOC) ? NULL : realloc(p, size ? size : 1);
  return q ? q : out_of_memory(size, what);
}

static void *cjson_malloc(size_t size) { return bwt_malloc(size, NULL); }

void bwt_alloc_hooks_install(void) {
  static int installed;
  if (installed) return;
  cJSON_Hooks hooks = {cjson_malloc, free};
  cJSON_InitHooks(&hooks);
  installed = 1;
}

static volatile sig_atomic_t stop_requested;

void bwt_request_stop(void) { stop_requested = 1; }
int bwt_stop_requested(void) { return stop_requested != 0; }
