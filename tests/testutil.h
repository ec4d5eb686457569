/* Helpers shared by the cmocka tests. */
#ifndef BWT_TESTUTIL_H
#define BWT_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

/* A fresh, empty directory for this test named `name` under $BWT_TEST_TMP (or /tmp). The returned
 * string is static storage, valid until the next call. */
const char *test_tmpdir(const char *name);
/* Fills x(n) with uniform values in [lo, hi) from a fixed seed. */
void test_fill_uniform(float *x, size_t n, float lo, float hi, uint64_t seed);
/* max_i |a_i − b_i| / max(|b_i|, floor): the relative error with an absolute floor. */
double test_max_rel_err(const float *a, const float *b, size_t n, double floor);

/* Temporary files a write of `path` would leave beside it ("<path>.tmp.XXXXXX"). */
int test_count_temporaries(const char *path);

#endif
