/* plot_curves: line figures from a CSV, through bwt's PLplot figures (bwt/lab/plot.h), for the scripts
 * in bench/ and experiments/ (frontiers of entropy MAE against wall time).
 *
 *   plot_curves CSV STEM TITLE XLABEL YLABEL [--log-x] [--log-y]
 *
 * CSV: a header line, then rows "series,x,y"; rows of one series are consecutive and become one
 * line, in file order. Writes STEM.png and STEM.svg. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/lab/plot.h"

#define MAX_SERIES 64

typedef struct {
  char name[128];
  double *x, *y;
  int n, cap;
} curve;

static int add_point(curve *c, double x, double y) {
  if (c->n == c->cap) {
    int cap = c->cap ? 2 * c->cap : 64;
    double *nx = realloc(c->x, sizeof(double) * cap), *ny = nx ? realloc(c->y, sizeof(double) * cap) : NULL;
    if (nx) c->x = nx;
    if (!nx || !ny) return 0;
    c->y = ny, c->cap = cap;
  }
  c->x[c->n] = x, c->y[c->n] = y, c->n++;
  return 1;
}

int main(int argc, char **argv) {
  if (argc < 6) {
    fprintf(stderr, "usage: plot_curves CSV STEM TITLE XLABEL YLABEL [--log-x] [--log-y]\n");
    return 2;
  }
  bwt_plot_axes ax = {argv[3], argv[4], argv[5], 0, 0};
  for (int i = 6; i < argc; i++) {
    if (strcmp(argv[i], "--log-x") == 0) ax.log_x = 1;
    else if (strcmp(argv[i], "--log-y") == 0) ax.log_y = 1;
    else return fprintf(stderr, "plot_curves: unknown option '%s'\n", argv[i]), 2;
  }
  FILE *f = fopen(argv[1], "r");
  if (!f) return fprintf(stderr, "plot_curves: cannot read %s\n", argv[1]), 1;
  static curve curves[MAX_SERIES];
  int n = 0, line_no = 0;
  char line[1024];
  while (fgets(line, sizeof line, f)) {
    if (line_no++ == 0) continue; /* the header */
    char *c1 = strchr(line, ','), *c2 = c1 ? strchr(c1 + 1, ',') : NULL;
    if (!c2) return fprintf(stderr, "plot_curves: %s:%d is not 'series,x,y'\n", argv[1], line_no), 1;
    *c1 = '\0';
    double x = strtod(c1 + 1, NULL), y = strtod(c2 + 1, NULL);
    if ((ax.log_x && !(x > 0)) || (ax.log_y && !(y > 0))) continue; /* not drawable on a log axis */
    if (n == 0 || strcmp(curves[n - 1].name, line) != 0) {
      if (n == MAX_SERIES) return fprintf(stderr, "plot_curves: more than %d series\n", MAX_SERIES), 1;
      snprintf(curves[n++].name, sizeof curves[0].name, "%.127s", line);
    }
    if (!add_point(&curves[n - 1], x, y)) return fprintf(stderr, "plot_curves: out of memory\n"), 1;
  }
  fclose(f);
  bwt_plot_series s[MAX_SERIES];
  memset(s, 0, sizeof s);
  for (int i = 0; i < n; i++) s[i] = (bwt_plot_series){curves[i].name, curves[i].x, curves[i].y, NULL, NULL, curves[i].n, 0, 0};
  if (bwt_plot_lines(argv[2], &ax, s, n) != BWT_STATUS_OK) return fprintf(stderr, "plot_curves: %s\n", bwt_last_error()), 1;
  printf("wrote %s.png and %s.svg\n", argv[2], argv[2]);
  return 0;
}
