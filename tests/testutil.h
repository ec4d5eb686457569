/* Helpers shared by the cmocka tests. */
#ifndef BWT_TESTUTIL_H
#define BWT_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "bwt/train.h"

/* A fresh, empty directory for this test named `name` under $BWT_TEST_TMP (or /tmp). The returned
 * string is static storage, valid until the next call. */
const char *test_tmpdir(const char *name);
/* Fills x(n) with uniform values in [lo, hi) from a fixed seed. */
void test_fill_uniform(float *x, size_t n, float lo, float hi, uint64_t seed);
/* max_i |a_i − b_i| / max(|b_i|, floor): the relative error with an absolute floor. */
double test_max_rel_err(const float *a, const float *b, size_t n, double floor);

/* A run config of the bijection V, L = V − 1, and a transformer of width d_model with n_heads heads
 * and n_layers blocks, everything else at its default: tests set the recipe they need. */
bwt_run_config test_bijection_config(int V, int d_model, int n_heads, int n_layers);
/* A path under the shared test data (models/, tokenizers/): $BWT_SHARED_DIR/rel, else ../shared
 * beside the checkout. Static storage, valid until the next call. */
const char *test_shared_path(const char *rel);
/* Whether path (from test_shared_path) exists. Absent, the calling test is skipped with a message
 * (a clone without shared/ beside it still passes; CI has it there and runs them). */
int test_shared_present(const char *path);
/* Applies BWT_TEST_SKIP (a cmocka glob of tests to leave out: the sanitizer run in .ci/run skips the
 * longest learning runs, test_long_*, which the Release run covers) and BWT_TEST_ONLY (run only the
 * matching ones); call before cmocka_run_group_tests. */
void test_filters_from_env(void);

/* Temporary files a write of `path` would leave beside it ("<path>.tmp.XXXXXX"). */
int test_count_temporaries(const char *path);

#endif
