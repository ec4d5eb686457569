/* Shared by the libFuzzer harnesses: an invariant check that stays on in every build type.
 * assert() is compiled out under NDEBUG (RelWithDebInfo), so the harnesses abort themselves:
 * libFuzzer reports the abort as a crash and saves the input that caused it. */
#ifndef BWT_FUZZ_COMMON_H
#define BWT_FUZZ_COMMON_H

#include <stdio.h>
#include <stdlib.h>

#include "bwt/status.h"

#define FUZZ_CHECK(cond)                                                                        \
  do {                                                                                          \
    if (!(cond)) {                                                                              \
      fprintf(stderr, "%s:%d: invariant violated: %s (last library error: %s)\n", __FILE__,      \
              __LINE__, #cond, bwt_last_error());                                               \
      abort();                                                                                  \
    }                                                                                           \
  } while (0)

#endif
