/* The entropy-ordered principal curve of a set of representations and its curvature
 * (bwt/lab/curvature.h, docs/curvature.md). */
#include "bwt/lab/curvature.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/rng.h"

typedef struct {
  double h;
  long row;
} keyed_row;

static int by_entropy(const void *a, const void *b) {
  const keyed_row *x = a, *y = b;
  if (x->h != y->h) return x->h < y->h ? -1 : 1;
  return (x->row > y->row) - (x->row < y->row);
}

/* Rows sorted by h, cut into about-equal groups that never split a tie: point_of_row (R), the
 * count of points returned. */
static int group_rows(int *point_of_row, keyed_row *order, const double *h, long R, int bins) {
  for (long r = 0; r < R; r++) order[r] = (keyed_row){h[r], r};
  qsort(order, (size_t)R, sizeof *order, by_entropy);
  int m = 0;
  for (long start = 0; start < R; m++) {
    long end = (long)((double)R * (m + 1) / bins);
    if (end <= start) end = start + 1;
    while (end < R && order[end].h == order[end - 1].h) end++;
    for (long i = start; i < end; i++) point_of_row[order[i].row] = m;
    start = end;
  }
  return m;
}

/* The curve's points (m, C) as group means, then its turning (m) in half-turns; returns the total. */
static double turning_of(double *turning, double *pts, long *count, const int *point_of_row, const float *X, long R,
                         int C, int ld, int m, double *straightness) {
  memset(pts, 0, sizeof(double) * (size_t)m * C);
  memset(count, 0, sizeof(long) * (size_t)m);
  for (long r = 0; r < R; r++) {
    double *p = pts + (size_t)point_of_row[r] * C;
    for (int c = 0; c < C; c++) p[c] += X[(size_t)r * ld + c];
    count[point_of_row[r]]++;
  }
  for (int j = 0; j < m; j++)
    for (int c = 0; c < C; c++) pts[(size_t)j * C + c] /= (double)count[j];
  double total = 0, length = 0, chord = 0;
  for (int j = 0; j < m; j++) turning[j] = 0;
  for (int j = 0; j + 1 < m; j++) {
    double uu = 0, vv = 0, uv = 0;
    for (int c = 0; c < C; c++) {
      double v = pts[(size_t)(j + 1) * C + c] - pts[(size_t)j * C + c];
      vv += v * v;
      if (j > 0) {
        double u = pts[(size_t)j * C + c] - pts[(size_t)(j - 1) * C + c];
        uu += u * u, uv += u * v;
      }
    }
    length += sqrt(vv);
    if (j > 0 && uu > 0 && vv > 0) total += turning[j] = acos(fmax(-1.0, fmin(1.0, uv / sqrt(uu * vv)))) / acos(-1.0);
  }
  for (int c = 0; c < C; c++) {
    double d = pts[(size_t)(m - 1) * C + c] - pts[c];
    chord += d * d;
  }
  if (straightness) *straightness = length > 0 ? sqrt(chord) / length : NAN;
  return m >= 3 ? total : NAN;
}

static int by_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

bwt_status bwt_curvature_compute(bwt_curvature *out, const float *X, const double *entropy, long R, int C, int ld,
                                 int bins, int shuffles, uint64_t seed) {
  memset(out, 0, sizeof *out);
  out->curvature = out->straightness = out->null_median = out->null_p = NAN;
  if (R < 1 || C < 1 || bins < 1 || shuffles < 0) return bwt_fail(BWT_STATUS_ARG, "curvature: %ld rows, %d bins", R, bins);
  keyed_row *order = bwt_malloc(sizeof *order * (size_t)R, "curvature");
  double *h = bwt_malloc(sizeof *h * (size_t)R, "curvature"), *pts = bwt_malloc(sizeof *pts * (size_t)bins * C, "curvature");
  double *null = bwt_malloc(sizeof *null * (size_t)(shuffles + 1), "curvature"); /* +1: never 0 bytes */
  double *null_turning = bwt_malloc(sizeof *null_turning * (size_t)bins, "curvature"); /* groups never outnumber bins */
  long *count = bwt_malloc(sizeof *count * (size_t)bins, "curvature");
  int *shuffled_point = bwt_malloc(sizeof *shuffled_point * (size_t)R, "curvature");
  out->turning = bwt_malloc(sizeof *out->turning * (size_t)bins, "curvature");
  out->point_of_row = bwt_malloc(sizeof *out->point_of_row * (size_t)R, "curvature");
  bwt_status s = order && h && pts && null && null_turning && count && shuffled_point && out->turning && out->point_of_row ? BWT_STATUS_OK
                                                                                                         : BWT_STATUS_NOMEM;
  if (s == BWT_STATUS_OK) {
    out->points = group_rows(out->point_of_row, order, entropy, R, bins);
    out->curvature = turning_of(out->turning, pts, count, out->point_of_row, X, R, C, ld, out->points, &out->straightness);
    /* The null: the same entropies dealt to the rows in a random order (Fisher-Yates). */
    bwt_rng rng;
    bwt_rng_seed(&rng, seed, 0xc0badULL);
    memcpy(h, entropy, sizeof *h * (size_t)R);
    int below = 0;
    for (int t = 0; t < shuffles; t++) {
      for (long i = R - 1; i > 0; i--) {
        long j = (long)bwt_rng_below(&rng, (uint32_t)(i + 1));
        double tmp = h[i];
        h[i] = h[j], h[j] = tmp;
      }
      int m = group_rows(shuffled_point, order, h, R, bins);
      null[t] = turning_of(null_turning, pts, count, shuffled_point, X, R, C, ld, m, NULL);
      below += null[t] <= out->curvature;
    }
    if (shuffles > 0 && !isnan(out->curvature)) {
      qsort(null, (size_t)shuffles, sizeof *null, by_double);
      out->null_median = shuffles % 2 ? null[shuffles / 2] : 0.5 * (null[shuffles / 2 - 1] + null[shuffles / 2]);
      out->null_p = (double)below / shuffles;
    }
  }
  free(order), free(h), free(pts), free(null), free(null_turning), free(count), free(shuffled_point);
  if (s != BWT_STATUS_OK) bwt_curvature_free(out);
  return s;
}

void bwt_curvature_free(bwt_curvature *c) {
  free(c->turning);
  free(c->point_of_row);
  c->turning = NULL, c->point_of_row = NULL;
}
