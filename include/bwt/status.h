/* Status codes and the last error message.
 *
 * The library never exits or prints errors itself: a failing call records a one-line message
 * (thread-local) and returns a non-zero bwt_status. Callers show bwt_last_error(). */
#ifndef BWT_STATUS_H
#define BWT_STATUS_H

#include <stddef.h>

typedef enum {
  BWT_STATUS_OK = 0,
  BWT_STATUS_ARG,     /* a bad argument or impossible configuration */
  BWT_STATUS_IO,      /* a file could not be opened, read or written */
  BWT_STATUS_FORMAT,  /* a file exists but its contents are wrong */
  BWT_STATUS_NOMEM,   /* an allocation failed */
  BWT_STATUS_NUMERIC, /* NaN or infinity where a finite number was required */
  BWT_STATUS_STOPPED  /* stopped on request (bwt_request_stop: Ctrl-C) before finishing */
} bwt_status;

/* Records a printf-style message and returns s (so callers can `return bwt_fail(...)`). */
bwt_status bwt_fail(bwt_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The message recorded by the last failing call on this thread ("" if none). */
const char *bwt_last_error(void);
/* A short name for a status ("io error", ...). */
const char *bwt_status_name(bwt_status s);

/* Propagates a failing status from an expression. */
#define BWT_TRY(expr)                                 \
  do {                                                \
    bwt_status bwt_try_s_ = (expr);                   \
    if (bwt_try_s_ != BWT_STATUS_OK) return bwt_try_s_; \
  } while (0)

/* Allocation: every allocation of the library goes through these (and cJSON's through them too, see
 * bwt_alloc_hooks_install), so that tests can make the n-th one fail (src/core/fault.h). A failure
 * records an out-of-memory message with the size and `what` was asked for (what may be NULL). */
void *bwt_calloc(size_t count, size_t size, const char *what);
void *bwt_malloc(size_t size, const char *what);
void *bwt_realloc(void *p, size_t size, const char *what);
/* Zeroed, its address a multiple of align (a power of two); released with free(). */
void *bwt_calloc_aligned(size_t count, size_t size, size_t align, const char *what);
/* Allocations that failed on this thread so far: a parser that returns NULL (cJSON) can tell "out of
 * memory" from "not valid" by comparing it before and after. */
long bwt_alloc_failures(void);
/* Routes cJSON's allocations through bwt_malloc (called once, before any cJSON use, by the library's
 * entry points; idempotent). */
void bwt_alloc_hooks_install(void);

/* Stop requests (a SIGINT handler's): async-signal-safe to request; long operations (training,
 * evaluation, grids) check them between units of work and return BWT_STATUS_STOPPED. The request
 * stays for the rest of the process. */
void bwt_request_stop(void);
int bwt_stop_requested(void);

#endif
