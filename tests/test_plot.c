/* Figures: every call writes a PNG and an SVG of plausible size; bad input is refused. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/lab/plot.h"
#include "testutil.h"

enum { N = 50, NS = 200 };

/* The whole of a small file, NUL-terminated, and its size. */
static char *slurp(const char *path, long *size) {
  FILE *f = fopen(path, "rb");
  if (!f) fail_msg("%s was not written", path);
  fseek(f, 0, SEEK_END);
  *size = ftell(f);
  rewind(f);
  char *buf = calloc((size_t)*size + 1, 1);
  assert_non_null(buf);
  assert_int_equal(fread(buf, 1, (size_t)*size, f), (size_t)*size);
  fclose(f);
  return buf;
}

static void assert_figure(const char *stem) {
  char path[1200];
  long size;
  snprintf(path, sizeof path, "%s.png", stem);
  char *png = slurp(path, &size);
  if (size <= 1000) fail_msg("%s has only %ld bytes", path, size);
  assert_memory_equal(png, "\x89PNG\r\n\x1a\n", 8);
  free(png);
  snprintf(path, sizeof path, "%s.svg", stem);
  char *svg = slurp(path, &size);
  if (size <= 1000) fail_msg("%s has only %ld bytes", path, size);
  assert_non_null(strstr(svg, "<svg"));
  free(svg);
}

static const char *stem_in(const char *dir, const char *name) {
  static char buf[1100];
  snprintf(buf, sizeof buf, "%s/%s", dir, name);
  return buf;
}

typedef struct {
  double x[N], y1[N], y2[N], lo[N], hi[N];
} curves;

/* Two decaying curves over steps 1..N; the first with a ±spread band and a NAN gap. */
static void make_curves(curves *c) {
  for (int i = 0; i < N; i++) {
    c->x[i] = 10.0 * (i + 1);
    c->y1[i] = 2.0 * exp(-0.05 * i) + 0.1;
    c->y2[i] = 1.5 * exp(-0.03 * i) + 0.2;
    c->lo[i] = c->y1[i] * 0.8;
    c->hi[i] = c->y1[i] * 1.2;
  }
  c->y1[20] = NAN; /* a gap in the line */
}

static void test_lines(void **state) {
  const char *dir = test_tmpdir("plot_lines");
  curves c;
  make_curves(&c);
  bwt_plot_series s[2] = {
      {"transformer (mean ± sd)", c.x, c.y1, c.lo, c.hi, N, 0, 0},
      {"mlp", c.x, c.y2, NULL, NULL, N, 1, 0},
  };
  bwt_plot_axes ax = {"Entropy error during training", "step", "entropy MAE (bits)", 0, 0};
  assert_int_equal(bwt_plot_lines(stem_in(dir, "lines"), &ax, s, 2), BWT_STATUS_OK);
  assert_figure(stem_in(dir, "lines"));
  ax.log_x = 1;
  ax.title = "Same, log x";
  assert_int_equal(bwt_plot_lines(stem_in(dir, "lines_logx"), &ax, s, 2), BWT_STATUS_OK);
  assert_figure(stem_in(dir, "lines_logx"));
  ax.log_y = 1;
  ax.title = "Same, log x and y";
  assert_int_equal(bwt_plot_lines(stem_in(dir, "lines_loglog"), &ax, s, 2), BWT_STATUS_OK);
  assert_figure(stem_in(dir, "lines_loglog"));
}

static void test_scatter(void **state) {
  const char *dir = test_tmpdir("plot_scatter");
  double x[NS], y[NS], c[NS];
  for (int i = 0; i < NS; i++) { /* a noisy spiral, coloured by position along it */
    double t = 0.05 * i, r = 1 + 0.02 * i;
    x[i] = r * cos(t) + 0.05 * sin(17.0 * i);
    y[i] = r * sin(t) + 0.05 * cos(13.0 * i);
    c[i] = t;
  }
  bwt_plot_axes ax = {"PCA of activations", "PC 1", "PC 2", 0, 0};
  assert_int_equal(bwt_plot_scatter(stem_in(dir, "scatter"), &ax, x, y, c, NS, "position"), BWT_STATUS_OK);
  assert_figure(stem_in(dir, "scatter"));
}

static void test_heatmaps(void **state) {
  const char *dir = test_tmpdir("plot_heatmaps");
  enum { NX = 6, NY = 4 };
  double z[3][NY * NX];
  for (int k = 0; k < 3; k++)
    for (int iy = 0; iy < NY; iy++)
      for (int ix = 0; ix < NX; ix++) /* rises to the right and downwards: row 0 is the darkest */
        z[k][iy * NX + ix] = (k + 1) * (ix + NX * iy);
  z[0][0] = NAN;                      /* top left of panel 0 blank */
  z[1][NY * NX - 1] = NAN;            /* bottom right of panel 1 blank */
  static const char *const xt[NX] = {"alpha", "beta", "gamma", "delta", "epsilon", "zeta"};
  static const char *const yt[NY] = {"layer 0", "layer 1", "layer 2", "layer 3"};
  bwt_plot_panel p[3] = {
      {"head 0", z[0], NX, NY, xt, yt},
      {"head 1", z[1], NX, NY, xt, yt},
      {"head 2", z[2], NX, NY, NULL, NULL},
  };
  bwt_plot_axes ax = {"Attention by layer", "key token", "layer", 0, 0};
  assert_int_equal(bwt_plot_heatmaps(stem_in(dir, "grid"), &ax, p, 3, 0, 0, "weight"), BWT_STATUS_OK);
  assert_figure(stem_in(dir, "grid"));
  ax.title = "One panel";
  assert_int_equal(bwt_plot_heatmaps(stem_in(dir, "single"), &ax, p, 1, 0.0, 30.0, "weight"), BWT_STATUS_OK);
  assert_figure(stem_in(dir, "single"));
}

/* Many figures in one process: streams are reused without trouble. */
static void test_many(void **state) {
  const char *dir = test_tmpdir("plot_many");
  curves c;
  make_curves(&c);
  bwt_plot_series s = {"a", c.x, c.y2, NULL, NULL, N, 0, 0};
  bwt_plot_axes ax = {"repeat", "x", "y", 0, 0};
  for (int i = 0; i < 12; i++) {
    char name[32];
    snprintf(name, sizeof name, "f%d", i);
    assert_int_equal(bwt_plot_lines(stem_in(dir, name), &ax, &s, 1), BWT_STATUS_OK);
  }
  assert_figure(stem_in(dir, "f11"));
}

static void test_errors(void **state) {
  const char *dir = test_tmpdir("plot_errors");
  curves c;
  make_curves(&c);
  bwt_plot_series s = {"a", c.x, c.y2, NULL, NULL, N, 0, 0};
  bwt_plot_axes ax = {"t", "x", "y", 0, 0};
  assert_int_equal(bwt_plot_lines(stem_in(dir, "no/such/dir/fig"), &ax, &s, 1), BWT_STATUS_IO);
  assert_non_null(strstr(bwt_last_error(), "cannot write figure"));
  assert_int_equal(bwt_plot_lines(stem_in(dir, "none"), &ax, &s, 0), BWT_STATUS_ARG);
  assert_int_equal(bwt_plot_lines(NULL, &ax, &s, 1), BWT_STATUS_ARG);
  s.n = 0;
  assert_int_equal(bwt_plot_lines(stem_in(dir, "empty"), &ax, &s, 1), BWT_STATUS_ARG);
  s.n = N;
  c.x[3] = 0;
  ax.log_x = 1;
  assert_int_equal(bwt_plot_lines(stem_in(dir, "logzero"), &ax, &s, 1), BWT_STATUS_ARG);
  assert_non_null(strstr(bwt_last_error(), "log axis"));
  double one = 1;
  assert_int_equal(bwt_plot_scatter(stem_in(dir, "s"), &ax, &one, &one, &one, 0, "c"), BWT_STATUS_ARG);
  double z = NAN;
  bwt_plot_panel p = {"p", &z, 1, 1, NULL, NULL};
  assert_int_equal(bwt_plot_heatmaps(stem_in(dir, "h"), &ax, &p, 0, 0, 1, "z"), BWT_STATUS_ARG);
  assert_int_equal(bwt_plot_heatmaps(stem_in(dir, "h"), &ax, &p, 1, 0, 0, "z"), BWT_STATUS_ARG);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_lines),   cmocka_unit_test(test_scatter), cmocka_unit_test(test_heatmaps),
      cmocka_unit_test(test_many),    cmocka_unit_test(test_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
