/* Figures through PLplot's cairo driver: each figure is drawn twice, by one static draw function
 * per kind, into a fresh PLplot stream per device (pngcairo, then svgcairo).
 *
 * Data are checked and transformed (log10 on log axes, NAN for points to skip) before PLplot is
 * started, so that drawing cannot fail half way. Labels are PLplot text: '#' starts an escape
 * (#u superscript, #d subscript, #gx Greek); write "##" for a literal '#'. */
#include "bwt/lab/plot.h"

#include <errno.h>
#include <math.h>
#include <plplot.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { PAGE_W = 900, PAGE_H = 650, LEGEND_MAX = 32 };

/* cmap0 slots. PLplot paints the background with slot 0 and starts drawing in slot 1. */
enum { COL_BG = 0, COL_INK = 1, COL_SERIES = 2, N_TAB = 10, COL_BAND = COL_SERIES + N_TAB,
       COL_GRID = COL_BAND + N_TAB, COL_LEGEND_BG, COL_FRAME, N_COL0 };

/* Tableau 10 (matplotlib's default cycle): distinct and readable on white. */
static const PLINT tab10[N_TAB] = {0x1f77b4, 0xff7f0e, 0x2ca02c, 0xd62728, 0x9467bd,
                                   0x8c564b, 0xe377c2, 0x7f7f7f, 0xbcbd22, 0x17becf};
static const char MARK[] = "●"; /* markers as text: the cairo driver draws them with the font */
static const double MARK_SCALE = 0.55; /* marker size, in character heights */

typedef struct { double x0, x1, y0, y1; } range;
typedef void (*draw_fn)(const void *fig);

static void set_colours(void) {
  PLINT r[N_COL0], g[N_COL0], b[N_COL0];
  PLFLT a[N_COL0];
#define SET(i, rgb, alpha) (r[i] = (rgb) >> 16, g[i] = ((rgb) >> 8) & 255, b[i] = (rgb) & 255, a[i] = (alpha))
  SET(COL_BG, 0xffffff, 1.0);
  SET(COL_INK, 0x000000, 1.0);
  for (int i = 0; i < N_TAB; i++) {
    SET(COL_SERIES + i, tab10[i], 1.0);
    SET(COL_BAND + i, tab10[i], 0.25); /* cairo honours alpha: bands stay see-through */
  }
  SET(COL_GRID, 0xdddddd, 1.0);
  SET(COL_LEGEND_BG, 0xffffff, 0.8);
  SET(COL_FRAME, 0x999999, 1.0);
#undef SET
  plscmap0a(r, g, b, a, N_COL0);
  /* cmap1: viridis through five of its colours (dark blue → green → yellow, rising lightness). */
  static const PLFLT pos[5] = {0.0, 0.25, 0.5, 0.75, 1.0};
  static const PLFLT vr[5] = {0x44 / 255., 0x3b / 255., 0x21 / 255., 0x5e / 255., 0xfd / 255.};
  static const PLFLT vg[5] = {0x01 / 255., 0x52 / 255., 0x91 / 255., 0xc9 / 255., 0xe7 / 255.};
  static const PLFLT vb[5] = {0x54 / 255., 0x8b / 255., 0x8c / 255., 0x62 / 255., 0x25 / 255.};
  plscmap1n(256);
  plscmap1l(1, 5, pos, vr, vg, vb, NULL);
}

/* Whether PLplot has the file device: asked with a device it lacks, plinit prompts on stdin. */
static int have_device(const char *dev) {
  const char *menu[128], *name[128], **pm = menu, **pn = name;
  int n = 128;
  plgFileDevs(&pm, &pn, &n);
  for (int i = 0; i < n; i++)
    if (!strcmp(name[i], dev)) return 1;
  return 0;
}

/* Draws one figure into STEM.ext with device dev. A fresh stream per figure (plmkstrm … plend1)
 * leaves no state behind for the next call; plend() is never called because it would also unload
 * the drivers that every later figure needs again. */
static bwt_status render(const char *stem, const char *ext, const char *dev, draw_fn draw,
                         const void *fig) {
  char path[4096];
  if (snprintf(path, sizeof path, "%s.%s", stem, ext) >= (int)sizeof path)
    return bwt_fail(BWT_STATUS_ARG, "cannot write figure %s.%s: path too long", stem, ext);
  /* PLplot exit()s the process when it cannot open its output file, so try it first. */
  FILE *f = fopen(path, "wb");
  if (!f) return bwt_fail(BWT_STATUS_IO, "cannot write figure %s: %s", path, strerror(errno));
  fclose(f);
  if (!have_device(dev))
    return bwt_fail(BWT_STATUS_IO, "cannot write figure %s: PLplot has no %s device (install its cairo "
                    "driver, Debian package plplot-driver-cairo)", path, dev);
  PLINT prev = 0, strm = -1, plerr = 0;
  char plmsg[1024] = "";
  plgstrm(&prev);
  plmkstrm(&strm);
  if (strm < 0) return bwt_fail(BWT_STATUS_IO, "cannot write figure %s: no free PLplot stream", path);
  plsError(&plerr, plmsg); /* PLplot's recoverable errors land here instead of on stderr */
  plsdev(dev);
  plsfnam(path);
  plspage(0, 0, PAGE_W, PAGE_H, 0, 0);
  set_colours();
  plinit();
  pladv(0);
  draw(fig);
  plend1();
  plsstrm(prev);

  struct stat st;
  if (stat(path, &st) != 0) return bwt_fail(BWT_STATUS_IO, "cannot write figure %s: %s", path, strerror(errno));
  if (st.st_size == 0) return bwt_fail(BWT_STATUS_IO, "cannot write figure %s: PLplot wrote nothing", path);
  if (plerr) {
    const char *m = strstr(plmsg, "***\n"); /* skip PLplot's banner line */
    m = m ? m + 4 : plmsg;
    return bwt_fail(BWT_STATUS_ARG, "figure %s: PLplot: %.*s", path, (int)strcspn(m, "\n"), m);
  }
  return BWT_STATUS_OK;
}

static bwt_status render_both(const char *stem, draw_fn draw, const void *fig) {
  BWT_TRY(render(stem, "png", "pngcairo", draw, fig));
  return render(stem, "svg", "svgcairo", draw, fig);
}

/* out = v as plotted: log10 on a log axis, NAN where the point is skipped (non-finite). */
static bwt_status axis_values(double *out, const double *v, int n, int log_axis, const char *stem,
                              const char *what, const char *series) {
  for (int i = 0; i < n; i++) {
    if (!isfinite(v[i])) {
      out[i] = NAN;
    } else if (log_axis && v[i] <= 0) {
      return bwt_fail(BWT_STATUS_ARG, "figure %s: %s[%d] = %g%s cannot be shown on a log axis", stem,
                      what, i, v[i], series);
    } else {
      out[i] = log_axis ? log10(v[i]) : v[i];
    }
  }
  return BWT_STATUS_OK;
}

/* Widens r to the points where both x and y are finite. */
static void grow(range *r, const double *x, const double *y, int n) {
  for (int i = 0; i < n; i++) {
    if (!isfinite(x[i]) || !isfinite(y[i])) continue;
    r->x0 = fmin(r->x0, x[i]), r->x1 = fmax(r->x1, x[i]);
    r->y0 = fmin(r->y0, y[i]), r->y1 = fmax(r->y1, y[i]);
  }
}

static void pad(double *lo, double *hi, double frac) {
  double d = *hi > *lo ? frac * (*hi - *lo) : (*lo != 0 ? 0.1 * fabs(*lo) : 0.5);
  *lo -= d, *hi += d;
}

static const range EMPTY = {INFINITY, -INFINITY, INFINITY, -INFINITY};

static bwt_status finish_range(range *r, const char *stem) {
  if (!(r->x0 <= r->x1)) return bwt_fail(BWT_STATUS_ARG, "figure %s: no finite point to plot", stem);
  pad(&r->x0, &r->x1, 0.03);
  pad(&r->y0, &r->y1, 0.05);
  return BWT_STATUS_OK;
}

/* Viewport, window and a light grid under the data; `right` leaves room for a colour bar. */
static void frame(const bwt_plot_axes *ax, const range *r, double right) {
  plvpor(0.11, right, 0.11, 0.91);
  plwind(r->x0, r->x1, r->y0, r->y1);
  plcol0(COL_GRID);
  plwidth(1);
  plbox(ax->log_x ? "gl" : "g", 0, 0, ax->log_y ? "gl" : "g", 0, 0);
}

/* PLplot numbers only the powers of ten on a log axis: on a range of fewer than three, numbers 2×
 * and 5× too (every multiple on a very short range) so that the axis can be read. lo, hi: log10. */
static void log_labels(const char *side, double disp, double lo, double hi) {
  if (floor(hi) - ceil(lo) >= 2) return;
  for (int e = (int)floor(lo); e <= (int)ceil(hi); e++)
    for (int mult = 2; mult <= 9; mult++) {
      double v = e + log10(mult);
      if (v < lo || v > hi || (hi - lo > 0.6 && mult != 2 && mult != 5)) continue;
      char buf[32];
      snprintf(buf, sizeof buf, "%g", mult * pow(10, e));
      plmtex(side, disp, (v - lo) / (hi - lo), 0.5, buf);
    }
}

/* Box, ticks, numbers and labels over the data. Log axes: PLplot's "l" (the option behind plenv's
 * log axis codes) labels the log10 coordinates as powers of ten. */
static void axes(const bwt_plot_axes *ax, const range *r) {
  plcol0(COL_INK);
  plwidth(1);
  plbox(ax->log_x ? "bcnstl" : "bcnst", 0, 0, ax->log_y ? "bcnstl" : "bcnst", 0, 0);
  if (ax->log_x) log_labels("b", 1.6, r->x0, r->x1);
  if (ax->log_y) log_labels("l", 1.2, r->y0, r->y1);
  pllab(ax->xlabel ? ax->xlabel : "", ax->ylabel ? ax->ylabel : "", ax->title ? ax->title : "");
}

/* A vertical colour bar right of the current viewport, over cmap1 from lo to hi. It is drawn as an
 * image of BAR_STEPS values, not as a gradient: PLplot 5.15's cairo driver leaks every gradient. */
static void colour_bar(double lo, double hi, const char *label) {
  enum { BAR_STEPS = 128 };
  PLFLT w, h, ticks[1] = {0}, vals[BAR_STEPS];
  for (int i = 0; i < BAR_STEPS; i++) vals[i] = lo + (hi - lo) * i / (BAR_STEPS - 1);
  const PLFLT *values[1] = {vals};
  PLINT label_opts[1] = {PL_COLORBAR_LABEL_RIGHT}, sub_ticks[1] = {0}, n_values[1] = {BAR_STEPS};
  const char *labels[1] = {label ? label : ""}, *axis_opts[1] = {"bcvtm"};
  plcol0(COL_INK);
  plcolorbar(&w, &h, PL_COLORBAR_IMAGE, PL_POSITION_RIGHT | PL_POSITION_OUTSIDE | PL_POSITION_VIEWPORT,
             0.02, 0.0, 0.03, 1.0, COL_BG, COL_INK, 1, 0, 0, 0, 0, 1, label_opts, labels, 1, axis_opts,
             ticks, sub_ticks, n_values, values);
}

static void markers(int n, const double *x, const double *y) {
  plschr(0, MARK_SCALE);
  plstring(n, x, y, MARK);
  plschr(0, 1.0);
}

static int finite2(const double *x, const double *y, int i) { return isfinite(x[i]) && isfinite(y[i]); }

/* ---- lines ---- */

typedef struct {
  const bwt_plot_axes *ax;
  const bwt_plot_series *s;
  int ns;
  double *v;    /* per series in turn: x, y, lo, hi (n each) as plotted */
  double *poly; /* 4·max n scratch for band polygons */
  range r;
  PLINT corner; /* legend position */
} lines_fig;

/* Lines through each run of finite points (NAN breaks a line); markers where `points`, or where a
 * run is a lone point that a line could not show. */
static void trace(const double *x, const double *y, int n, int points) {
  for (int i = 0, j; i < n; i = j) {
    while (i < n && !finite2(x, y, i)) i++;
    for (j = i; j < n && finite2(x, y, j); j++) {}
    if (j - i >= 2 && !points) plline(j - i, x + i, y + i);
    else if (j > i) markers(j - i, x + i, y + i);
  }
}

/* The band between lo and hi, one polygon per run of finite points. */
static void band(const double *x, const double *lo, const double *hi, int n, double *poly) {
  for (int i = 0, j; i < n; i = j) {
    while (i < n && !(isfinite(x[i]) && isfinite(lo[i]) && isfinite(hi[i]))) i++;
    for (j = i; j < n && isfinite(x[j]) && isfinite(lo[j]) && isfinite(hi[j]); j++) {}
    int m = j - i;
    if (m < 2) continue;
    double *px = poly, *py = poly + 2 * m;
    for (int k = 0; k < m; k++) {
      px[k] = x[i + k], py[k] = hi[i + k];
      px[2 * m - 1 - k] = x[i + k], py[2 * m - 1 - k] = lo[i + k];
    }
    plfill(2 * m, px, py);
  }
}

/* How much of the data (sampled along each segment) falls in box [u0,u1]×[v0,v1] of the plot. */
static int crowding(const lines_fig *f, double u0, double u1, double v0, double v1) {
  int hits = 0;
  const double *v = f->v;
  for (int i = 0; i < f->ns; v += 4 * f->s[i].n, i++) {
    int n = f->s[i].n;
    for (int c = 1; c < 4; c++) { /* the line, then the band's edges */
      const double *x = v, *y = v + c * n;
      for (int k = 0; k < n; k++) {
        if (!finite2(x, y, k)) continue;
        int steps = k + 1 < n && finite2(x, y, k + 1) ? 8 : 1;
        for (int t = 0; t < steps; t++) {
          double xx = t ? x[k] + (x[k + 1] - x[k]) * t / steps : x[k];
          double yy = t ? y[k] + (y[k + 1] - y[k]) * t / steps : y[k];
          double u = (xx - f->r.x0) / (f->r.x1 - f->r.x0), w = (yy - f->r.y0) / (f->r.y1 - f->r.y0);
          hits += u >= u0 && u <= u1 && w >= v0 && w <= v1;
        }
      }
    }
  }
  return hits;
}

/* The legend goes in the corner that hides the least data (ties: top right first). */
static PLINT legend_corner(const lines_fig *f) {
  static const PLINT corner[4] = {PL_POSITION_TOP | PL_POSITION_RIGHT, PL_POSITION_TOP | PL_POSITION_LEFT,
                                  PL_POSITION_BOTTOM | PL_POSITION_RIGHT, PL_POSITION_BOTTOM | PL_POSITION_LEFT};
  int entries = 0;
  for (int i = 0; i < f->ns; i++) entries += f->s[i].label && *f->s[i].label;
  double w = 0.35, h = fmin(0.9, 0.04 + 0.065 * entries);
  int best = 0, best_hits = -1;
  for (int c = 0; c < 4; c++) {
    double u0 = c % 2 ? 0 : 1 - w, v0 = c < 2 ? 1 - h : 0;
    int hits = crowding(f, u0, u0 + w, v0, v0 + h);
    if (best_hits < 0 || hits < best_hits) best = c, best_hits = hits;
  }
  return corner[best];
}

/* The palette slot of series i: its own colour if it names one, else the next in turn. */
static int palette(const bwt_plot_series *s, int i) { return (s->colour > 0 ? s->colour - 1 : i) % N_TAB; }

static void legend(const lines_fig *f) {
  PLINT opt[LEGEND_MAX], col[LEGEND_MAX], ink[LEGEND_MAX], style[LEGEND_MAX], nsym[LEGEND_MAX];
  PLFLT width[LEGEND_MAX], scale[LEGEND_MAX], lw, lh;
  const char *text[LEGEND_MAX], *sym[LEGEND_MAX];
  int k = 0;
  for (int i = 0; i < f->ns && k < LEGEND_MAX; i++) {
    if (!f->s[i].label || !*f->s[i].label) continue;
    opt[k] = f->s[i].points ? PL_LEGEND_SYMBOL : PL_LEGEND_LINE;
    col[k] = COL_SERIES + palette(&f->s[i], i), ink[k] = COL_INK, style[k] = 1, nsym[k] = 1;
    width[k] = 2.0, scale[k] = MARK_SCALE, text[k] = f->s[i].label, sym[k] = MARK;
    k++;
  }
  if (!k) return;
  pllegend(&lw, &lh, PL_LEGEND_BACKGROUND | PL_LEGEND_BOUNDING_BOX,
           f->corner | PL_POSITION_INSIDE | PL_POSITION_VIEWPORT, 0.02, 0.03, 0.06, COL_LEGEND_BG,
           COL_FRAME, 1, 0, 0, k, opt, 1.0, 0.9, 2.0, 0.0, ink, text, col, style, scale, width, col,
           style, width, col, scale, nsym, sym);
}

static void draw_lines(const void *fig) {
  const lines_fig *f = fig;
  frame(f->ax, &f->r, 0.96);
  const double *v = f->v;
  for (int i = 0; i < f->ns; v += 4 * f->s[i].n, i++) { /* bands first: lines stay on top */
    if (!f->s[i].lo) continue;
    plcol0(COL_BAND + palette(&f->s[i], i));
    band(v, v + 2 * f->s[i].n, v + 3 * f->s[i].n, f->s[i].n, f->poly);
  }
  v = f->v;
  for (int i = 0; i < f->ns; v += 4 * f->s[i].n, i++) {
    plcol0(COL_SERIES + palette(&f->s[i], i));
    plwidth(2);
    trace(v, v + f->s[i].n, f->s[i].n, f->s[i].points);
  }
  axes(f->ax, &f->r);
  legend(f);
}

bwt_status bwt_plot_lines(const char *stem, const bwt_plot_axes *ax, const bwt_plot_series *s,
                          int n_series) {
  if (!stem || !ax || !s) return bwt_fail(BWT_STATUS_ARG, "bwt_plot_lines: NULL stem, axes or series");
  if (n_series < 1) return bwt_fail(BWT_STATUS_ARG, "figure %s: %d series (need at least 1)", stem, n_series);
  size_t total = 0;
  int maxn = 0;
  for (int i = 0; i < n_series; i++) {
    if (!s[i].x || !s[i].y || s[i].n < 1)
      return bwt_fail(BWT_STATUS_ARG, "figure %s: series %d has no data (x, y NULL or n = %d)", stem, i, s[i].n);
    if (!s[i].lo != !s[i].hi)
      return bwt_fail(BWT_STATUS_ARG, "figure %s: series %d has only one of lo, hi", stem, i);
    total += 4 * (size_t)s[i].n;
    if (s[i].n > maxn) maxn = s[i].n;
  }
  lines_fig f = {ax, s, n_series, NULL, NULL, EMPTY, 0};
  f.v = bwt_calloc(total + 4 * (size_t)maxn, sizeof(double), "line plot data");
  if (!f.v) return BWT_STATUS_NOMEM;
  f.poly = f.v + total;
  bwt_status st = BWT_STATUS_OK;
  double *v = f.v;
  for (int i = 0; i < n_series && !st; v += 4 * s[i].n, i++) {
    int n = s[i].n;
    char who[96];
    if (s[i].label) snprintf(who, sizeof who, " (series \"%.60s\")", s[i].label);
    else snprintf(who, sizeof who, " (series %d)", i);
    st = axis_values(v, s[i].x, n, ax->log_x, stem, "x", who);
    if (!st) st = axis_values(v + n, s[i].y, n, ax->log_y, stem, "y", who);
    if (!st && s[i].lo) st = axis_values(v + 2 * n, s[i].lo, n, ax->log_y, stem, "lo", who);
    if (!st && s[i].lo) st = axis_values(v + 3 * n, s[i].hi, n, ax->log_y, stem, "hi", who);
    if (!s[i].lo)
      for (int k = 2 * n; k < 4 * n; k++) v[k] = NAN;
    for (int c = 1; c < 4 && !st; c++) grow(&f.r, v, v + c * n, n);
  }
  if (!st) st = finish_range(&f.r, stem);
  if (!st) f.corner = legend_corner(&f), st = render_both(stem, draw_lines, &f);
  free(f.v);
  return st;
}

/* ---- scatter ---- */

typedef struct {
  const bwt_plot_axes *ax;
  const char *clabel;
  const double *x, *y, *t; /* (n) as plotted; t: colour in [0, 1] or NAN */
  int n;
  range r;
  double c0, c1;
} scatter_fig;

static void draw_scatter(const void *fig) {
  const scatter_fig *f = fig;
  frame(f->ax, &f->r, 0.83);
  for (int i = 0; i < f->n; i++) {
    if (!finite2(f->x, f->y, i) || !isfinite(f->t[i])) continue;
    plcol1(f->t[i]);
    markers(1, f->x + i, f->y + i);
  }
  axes(f->ax, &f->r);
  colour_bar(f->c0, f->c1, f->clabel);
}

bwt_status bwt_plot_scatter(const char *stem, const bwt_plot_axes *ax, const double *x,
                            const double *y, const double *c, int n, const char *clabel) {
  if (!stem || !ax || !x || !y || !c)
    return bwt_fail(BWT_STATUS_ARG, "bwt_plot_scatter: NULL stem, axes or data");
  if (n < 1) return bwt_fail(BWT_STATUS_ARG, "figure %s: %d points (need at least 1)", stem, n);
  double *v = bwt_calloc(3 * (size_t)n, sizeof(double), "scatter data");
  if (!v) return BWT_STATUS_NOMEM;
  scatter_fig f = {ax, clabel, v, v + n, v + 2 * (size_t)n, n, EMPTY, INFINITY, -INFINITY};
  bwt_status st = axis_values(v, x, n, ax->log_x, stem, "x", "");
  if (!st) st = axis_values(v + n, y, n, ax->log_y, stem, "y", "");
  for (int i = 0; i < n; i++) /* the colour range over the points that will be drawn */
    if (finite2(v, v + n, i) && isfinite(c[i])) f.c0 = fmin(f.c0, c[i]), f.c1 = fmax(f.c1, c[i]);
  if (!st && f.c0 == f.c1) f.c0 -= 0.5, f.c1 += 0.5;
  for (int i = 0; i < n; i++) {
    v[2 * n + i] = isfinite(c[i]) ? (c[i] - f.c0) / (f.c1 - f.c0) : NAN;
    if (!isfinite(c[i])) v[i] = NAN; /* no colour: not drawn, not in the axis range */
  }
  if (!st) grow(&f.r, v, v + n, n);
  if (!st) st = finish_range(&f.r, stem);
  if (!st) st = render_both(stem, draw_scatter, &f);
  free(v);
  return st;
}

/* ---- heatmaps ---- */

typedef struct {
  const bwt_plot_axes *ax;
  const bwt_plot_panel *p;
  int n;
  double zmin, zmax;
  const char *zlabel;
} heat_fig;

/* One filled square per cell, row 0 at the top. (Not plimagefr: whether it draws nx or nx − 1
 * columns, and whether it skips NAN, changed between PLplot releases.) */
static void cells(const bwt_plot_panel *p, double zmin, double zmax) {
  for (int iy = 0; iy < p->ny; iy++) {
    PLFLT y[4] = {p->ny - iy, p->ny - iy, p->ny - iy - 1, p->ny - iy - 1};
    for (int ix = 0; ix < p->nx; ix++) {
      double z = p->z[(size_t)iy * p->nx + ix];
      if (isnan(z)) continue;
      PLFLT x[4] = {ix, ix + 1, ix + 1, ix};
      plcol1((fmin(fmax(z, zmin), zmax) - zmin) / (zmax - zmin)); /* out of scale: saturate */
      plfill(4, x, y);
    }
  }
}

/* Page metrics: one character height in NDC along x and y, and the page size in mm. */
typedef struct { double cx, cy, wmm, hmm, ht; } metrics;

static const char *tick(const char *const *names, int i, char buf[16]) {
  if (names) return names[i] ? names[i] : "";
  snprintf(buf, 16, "%d", i);
  return buf;
}

/* Estimated width of a text, in character heights (measured with the cairo driver's sans font:
 * digits and capitals ~0.85, lower case ~0.75 on average; UTF-8 continuation bytes add nothing). */
static double text_w(const char *s) {
  double w = 0;
  for (const unsigned char *c = (const unsigned char *)s; *c; c++)
    if ((*c & 0xc0) != 0x80) w += (*c >= '0' && *c <= '9') || (*c >= 'A' && *c <= 'Z') ? 0.85 : 0.75;
  return w;
}

static double widest(const char *const *names, int n) {
  double w = 0;
  char buf[16];
  for (int i = 0; i < n; i++) w = fmax(w, text_w(tick(names, i, buf)));
  return w;
}

/* Labels every step-th category so that neighbours do not overlap. */
static int tick_step(double need_mm, double cell_mm) { return need_mm <= cell_mm ? 1 : (int)ceil(need_mm / cell_mm); }

/* Index labels step by 1, 2, 5, 10, 20, … */
static int nice_step(int s) {
  for (int b = 1;; b *= 10)
    for (int m = 1; m <= 5; m += m == 1 ? 1 : 3)
      if (s <= m * b) return m * b;
}

/* Panel k inside page cell [x0,x1]×[y0,y1] (NDC), margins sized in characters from the widest tick
 * labels. */
static void panel(const heat_fig *f, int k, double x0, double x1, double y0, double y1, const metrics *m) {
  const bwt_plot_panel *p = &f->p[k];
  const char *xl = f->ax->xlabel, *yl = f->ax->ylabel;
  double wx = widest(p->xticks, p->nx), wy = widest(p->yticks, p->ny);
  double left = fmin((wy + 1.0 + (yl ? 2.2 : 0)) * m->cx, 0.45 * (x1 - x0));
  double right = 1.5 * m->cx;
  double cell_w = (x1 - x0 - left - right) * m->wmm / p->nx;
  /* Categories are all named, vertically when they do not fit side by side; indices are thinned. */
  int sx = tick_step((wx + 0.8) * m->ht, cell_w), rot = p->xticks && sx > 1;
  if (rot) sx = tick_step(1.7 * m->ht, cell_w); /* one line of text per label */
  if (!p->xticks) sx = nice_step(sx);
  double xt = rot ? wx + 0.8 : 2.0;         /* characters below the box taken by tick labels */
  double bottom = fmin((xt + (xl ? 2.2 : 0.5)) * m->cy, 0.45 * (y1 - y0));
  double top = (p->title ? 2.2 : 0.8) * m->cy;
  plvpor(x0 + left, x1 - right, y0 + bottom, y1 - top);
  plwind(0, p->nx, 0, p->ny);
  cells(p, f->zmin, f->zmax);
  plcol0(COL_INK);
  plwidth(1);
  plbox("bc", 0, 0, "bc", 0, 0);
  double cell_h = (y1 - y0 - bottom - top) * m->hmm / p->ny;
  int sy = tick_step(1.7 * m->ht, cell_h);
  if (!p->yticks) sy = nice_step(sy);
  char buf[16];
  for (int i = 0; i < p->nx; i += sx)
    plmtex(rot ? "bv" : "b", rot ? 0.6 : 1.3, (i + 0.5) / p->nx, rot ? 1.0 : 0.5, tick(p->xticks, i, buf));
  for (int i = 0; i < p->ny; i += sy) /* row 0 at the top */
    plmtex("lv", 0.6, 1.0 - (i + 0.5) / p->ny, 1.0, tick(p->yticks, i, buf));
  if (p->title) plmtex("t", 0.8, 0.5, 0.5, p->title);
  if (xl) plmtex("b", xt + 1.1, 0.5, 0.5, xl);
  if (yl) plmtex("l", wy + 1.8, 0.5, 0.5, yl);
}

static void draw_heatmaps(const void *fig) {
  const heat_fig *f = fig;
  int cols = (int)ceil(sqrt(f->n)), rows = (f->n + cols - 1) / cols;
  PLFLT def, ht, sx0, sx1, sy0, sy1;
  plschr(0, rows > 2 ? 0.75 : rows > 1 ? 0.85 : 1.0); /* small panels, small text */
  plgchr(&def, &ht);
  plgspa(&sx0, &sx1, &sy0, &sy1);
  metrics m = {ht / (sx1 - sx0), ht / (sy1 - sy0), sx1 - sx0, sy1 - sy0, ht};
  double right = 1 - 9 * m.cx, top = 1 - 3 * m.cy; /* room for the colour bar and the title */
  double gw = right / cols, gh = top / rows;
  for (int k = 0; k < f->n; k++) {
    int r = k / cols, c = k % cols;
    panel(f, k, c * gw, (c + 1) * gw, top - (r + 1) * gh, top - r * gh, &m);
  }
  plvpor(0.05, right - 0.5 * m.cx, 0.12, top - 2 * m.cy); /* the bar spans the grid's height */
  colour_bar(f->zmin, f->zmax, f->zlabel);
  if (f->ax->title) {
    plvpor(0, 1, top, 1);
    plwind(0, 1, 0, 1);
    plschr(0, 1.15);
    plcol0(COL_INK);
    plptex(0.5, 0.45, 1, 0, 0.5, f->ax->title);
  }
}

bwt_status bwt_plot_heatmaps(const char *stem, const bwt_plot_axes *ax, const bwt_plot_panel *p,
                             int n, double zmin, double zmax, const char *zlabel) {
  if (!stem || !ax || !p) return bwt_fail(BWT_STATUS_ARG, "bwt_plot_heatmaps: NULL stem, axes or panels");
  if (n < 1) return bwt_fail(BWT_STATUS_ARG, "figure %s: %d panels (need at least 1)", stem, n);
  double lo = INFINITY, hi = -INFINITY;
  for (int k = 0; k < n; k++) {
    if (!p[k].z || p[k].nx < 1 || p[k].ny < 1)
      return bwt_fail(BWT_STATUS_ARG, "figure %s: panel %d has no data (z NULL or %d x %d)", stem, k,
                      p[k].ny, p[k].nx);
    for (size_t i = 0; i < (size_t)p[k].nx * p[k].ny; i++)
      if (isfinite(p[k].z[i])) lo = fmin(lo, p[k].z[i]), hi = fmax(hi, p[k].z[i]);
  }
  if (!(zmin < zmax)) { /* also NAN: take the scale from the data */
    if (!(lo <= hi)) return bwt_fail(BWT_STATUS_ARG, "figure %s: no finite value to plot", stem);
    zmin = lo, zmax = hi;
    if (zmin == zmax) zmin -= 0.5, zmax += 0.5;
  } else if (!isfinite(zmin) || !isfinite(zmax)) {
    return bwt_fail(BWT_STATUS_ARG, "figure %s: colour scale [%g, %g] is not finite", stem, zmin, zmax);
  }
  heat_fig f = {ax, p, n, zmin, zmax, zlabel};
  return render_both(stem, draw_heatmaps, &f);
}
