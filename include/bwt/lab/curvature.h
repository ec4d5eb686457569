/* The curvature of the value manifold along the posterior entropy (docs/curvature.md; issue 18,
 * seed 000's "minimum curvature 0.12 in layer 4"). Rows X (R, C) with their posterior entropies are
 * sorted by entropy and cut into at most `bins` groups of about equal size (ties never split: rows
 * of one entropy share a group); the group means c_0 .. c_{m−1}, in entropy order, are the discrete
 * principal curve. Its curvature is the total turning angle Σ_j θ_j over the interior points, θ_j
 * the angle between c_j − c_{j−1} and c_{j+1} − c_j, in half-turns (divided by π): 0 for a straight
 * curve, 1 for a U-turn, 2(m − 2)/3 on average for m independent points in many dimensions (the
 * level of a curve with no order along the entropy). It is invariant to
 * scale, rotation and translation. Straightness is |c_{m−1} − c_0| / Σ_j |c_{j+1} − c_j| (1: a
 * segment). The null: the same with the entropies shuffled among the rows. */
#ifndef BWT_LAB_CURVATURE_H
#define BWT_LAB_CURVATURE_H

#include <stdint.h>

#include "bwt/status.h"

typedef struct {
  int points;          /* m: groups on the curve (fewer than bins when entropies tie) */
  double curvature;    /* total turning, half-turns; NAN with fewer than 3 points */
  double straightness; /* chord / length; NAN for a curve of zero length */
  double null_median;  /* median curvature over the shuffles */
  double null_p;       /* share of shuffles whose curvature is at most the measured one */
  double *turning;     /* (points) θ_j / π at each point, 0 at both ends (for a row's local curvature) */
  int *point_of_row;   /* (R) the point each row belongs to */
} bwt_curvature;

enum { BWT_CURVATURE_BINS = 10, BWT_CURVATURE_SHUFFLES = 200 };

/* X (R, C) with row stride ld; entropy (R). shuffles 0: no null (NAN fields). */
bwt_status bwt_curvature_compute(bwt_curvature *out, const float *X, const double *entropy, long R, int C, int ld,
                                 int bins, int shuffles, uint64_t seed);
void bwt_curvature_free(bwt_curvature *c);

#endif
