/* Vector variants of expf, erff and exp from glibc's libmvec. math.h declares them only under
 * -ffast-math, which bwt never uses; declaring them here lets `#pragma omp simd` loops call the
 * AVX2/AVX-512 versions (accurate to a few ulp) instead of one scalar call per element. */
#ifndef BWT_CORE_VECMATH_H
#define BWT_CORE_VECMATH_H

#include <math.h>

/* gcc's attribute; clang (the fuzz build) has no such declaration and calls the scalar ones. */
#if !defined(__clang__)
float expf(float) __attribute__((simd("notinbranch")));
float erff(float) __attribute__((simd("notinbranch")));
double exp(double) __attribute__((simd("notinbranch")));
#endif

#endif
