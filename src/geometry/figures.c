/* The geometry figures (PNG + SVG, through bwt/lab/plot.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "bwt/fileio.h"
#include "bwt/lab/geometry.h"
#include "bwt/lab/plot.h"

static bwt_status stem(char *out, size_t cap, const char *dir, const char *name) {
  if ((size_t)snprintf(out, cap, "%s/%s", dir, name) >= cap) return bwt_fail(BWT_STATUS_ARG, "figure path too long: %s", dir);
  return BWT_STATUS_OK;
}

/* Mean and ±1 sd over sequences of a per-row quantity, per supervised position. */
static void per_position(const double *x, long R, int n, double *mean, double *lo, double *hi) {
  long seqs = R / n;
  for (int j = 0; j < n; j++) {
    double s = 0, ss = 0;
    for (long q = 0; q < seqs; q++) s += x[q * n + j];
    s /= seqs;
    for (long q = 0; q < seqs; q++) ss += (x[q * n + j] - s) * (x[q * n + j] - s);
    double sd = seqs > 1 ? sqrt(ss / (seqs - 1)) : 0;
    mean[j] = s, lo[j] = s - sd, hi[j] = s + sd;
  }
}

static bwt_status entropy_figures(const bwt_geometry *g, const char *dir) {
  int n = g->n_sup;
  double *buf = bwt_calloc(7 * (size_t)n, sizeof(double), "figures");
  if (!buf) return BWT_STATUS_NOMEM;
  double *x = buf, *mm = x + n, *ml = mm + n, *mh = ml + n, *bm = mh + n, *bl = bm + n, *bh = bl + n;
  for (int j = 0; j < n; j++) x[j] = j + 1;
  per_position(g->model_entropy, g->n_rows, n, mm, ml, mh);
  per_position(g->bayes_entropy, g->n_rows, n, bm, bl, bh);
  char path[4096];
  bwt_status s = stem(path, sizeof path, dir, "entropy_by_position");
  bwt_plot_axes ax = {"Model vs Bayes entropy per position (mean, band = 1 sd over sequences)",
                      "supervised position", "entropy (bits)", 0, 0};
  bwt_plot_series lines[2] = {{"Bayes posterior H(q)", x, bm, bl, bh, n, 0, 0}, {"model H(p)", x, mm, ml, mh, n, 0, 0}};
  if (s == BWT_STATUS_OK) s = bwt_plot_lines(path, &ax, lines, 2);
  /* A few single sequences, position by position. */
  long seqs = g->n_rows / n;
  int shown = seqs < 3 ? (int)seqs : 3;
  bwt_plot_series one[6];
  char labels[6][48];
  for (int q = 0; q < shown; q++) {
    snprintf(labels[2 * q], sizeof labels[0], "sequence %d: Bayes", q);
    snprintf(labels[2 * q + 1], sizeof labels[0], "sequence %d: model", q);
    one[2 * q] = (bwt_plot_series){labels[2 * q], x, g->bayes_entropy + (size_t)q * n, NULL, NULL, n, 1, q + 1};
    one[2 * q + 1] = (bwt_plot_series){labels[2 * q + 1], x, g->model_entropy + (size_t)q * n, NULL, NULL, n, 0, q + 1};
  }
  bwt_plot_axes ax1 = {"Single sequences: model (lines) tracks Bayes (markers)", "supervised position",
                       "entropy (bits)", 0, 0};
  if (s == BWT_STATUS_OK) s = stem(path, sizeof path, dir, "single_sequences");
  if (s == BWT_STATUS_OK) s = bwt_plot_lines(path, &ax1, one, 2 * shown);
  free(buf);
  return s;
}

/* L panels of (rows, cols) matrices stored one after another in z. */
static bwt_status layer_heatmaps(const char *path, const bwt_geometry *g, const double *z, int rows,
                                 int cols, const bwt_plot_axes *ax, double zmin, double zmax, const char *zlabel) {
  bwt_plot_panel *p = bwt_calloc(g->L, sizeof *p, "figures");
  char (*titles)[32] = bwt_calloc(g->L, sizeof *titles, "figures");
  bwt_status s = p && titles ? BWT_STATUS_OK : BWT_STATUS_NOMEM;
  for (int l = 0; s == BWT_STATUS_OK && l < g->L; l++) {
    snprintf(titles[l], sizeof *titles, "layer %d", l);
    p[l] = (bwt_plot_panel){titles[l], z + (size_t)l * rows * cols, cols, rows, NULL, NULL};
  }
  if (s == BWT_STATUS_OK) s = bwt_plot_heatmaps(path, ax, p, g->L, zmin, zmax, zlabel);
  free(p);
  free(titles);
  return s;
}

static bwt_status layer_figures(const bwt_geometry *g, const char *dir) {
  char path[4096];
  int L = g->L, NH = g->NH;
  bwt_status s = BWT_STATUS_OK;
  if (g->key_cos) {
    bwt_plot_axes ax = {"Key frames: cosine between hypothesis-token keys (all heads)", "hypothesis",
                        "hypothesis", 0, 0};
    s = stem(path, sizeof path, dir, "key_cosines");
    if (s == BWT_STATUS_OK) s = layer_heatmaps(path, g, g->key_cos, g->n_hyp, g->n_hyp, &ax, -1, 1, "cosine");
  }
  int attn = g->attn_entropy != NULL; /* the model attends (Mamba does not) */
  bwt_plot_axes am = {"Attention across layers (sequence 0, mean over heads)", "attended position",
                      "supervised position", 0, 0};
  if (s == BWT_STATUS_OK && attn) s = stem(path, sizeof path, dir, "attention_maps");
  if (s == BWT_STATUS_OK && attn) s = layer_heatmaps(path, g, g->attn_map, g->n_sup, g->T, &am, 0, 1, "attention weight");
  bwt_plot_axes qk = {"Query-key cosine (mean over sequences and heads)", "key position",
                      "supervised position", 0, 0};
  if (s == BWT_STATUS_OK && attn) s = stem(path, sizeof path, dir, "query_key_cosines");
  if (s == BWT_STATUS_OK && attn) s = layer_heatmaps(path, g, g->qk_cos, g->n_sup, g->T, &qk, -1, 1, "cosine");

  /* Focusing: head-mean entropy per layer with the spread over heads, against uniform attention. */
  double *buf = bwt_calloc(5 * (size_t)L + 2 * ((size_t)L + 2), sizeof(double), "figures");
  if (!buf) return BWT_STATUS_NOMEM;
  double *x = buf, *mean = x + L, *lo = mean + L, *hi = lo + L, *uni = hi + L, *px = uni + L, *py = px + L + 2;
  for (int l = 0; l < L; l++) {
    x[l] = l, lo[l] = INFINITY, hi[l] = -INFINITY, uni[l] = g->uniform_entropy;
    for (int h = 0; h < NH && attn; h++) {
      double e = g->attn_entropy[l * NH + h];
      mean[l] += e / NH, lo[l] = fmin(lo[l], e), hi[l] = fmax(hi[l], e);
    }
  }
  bwt_plot_series f[2] = {{"mean over heads (band: min-max)", x, mean, lo, hi, L, 0, 0},
                          {"uniform over the visible prefix", x, uni, NULL, NULL, L, 0, 0}};
  bwt_plot_axes fa = {"Attention focusing: entropy of attention at supervised positions", "layer",
                      "attention entropy (bits)", 0, 0};
  if (s == BWT_STATUS_OK && L > 1 && attn) s = stem(path, sizeof path, dir, "attention_entropy");
  if (s == BWT_STATUS_OK && L > 1 && attn) s = bwt_plot_lines(path, &fa, f, 2);
  /* Linear probe R² of the posterior entropy, embeddings through the final norm. */
  int np = 0;
  for (int i = 0; i < L + 2; i++)
    if (isfinite(g->probe_r2[i])) px[np] = i, py[np++] = g->probe_r2[i];
  bwt_plot_series pr = {"held-out R#u2#d", px, py, NULL, NULL, np, 0, 0};
  bwt_plot_axes pa = {"Linear probe of the posterior entropy (0 = embeddings, last = final norm)",
                      "depth (0 = embeddings)", "held-out R#u2#d", 0, 0};
  if (s == BWT_STATUS_OK && np > 1) s = stem(path, sizeof path, dir, "entropy_probe");
  if (s == BWT_STATUS_OK && np > 1) s = bwt_plot_lines(path, &pa, &pr, 1);
  free(buf);
  return s;
}

static bwt_status manifold_figure(const bwt_geometry *g, const char *dir) {
  long R = g->n_rows;
  double *pc = bwt_calloc(2 * (size_t)R, sizeof(double), "figures");
  if (!pc) return BWT_STATUS_NOMEM;
  for (long r = 0; r < R; r++) pc[r] = g->pc_scores[2 * r], pc[R + r] = g->pc_scores[2 * r + 1];
  char path[4096], title[160];
  snprintf(title, sizeof title, "Value manifold (final norm): PC1 %.1f%%, PC1+2 %.1f%%, Spearman(PC1, H) %.3f",
           100 * g->final.pc1, 100 * g->final.pc12, g->final.spearman);
  bwt_plot_axes ax = {title, "PC1", "PC2", 0, 0};
  bwt_status s = stem(path, sizeof path, dir, "value_manifold");
  if (s == BWT_STATUS_OK && isfinite(g->final.pc1))
    s = bwt_plot_scatter(path, &ax, pc, pc + R, g->bayes_entropy, (int)R, "posterior entropy (bits)");
  free(pc);
  return s;
}

bwt_status bwt_geometry_figures(const bwt_geometry *g, const char *dir) {
  BWT_TRY(bwt_mkdir_p(dir));
  BWT_TRY(entropy_figures(g, dir));
  BWT_TRY(layer_figures(g, dir));
  return manifold_figure(g, dir);
}

bwt_status bwt_length_figure(const char *dir, const bwt_eval_result *r, const int *lengths, int n) {
  BWT_TRY(bwt_mkdir_p(dir));
  int most = 0;
  for (int i = 0; i < n; i++) most = r[i].n_pos > most ? r[i].n_pos : most;
  double *buf = bwt_calloc((size_t)(n + 1) * most, sizeof(double), "length figure");
  bwt_plot_series *lines = bwt_calloc(n, sizeof *lines, "length figure");
  char (*labels)[32] = bwt_calloc(n, sizeof *labels, "length figure");
  bwt_status s = buf && lines && labels ? BWT_STATUS_OK : BWT_STATUS_NOMEM;
  for (int j = 0; s == BWT_STATUS_OK && j < most; j++) buf[j] = j + 1;
  for (int i = 0; s == BWT_STATUS_OK && i < n; i++) {
    double *y = buf + (size_t)(i + 1) * most;
    for (int j = 0; j < r[i].n_pos; j++) y[j] = r[i].pos[j].entropy_mae;
    snprintf(labels[i], sizeof *labels, "evaluated at K=%d", lengths[i]);
    lines[i] = (bwt_plot_series){labels[i], buf, y, NULL, NULL, r[i].n_pos, 0, 0};
  }
  char path[4096], title[128];
  snprintf(path, sizeof path, "%s/error_by_position", dir);
  /* The streams share prefixes, so a causal model's curves coincide where they overlap. */
  snprintf(title, sizeof title, "Length generalisation: entropy error per position (trained at K=%d)", lengths[0]);
  bwt_plot_axes ax = {title, "observation index t", "entropy MAE (bits)", 0, 0};
  if (s == BWT_STATUS_OK) s = bwt_plot_lines(path, &ax, lines, n);
  free(buf);
  free(lines);
  free(labels);
  return s;
}
