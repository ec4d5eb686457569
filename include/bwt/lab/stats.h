/* Statistics behind the geometry diagnostics (SPEC.md §5): PCA, correlations, cosine structure,
 * linear probes and entropies. Inputs are float activations as the models store them; sums are
 * done in double. Letters: n rows (samples), d columns (features), ld the row stride (>= d). */
#ifndef BWT_LAB_STATS_H
#define BWT_LAB_STATS_H

#include "bwt/status.h"

typedef struct {
  int n, d;          /* samples, features */
  int k;             /* components kept in components/scores: min(requested, d, n) */
  double *explained; /* (d) fraction of the total variance per principal component, descending */
  double *components;/* (k, d) unit principal directions, sign fixed so the largest |entry| is > 0 */
  double *scores;    /* (n, k) projections of the centred rows on the components */
  double pc1;        /* explained[0] */
  double pc12;       /* explained[0] + explained[1] */
  int dims90;        /* fewest components explaining >= 90% of the variance */
  double participation_ratio; /* (Σλ)² / Σλ², between 1 and d */
} bwt_pca;

/* PCA of the rows of X (n, d) with stride ld: the covariance eigendecomposition through LAPACK
 * (dsyevd). Needs n >= 2 and a non-zero variance. Free with bwt_pca_free. */
bwt_status bwt_pca_compute(bwt_pca *out, const float *X, int n, int d, int ld, int k);
void bwt_pca_free(bwt_pca *p);

/* Pearson correlation of x and y (n); NAN when either has zero variance or n < 2. */
double bwt_pearson(const double *x, const double *y, int n);
/* Spearman rank correlation (ties get their average rank); NAN as for Pearson or when out of
 * memory. */
double bwt_spearman(const double *x, const double *y, int n);

/* Cosine similarity of a and b (d); 0 when either is zero. */
double bwt_cosine(const float *a, const float *b, int d);
/* Entropy in bits of the distribution p (n) held in floats (0·log 0 = 0); bwt_entropy_bits in
 * bwt/task.h is the double version. */
double bwt_entropy_bits_float(const float *p, int n);

/* out (n, n): cosine similarity of every pair of rows of X (n, d) with stride ld. A zero row has
 * cosine 0 with everything (1 with itself). */
void bwt_cosine_matrix(double *out, const float *X, int n, int d, int ld);
/* Mean |cos| over the n·(n−1) off-diagonal pairs of rows of X (n, d) with stride ld (n >= 2). */
double bwt_mean_abs_offdiag_cos(const float *X, int n, int d, int ld);
/* The expected mean |cos| of independent Gaussian vectors in d dimensions, √(2/(π·d)). */
double bwt_gaussian_abs_cos(int d);

/* Linear probe: ridge regression y ≈ X·w + b fitted on the first n_train rows of X (n, d) with
 * stride ld, scored on the remaining rows: *r2 = 1 − SS_res/SS_tot on the held-out rows (can be
 * negative). ridge (>= 0) is the penalty on w relative to the mean diagonal of XᵀX. Solved through
 * LAPACK (dposv). Needs 2 <= n_train < n. */
bwt_status bwt_linear_probe_r2(double *r2, const float *X, const double *y, int n, int d, int ld,
                               int n_train, double ridge);

#endif
