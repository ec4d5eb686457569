/* Figures through PLplot's cairo driver. Every call writes the same figure twice, as STEM.png and
 * STEM.svg, and fails with BWT_STATUS_IO (message naming the file) when it cannot. Axes carry the
 * labels given (put units in them); series are told apart by colour and a legend.
 *
 * Labels are PLplot text: '#' starts an escape (#u superscript, #d subscript, #gx Greek letter);
 * write "##" for a literal '#'.
 *
 * PLplot keeps global state: these calls are not thread-safe (call them from one thread). */
#ifndef BWT_LAB_PLOT_H
#define BWT_LAB_PLOT_H

#include "bwt/status.h"

typedef struct {
  const char *title;
  const char *xlabel, *ylabel;
  int log_x, log_y; /* logarithmic axis (all plotted values must be > 0) */
} bwt_plot_axes;

typedef struct {
  const char *label;     /* legend entry */
  const double *x, *y;   /* (n) */
  const double *lo, *hi; /* (n) or NULL: a shaded band (spread) drawn under the line */
  int n;
  int points;            /* 1: draw markers only (no line) */
  int colour;            /* 0: the next palette colour in turn; k > 0: palette colour k (to pair series) */
} bwt_plot_series;

/* Line chart of n_series series on shared axes, with a legend. */
bwt_status bwt_plot_lines(const char *stem, const bwt_plot_axes *ax, const bwt_plot_series *s,
                          int n_series);

/* Scatter of (x, y) coloured by c (n) through a colour map, with a colour bar labelled clabel. */
bwt_status bwt_plot_scatter(const char *stem, const bwt_plot_axes *ax, const double *x,
                            const double *y, const double *c, int n, const char *clabel);

typedef struct {
  const char *title; /* panel title */
  const double *z;   /* (ny, nx) row-major: z[iy·nx + ix]; NAN cells are left blank */
  int nx, ny;
  const char *const *xticks; /* (nx) category names for the columns, or NULL for indices */
  const char *const *yticks; /* (ny) category names for the rows, or NULL for indices */
} bwt_plot_panel;

/* One figure of n heatmap panels (arranged in a grid) sharing the colour scale [zmin, zmax] and one
 * colour bar labelled zlabel; ax->title is the figure's title, ax->xlabel / ylabel every panel's
 * axes (log flags ignored). Row 0 is drawn at the top (matrix order). */
bwt_status bwt_plot_heatmaps(const char *stem, const bwt_plot_axes *ax, const bwt_plot_panel *p,
                             int n, double zmin, double zmax, const char *zlabel);

#endif
