/* PCA, correlations, cosine structure and linear probes (SPEC.md §5); entropies are in task.c.
 * Inputs are float; every sum is accumulated in double. Dense algebra goes through CBLAS
 * (Gram matrices) and LAPACKE (dsyevd for the covariance spectrum, dposv for ridge). */
#include "bwt/lab/stats.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Validates the shape shared by every matrix argument. */
static bwt_status check_matrix(const char *fn, const void *X, int n, int d, int ld) {
  if (!X) return bwt_fail(BWT_STATUS_ARG, "%s: X is NULL", fn);
  if (d < 1) return bwt_fail(BWT_STATUS_ARG, "%s: d must be >= 1, got %d", fn, d);
  if (ld < d) return bwt_fail(BWT_STATUS_ARG, "%s: ld (%d) must be >= d (%d)", fn, ld, d);
  if (n < 0) return bwt_fail(BWT_STATUS_ARG, "%s: n must be >= 0, got %d", fn, n);
  return BWT_STATUS_OK;
}

/* Copies rows [0, n) of X into a dense double (n, d) block with the column means removed.
 * means (d) receives the means; returns NUMERIC on a non-finite entry. */
static bwt_status centred_copy(double *Xc, double *means, const float *X, int n, int d, int ld,
                               const char *fn) {
  for (int j = 0; j < d; j++) means[j] = 0;
  for (int i = 0; i < n; i++)
    for (int j = 0; j < d; j++) {
      double v = X[(size_t)i * ld + j];
      if (!isfinite(v))
        return bwt_fail(BWT_STATUS_NUMERIC, "%s: X[%d][%d] is not finite", fn, i, j);
      Xc[(size_t)i * d + j] = v;
      means[j] += v;
    }
  for (int j = 0; j < d; j++) means[j] /= n;
  for (int i = 0; i < n; i++)
    for (int j = 0; j < d; j++) Xc[(size_t)i * d + j] -= means[j];
  return BWT_STATUS_OK;
}

void bwt_pca_free(bwt_pca *p) {
  if (!p) return;
  free(p->explained);
  free(p->components);
  free(p->scores);
  *p = (bwt_pca){0};
}

bwt_status bwt_pca_compute(bwt_pca *out, const float *X, int n, int d, int ld, int k) {
  static const char *fn = "pca";
  if (!out) return bwt_fail(BWT_STATUS_ARG, "pca: out is NULL");
  *out = (bwt_pca){0}; /* a failed call leaves a struct that bwt_pca_free accepts */
  BWT_TRY(check_matrix(fn, X, n, d, ld));
  if (n < 2) return bwt_fail(BWT_STATUS_ARG, "pca: needs n >= 2 samples, got %d", n);
  if (k < 0) return bwt_fail(BWT_STATUS_ARG, "pca: k must be >= 0, got %d", k);
  if (k > d) k = d;
  if (k > n) k = n;

  bwt_status s = BWT_STATUS_NOMEM;
  double *Xc = bwt_calloc((size_t)n * d, sizeof *Xc, "pca centred rows");
  double *C = bwt_calloc((size_t)d * d, sizeof *C, "pca covariance");
  double *w = bwt_calloc((size_t)d, sizeof *w, "pca eigenvalues");
  out->explained = bwt_calloc((size_t)d, sizeof *out->explained, "pca explained");
  out->components = bwt_calloc((size_t)(k ? k : 1) * d, sizeof *out->components, "pca components");
  out->scores = bwt_calloc((size_t)n * (k ? k : 1), sizeof *out->scores, "pca scores");
  if (!Xc || !C || !w || !out->explained || !out->components || !out->scores) goto fail;
  if ((s = centred_copy(Xc, w, X, n, d, ld, fn)) != BWT_STATUS_OK) goto fail;

  /* Upper triangle of XcᵀXc / (n − 1); dsyevd reads only that triangle. */
  cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, d, n, 1.0 / (n - 1), Xc, d, 0.0, C, d);
  double trace = 0;
  for (int j = 0; j < d; j++) trace += C[(size_t)j * d + j];
  if (!isfinite(trace)) {
    s = bwt_fail(BWT_STATUS_NUMERIC, "pca: the covariance overflowed (trace %g)", trace);
    goto fail;
  }
  if (!(trace > 0)) {
    s = bwt_fail(BWT_STATUS_NUMERIC, "pca: the %d rows have zero variance", n);
    goto fail;
  }
  lapack_int info = LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'V', 'U', d, C, d, w);
  if (info != 0) {
    s = bwt_fail(info < 0 ? BWT_STATUS_ARG : BWT_STATUS_NUMERIC,
                 "pca: dsyevd failed (info %d) on a %dx%d covariance", (int)info, d, d);
    goto fail;
  }

  /* Eigenvalues come ascending; rounding can leave a null direction slightly negative. */
  double sum = 0, sum2 = 0;
  for (int j = 0; j < d; j++) {
    double lam = fmax(w[d - 1 - j], 0.0);
    out->explained[j] = lam;
    sum += lam;
    sum2 += lam * lam;
  }
  for (int j = 0; j < d; j++) out->explained[j] /= sum;

  /* Component j is eigenvector column d−1−j; flip it so its largest |entry| is positive,
   * which makes components (and scores) reproducible across LAPACK builds. */
  for (int j = 0; j < k; j++) {
    double *c = out->components + (size_t)j * d;
    int col = d - 1 - j, big = 0;
    for (int i = 0; i < d; i++) {
      c[i] = C[(size_t)i * d + col];
      if (fabs(c[i]) > fabs(c[big])) big = i;
    }
    if (c[big] < 0)
      for (int i = 0; i < d; i++) c[i] = -c[i];
  }
  if (k > 0)
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, k, d, 1.0, Xc, d, out->components, d,
                0.0, out->scores, k);

  out->n = n, out->d = d, out->k = k;
  out->pc1 = out->explained[0];
  out->pc12 = out->explained[0] + (d > 1 ? out->explained[1] : 0.0);
  /* A slack of 1e-12 keeps an exact 90% split from tipping over on rounding. */
  double cum = 0;
  out->dims90 = d;
  for (int j = 0; j < d; j++) {
    cum += out->explained[j];
    if (cum >= 0.9 - 1e-12) {
      out->dims90 = j + 1;
      break;
    }
  }
  out->participation_ratio = sum * sum / sum2;
  free(Xc), free(C), free(w);
  return BWT_STATUS_OK;

fail:
  free(Xc), free(C), free(w);
  bwt_pca_free(out);
  return s;
}

double bwt_pearson(const double *x, const double *y, int n) {
  if (!x || !y || n < 2) return NAN;
  double mx = 0, my = 0;
  for (int i = 0; i < n; i++) mx += x[i], my += y[i];
  mx /= n, my /= n;
  /* Two passes: centring first avoids the cancellation of Σxy − n·x̄ȳ. */
  double sxy = 0, sxx = 0, syy = 0;
  for (int i = 0; i < n; i++) {
    double dx = x[i] - mx, dy = y[i] - my;
    sxy += dx * dy, sxx += dx * dx, syy += dy * dy;
  }
  if (!(sxx > 0) || !(syy > 0)) return NAN; /* also NaN input */
  double r = sxy / sqrt(sxx * syy);
  return fmin(1.0, fmax(-1.0, r)); /* rounding can step just outside [−1, 1] */
}

typedef struct {
  double value;
  int index;
} rank_item;

static int rank_item_cmp(const void *a, const void *b) {
  const rank_item *p = a, *q = b;
  if (p->value != q->value) return p->value < q->value ? -1 : 1;
  return (p->index > q->index) - (p->index < q->index); /* stable, so results are reproducible */
}

/* Average ranks (1-based) of v into r; tied values share the mean of their positions. */
static void average_ranks(double *r, rank_item *items, const double *v, int n) {
  for (int i = 0; i < n; i++) items[i] = (rank_item){v[i], i};
  qsort(items, (size_t)n, sizeof *items, rank_item_cmp);
  for (int a = 0; a < n;) {
    int b = a;
    while (b + 1 < n && items[b + 1].value == items[a].value) b++;
    double avg = 0.5 * (a + b) + 1.0;
    for (int i = a; i <= b; i++) r[items[i].index] = avg;
    a = b + 1;
  }
}

double bwt_spearman(const double *x, const double *y, int n) {
  if (!x || !y || n < 2) return NAN;
  for (int i = 0; i < n; i++)
    if (isnan(x[i]) || isnan(y[i])) return NAN; /* NaN has no place in an ordering */
  double *rx = bwt_calloc((size_t)n, sizeof *rx, "spearman ranks");
  double *ry = bwt_calloc((size_t)n, sizeof *ry, "spearman ranks");
  rank_item *items = bwt_calloc((size_t)n, sizeof *items, "spearman sort");
  double rho = NAN;
  if (rx && ry && items) {
    average_ranks(rx, items, x, n);
    average_ranks(ry, items, y, n);
    rho = bwt_pearson(rx, ry, n);
  }
  free(rx), free(ry), free(items);
  return rho;
}

static double dot_rows(const float *a, const float *b, int d) {
  double s = 0;
  for (int j = 0; j < d; j++) s += (double)a[j] * b[j];
  return s;
}

/* cos of two rows given their squared norms; a zero row is orthogonal to everything. */
static double cos_from(double dot, double na2, double nb2) {
  if (na2 == 0 || nb2 == 0) return 0.0;
  return dot / sqrt(na2 * nb2);
}

double bwt_cosine(const float *a, const float *b, int d) {
  return cos_from(dot_rows(a, b, d), dot_rows(a, a, d), dot_rows(b, b, d));
}

double bwt_entropy_bits_float(const float *p, int n) {
  double h = 0;
  for (int k = 0; k < n; k++)
    if (p[k] > 0) h -= p[k] * log2(p[k]);
  return h;
}

void bwt_cosine_matrix(double *out, const float *X, int n, int d, int ld) {
  if (!out || !X || n < 1 || d < 1 || ld < d) return;
  /* The diagonal holds the squared norms until the off-diagonal entries are filled. */
  for (int i = 0; i < n; i++) {
    const float *xi = X + (size_t)i * ld;
    out[(size_t)i * n + i] = dot_rows(xi, xi, d);
  }
  for (int i = 0; i < n; i++)
    for (int j = i + 1; j < n; j++) {
      double c = cos_from(dot_rows(X + (size_t)i * ld, X + (size_t)j * ld, d),
                          out[(size_t)i * n + i], out[(size_t)j * n + j]);
      out[(size_t)i * n + j] = out[(size_t)j * n + i] = c;
    }
  for (int i = 0; i < n; i++) out[(size_t)i * n + i] = 1.0;
}

double bwt_mean_abs_offdiag_cos(const float *X, int n, int d, int ld) {
  if (!X || n < 2 || d < 1 || ld < d) return NAN;
  double *norm2 = bwt_calloc((size_t)n, sizeof *norm2, "cosine norms");
  if (!norm2) return NAN;
  for (int i = 0; i < n; i++) norm2[i] = dot_rows(X + (size_t)i * ld, X + (size_t)i * ld, d);
  double sum = 0; /* over i < j; |cos| is symmetric so the mean over ordered pairs is the same */
  for (int i = 0; i < n; i++)
    for (int j = i + 1; j < n; j++)
      sum += fabs(cos_from(dot_rows(X + (size_t)i * ld, X + (size_t)j * ld, d), norm2[i], norm2[j]));
  free(norm2);
  return sum / (0.5 * n * (n - 1.0));
}

double bwt_gaussian_abs_cos(int d) {
  if (d < 1) return NAN;
  const double pi = 3.14159265358979323846; /* M_PI is not in strict C11 */
  return sqrt(2.0 / (pi * d));
}

/* Solves (A + lam·I) w = b for symmetric A (d, d) (upper triangle) into w; A and b are kept. */
static lapack_int ridge_solve(double *w, double *work, const double *A, const double *b, int d,
                              double lam) {
  memcpy(work, A, (size_t)d * d * sizeof *work);
  for (int j = 0; j < d; j++) work[(size_t)j * d + j] += lam;
  memcpy(w, b, (size_t)d * sizeof *w);
  return LAPACKE_dposv(LAPACK_ROW_MAJOR, 'U', d, 1, work, d, w, 1);
}

bwt_status bwt_linear_probe_r2(double *r2, const float *X, const double *y, int n, int d, int ld,
                               int n_train, double ridge) {
  static const char *fn = "linear probe";
  if (!r2) return bwt_fail(BWT_STATUS_ARG, "linear probe: r2 is NULL");
  *r2 = NAN;
  BWT_TRY(check_matrix(fn, X, n, d, ld));
  if (!y) return bwt_fail(BWT_STATUS_ARG, "linear probe: y is NULL");
  if (n_train < 2 || n_train >= n)
    return bwt_fail(BWT_STATUS_ARG, "linear probe: needs 2 <= n_train < n, got n_train %d, n %d",
                    n_train, n);
  if (!(ridge >= 0) || !isfinite(ridge))
    return bwt_fail(BWT_STATUS_ARG, "linear probe: ridge must be finite and >= 0, got %g", ridge);
  for (int i = 0; i < n; i++)
    if (!isfinite(y[i])) return bwt_fail(BWT_STATUS_NUMERIC, "linear probe: y[%d] is not finite", i);
  for (int i = n_train; i < n; i++) /* training rows are checked while they are copied */
    for (int j = 0; j < d; j++)
      if (!isfinite(X[(size_t)i * ld + j]))
        return bwt_fail(BWT_STATUS_NUMERIC, "linear probe: X[%d][%d] is not finite", i, j);

  bwt_status s = BWT_STATUS_NOMEM;
  double *Xc = bwt_calloc((size_t)n_train * d, sizeof *Xc, "probe centred rows");
  double *A = bwt_calloc((size_t)d * d, sizeof *A, "probe normal matrix");
  double *work = bwt_calloc((size_t)d * d, sizeof *work, "probe factor");
  double *mx = bwt_calloc((size_t)d, sizeof *mx, "probe means");
  double *b = bwt_calloc((size_t)d, sizeof *b, "probe right-hand side");
  double *w = bwt_calloc((size_t)d, sizeof *w, "probe weights");
  double *yc = bwt_calloc((size_t)n_train, sizeof *yc, "probe centred targets");
  if (!Xc || !A || !work || !mx || !b || !w || !yc) goto done;
  if ((s = centred_copy(Xc, mx, X, n_train, d, ld, fn)) != BWT_STATUS_OK) goto done;
  double my = 0;
  for (int i = 0; i < n_train; i++) my += y[i];
  my /= n_train;
  for (int i = 0; i < n_train; i++) yc[i] = y[i] - my;

  /* Centring removes the intercept from the system, so it is not penalised. */
  cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, d, n_train, 1.0, Xc, d, 0.0, A, d);
  cblas_dgemv(CblasRowMajor, CblasTrans, n_train, d, 1.0, Xc, d, yc, 1, 0.0, b, 1);
  double mean_diag = 0;
  for (int j = 0; j < d; j++) mean_diag += A[(size_t)j * d + j];
  mean_diag /= d;
  double lam = mean_diag > 0 ? ridge * mean_diag : ridge;
  lapack_int info = ridge_solve(w, work, A, b, d, lam);
  if (info > 0) /* rank deficient with no ridge: a tiny jitter picks the minimum-norm-like fit */
    info = ridge_solve(w, work, A, b, d, lam + 1e-8 * (mean_diag + 1));
  if (info != 0) {
    s = bwt_fail(info < 0 ? BWT_STATUS_ARG : BWT_STATUS_NUMERIC,
                 "linear probe: dposv failed (info %d) on %d features, ridge %g", (int)info, d,
                 ridge);
    goto done;
  }

  /* Score on the held-out rows against their own mean, so R² can go negative. */
  int m = n - n_train;
  double mt = 0;
  for (int i = n_train; i < n; i++) mt += y[i];
  mt /= m;
  double ss_res = 0, ss_tot = 0;
  for (int i = n_train; i < n; i++) {
    const float *xi = X + (size_t)i * ld;
    double pred = my;
    for (int j = 0; j < d; j++) pred += (xi[j] - mx[j]) * w[j];
    ss_res += (y[i] - pred) * (y[i] - pred);
    ss_tot += (y[i] - mt) * (y[i] - mt);
  }
  if (!(ss_tot > 0)) {
    s = bwt_fail(BWT_STATUS_NUMERIC, "linear probe: the %d held-out targets have zero variance", m);
    goto done;
  }
  *r2 = 1.0 - ss_res / ss_tot;
  s = isfinite(*r2) ? BWT_STATUS_OK
                    : bwt_fail(BWT_STATUS_NUMERIC, "linear probe: R² is not finite");

done:
  free(Xc), free(A), free(work), free(mx), free(b), free(w), free(yc);
  return s;
}
