/* Reading the attention timescales back from a run's training log (bwt/lab/timescales.h). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/fileio.h"
#include "bwt/lab/plot.h"
#include "bwt/lab/timescales.h"

static const char *const parts[BWT_TS_PARTS] = {"q", "k", "v", "o"};

void bwt_timescales_free(bwt_timescales *t) {
  free(t->step), free(t->grad), free(t->update);
  free(t->qv_early), free(t->qv_all), free(t->kv_early), free(t->kv_all), free(t->upd_qv_early), free(t->upd_qv_all);
  memset(t, 0, sizeof *t);
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Median of num[i]/den[i] over logged steps i in [0, n) (stride between steps), NAN if none. */
static double median_ratio(const double *num, const double *den, int n, size_t stride, double *scratch) {
  int k = 0;
  for (int i = 0; i < n; i++)
    if (den[i * stride] > 0) scratch[k++] = num[i * stride] / den[i * stride];
  if (!k) return NAN;
  qsort(scratch, k, sizeof *scratch, by_value);
  return k % 2 ? scratch[k / 2] : 0.5 * (scratch[k / 2 - 1] + scratch[k / 2]);
}

/* Appends one logged step's blocks; returns 0 if the line is not one. */
static int parse_line(bwt_timescales *t, const cJSON *o, int cap) {
  const cJSON *att = cJSON_GetObjectItemCaseSensitive(o, "attention"), *st = cJSON_GetObjectItemCaseSensitive(o, "step");
  if (!cJSON_IsArray(att) || !cJSON_IsNumber(st) || cJSON_GetArraySize(att) != t->L || t->n == cap) return 0;
  int l = 0;
  for (const cJSON *b = att->child; b; b = b->next, l++) {
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(b, "grad"), *u = cJSON_GetObjectItemCaseSensitive(b, "update");
    for (int p = 0; p < BWT_TS_PARTS; p++) {
      const cJSON *gv = cJSON_GetObjectItemCaseSensitive(g, parts[p]), *uv = cJSON_GetObjectItemCaseSensitive(u, parts[p]);
      if (!cJSON_IsNumber(gv) || !cJSON_IsNumber(uv)) return 0;
      size_t at = ((size_t)t->n * t->L + l) * BWT_TS_PARTS + p;
      t->grad[at] = gv->valuedouble, t->update[at] = uv->valuedouble;
    }
  }
  t->step[t->n++] = st->valueint;
  return 1;
}

bwt_status bwt_timescales_read(const char *run_dir, int total_steps, bwt_timescales *t) {
  memset(t, 0, sizeof *t);
  char path[4096];
  snprintf(path, sizeof path, "%s/metrics.jsonl", run_dir);
  char *text = NULL;
  size_t len = 0;
  BWT_TRY(bwt_read_file(path, &text, &len));
  int lines = 1, L = 0;
  for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
  /* The number of blocks, from the first line that has them. */
  for (char *line = text; *line && !L;) {
    char *end = strchr(line, '\n');
    if (end) *end = 0;
    cJSON *o = cJSON_Parse(line);
    const cJSON *att = o ? cJSON_GetObjectItemCaseSensitive(o, "attention") : NULL;
    if (cJSON_IsArray(att)) L = cJSON_GetArraySize(att);
    cJSON_Delete(o);
    if (end) *end = '\n';
    line = end ? end + 1 : line + strlen(line);
  }
  if (!L) {
    free(text);
    return bwt_fail(BWT_STATUS_FORMAT, "%s has no attention log (a transformer run from this bwt logs one)", path);
  }
  t->L = L, t->steps = total_steps;
  t->step = bwt_calloc(lines, sizeof(int), "timescales");
  t->grad = bwt_calloc((size_t)lines * L * BWT_TS_PARTS, sizeof(double), "timescales");
  t->update = bwt_calloc((size_t)lines * L * BWT_TS_PARTS, sizeof(double), "timescales");
  double **out[] = {&t->qv_early, &t->qv_all, &t->kv_early, &t->kv_all, &t->upd_qv_early, &t->upd_qv_all};
  bwt_status s = t->step && t->grad && t->update ? BWT_STATUS_OK : BWT_STATUS_NOMEM;
  for (int i = 0; i < 6 && s == BWT_STATUS_OK; i++)
    if (!(*out[i] = bwt_calloc(L, sizeof(double), "timescales"))) s = BWT_STATUS_NOMEM;
  for (char *line = text; s == BWT_STATUS_OK && *line;) {
    char *end = strchr(line, '\n');
    if (end) *end = 0;
    long failures = bwt_alloc_failures();
    cJSON *o = cJSON_Parse(line);
    if (o) parse_line(t, o, lines);
    else if (bwt_alloc_failures() != failures) s = bwt_fail(BWT_STATUS_NOMEM, "out of memory reading %s", path);
    cJSON_Delete(o);
    line = end ? end + 1 : line + strlen(line);
  }
  free(text);
  double *scratch = s == BWT_STATUS_OK ? bwt_calloc(t->n + 1, sizeof(double), "timescales") : NULL;
  if (s == BWT_STATUS_OK && !scratch) s = BWT_STATUS_NOMEM;
  int early = 0; /* logged steps in the first 10% of the run, at least one */
  while (early < t->n && t->step[early] <= 0.1 * total_steps) early++;
  if (early == 0) early = t->n > 0;
  size_t stride = (size_t)L * BWT_TS_PARTS;
  for (int l = 0; s == BWT_STATUS_OK && l < L; l++) {
    const double *g = t->grad + (size_t)l * BWT_TS_PARTS, *u = t->update + (size_t)l * BWT_TS_PARTS;
    t->qv_early[l] = median_ratio(g + BWT_TS_Q, g + BWT_TS_V, early, stride, scratch);
    t->qv_all[l] = median_ratio(g + BWT_TS_Q, g + BWT_TS_V, t->n, stride, scratch);
    t->kv_early[l] = median_ratio(g + BWT_TS_K, g + BWT_TS_V, early, stride, scratch);
    t->kv_all[l] = median_ratio(g + BWT_TS_K, g + BWT_TS_V, t->n, stride, scratch);
    t->upd_qv_early[l] = median_ratio(u + BWT_TS_Q, u + BWT_TS_V, early, stride, scratch);
    t->upd_qv_all[l] = median_ratio(u + BWT_TS_Q, u + BWT_TS_V, t->n, stride, scratch);
  }
  free(scratch);
  if (s != BWT_STATUS_OK) bwt_timescales_free(t);
  return s;
}

char *bwt_timescales_to_json(const bwt_timescales *t) {
  cJSON *o = cJSON_CreateObject();
  if (!o) return NULL;
  cJSON_AddNumberToObject(o, "logged_steps", t->n);
  cJSON_AddItemToObject(o, "grad_q_over_v_early", cJSON_CreateDoubleArray(t->qv_early, t->L));
  cJSON_AddItemToObject(o, "grad_q_over_v_all", cJSON_CreateDoubleArray(t->qv_all, t->L));
  cJSON_AddItemToObject(o, "grad_k_over_v_early", cJSON_CreateDoubleArray(t->kv_early, t->L));
  cJSON_AddItemToObject(o, "grad_k_over_v_all", cJSON_CreateDoubleArray(t->kv_all, t->L));
  cJSON_AddItemToObject(o, "update_q_over_v_early", cJSON_CreateDoubleArray(t->upd_qv_early, t->L));
  cJSON_AddItemToObject(o, "update_q_over_v_all", cJSON_CreateDoubleArray(t->upd_qv_all, t->L));
  char *text = cJSON_Print(o);
  cJSON_Delete(o);
  return text;
}

bwt_status bwt_timescales_figure(const bwt_timescales *t, const char *dir) {
  BWT_TRY(bwt_mkdir_p(dir));
  double *buf = bwt_calloc((size_t)(t->L + 1) * t->n, sizeof(double), "timescales figure");
  bwt_plot_series *s = bwt_calloc(t->L, sizeof *s, "timescales figure");
  char (*labels)[24] = bwt_calloc(t->L, sizeof *labels, "timescales figure");
  bwt_status st = buf && s && labels ? BWT_STATUS_OK : BWT_STATUS_NOMEM;
  for (int i = 0; st == BWT_STATUS_OK && i < t->n; i++) buf[i] = t->step[i];
  for (int l = 0; st == BWT_STATUS_OK && l < t->L; l++) {
    double *y = buf + (size_t)(l + 1) * t->n;
    for (int i = 0; i < t->n; i++) {
      const double *g = t->grad + ((size_t)i * t->L + l) * BWT_TS_PARTS;
      y[i] = g[BWT_TS_V] > 0 && g[BWT_TS_Q] > 0 ? g[BWT_TS_Q] / g[BWT_TS_V] : NAN;
    }
    snprintf(labels[l], sizeof *labels, "block %d", l);
    s[l] = (bwt_plot_series){labels[l], buf, y, NULL, NULL, t->n, 0, 0};
  }
  char path[4096];
  snprintf(path, sizeof path, "%s/timescales", dir);
  bwt_plot_axes ax = {"Routing vs content: gradient norm of W_Q over that of W_V", "training step",
                      "|grad W_Q| / |grad W_V|", 1, 1};
  if (st == BWT_STATUS_OK) st = bwt_plot_lines(path, &ax, s, t->L);
  free(buf);
  free(s);
  free(labels);
  return st;
}
