/* bwt_ablate: one held-out evaluation per removed component, through the forward's ablation options. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/lab/ablate.h"
#include "bwt/eval.h"
#include "bwt/fileio.h"
#include "bwt/lab/plot.h"

static const char *const branch_names[BWT_ABLATE_BRANCHES] = {"attention", "mlp", "block"};

void bwt_ablation_free(bwt_ablation *a) {
  free(a->head_dmae);
  free(a->head_dkl);
  free(a->branch_dmae);
  free(a->branch_dkl);
  memset(a, 0, sizeof *a);
}

static bwt_status evaluate(bwt_model *m, const bwt_task *task, const bwt_forward_options *opt, uint64_t seed,
                           int n_seqs, int batch, double *mae, double *kl) {
  bwt_eval_result r;
  memset(&r, 0, sizeof r);
  bwt_status s = bwt_evaluate_with(m, task, opt, seed, n_seqs, batch, &r);
  if (s == BWT_STATUS_OK) *mae = r.overall.entropy_mae, *kl = r.overall.kl_bits;
  bwt_eval_result_free(&r);
  return s;
}

static int by_damage_desc(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x < y) - (x > y);
}

/* The most critical head and how concentrated the positive damage is (none without heads). */
static bwt_status concentration(bwt_ablation *a) {
  int n = a->L * a->NH;
  if (n == 0) {
    a->critical_layer = a->critical_head = -1, a->top_share = NAN, a->heads_for_80 = 0;
    return BWT_STATUS_OK;
  }
  double *d = bwt_calloc(n, sizeof(double), "ablation"), total = 0;
  if (!d) return BWT_STATUS_NOMEM;
  int best = 0;
  for (int i = 0; i < n; i++) {
    d[i] = a->head_dmae[i] > 0 ? a->head_dmae[i] : 0;
    total += d[i];
    if (a->head_dmae[i] > a->head_dmae[best]) best = i;
  }
  a->critical_layer = best / a->NH, a->critical_head = best % a->NH;
  qsort(d, n, sizeof(double), by_damage_desc);
  a->top_share = total > 0 ? d[0] / total : NAN;
  a->heads_for_80 = 0;
  for (double acc = 0; total > 0 && a->heads_for_80 < n && acc < 0.8 * total;) acc += d[a->heads_for_80++];
  free(d);
  return BWT_STATUS_OK;
}

bwt_status bwt_ablate(bwt_model *m, const bwt_task *task, uint64_t seed, int n_seqs, int batch,
                      bwt_ablation *a, void (*progress)(void *ctx, int i, int n), void *ctx) {
  memset(a, 0, sizeof *a);
  /* A transformer loses each head, branch and block in turn; a Mamba each block (its mixer), its
   * attention and MLP columns NAN. */
  int attn = bwt_model_has(m, BWT_CAP_ATTENTION);
  if (!attn && !bwt_model_has(m, BWT_CAP_SSM))
    return bwt_fail(BWT_STATUS_ARG, "ablations need a transformer or Mamba (this model is %s)", bwt_arch_name(m->cfg.arch));
  int L = m->cfg.n_layers, NH = attn ? m->cfg.n_heads : 0, done = 0;
  int total = 1 + L * NH + L * (attn ? BWT_ABLATE_BRANCHES : 1);
  a->L = L, a->NH = NH;
  a->head_dmae = bwt_calloc((size_t)L * NH, sizeof(double), "ablation");
  a->head_dkl = bwt_calloc((size_t)L * NH, sizeof(double), "ablation");
  a->branch_dmae = bwt_calloc((size_t)L * BWT_ABLATE_BRANCHES, sizeof(double), "ablation");
  a->branch_dkl = bwt_calloc((size_t)L * BWT_ABLATE_BRANCHES, sizeof(double), "ablation");
  float *mask = bwt_calloc((size_t)L * NH + 1, sizeof(float), "ablation");
  uint8_t *skip = bwt_calloc(3 * (size_t)L, 1, "ablation"); /* attention, MLP, then block switches */
  if (!a->head_dmae || !a->head_dkl || !a->branch_dmae || !a->branch_dkl || !mask || !skip) {
    free(mask), free(skip);
    bwt_ablation_free(a);
    return BWT_STATUS_NOMEM;
  }
  for (int i = 0; i < L * NH; i++) mask[i] = 1.0f;
  bwt_status s = evaluate(m, task, NULL, seed, n_seqs, batch, &a->base_mae, &a->base_kl);
  if (progress && s == BWT_STATUS_OK) progress(ctx, ++done, total);
  double mae = NAN, kl = NAN;
  const bwt_forward_options heads = {mask, NULL, NULL, NULL}, branches = {NULL, skip, skip + L, NULL},
                            blocks = {NULL, NULL, NULL, skip + 2 * L};
  for (int i = 0; s == BWT_STATUS_OK && i < L * NH; i++) {
    mask[i] = 0;
    s = evaluate(m, task, &heads, seed, n_seqs, batch, &mae, &kl);
    mask[i] = 1.0f;
    a->head_dmae[i] = mae - a->base_mae, a->head_dkl[i] = kl - a->base_kl;
    if (progress && s == BWT_STATUS_OK) progress(ctx, ++done, total);
  }
  for (int l = 0; s == BWT_STATUS_OK && l < L; l++)
    for (int b = 0; s == BWT_STATUS_OK && b < BWT_ABLATE_BRANCHES; b++) {
      if (!attn) {
        a->branch_dmae[l * BWT_ABLATE_BRANCHES + b] = a->branch_dkl[l * BWT_ABLATE_BRANCHES + b] = NAN;
        if (b != BWT_ABLATE_BLOCK) continue;
        skip[2 * L + l] = 1;
        s = evaluate(m, task, &blocks, seed, n_seqs, batch, &mae, &kl);
        skip[2 * L + l] = 0;
        a->branch_dmae[l * BWT_ABLATE_BRANCHES + b] = mae - a->base_mae;
        a->branch_dkl[l * BWT_ABLATE_BRANCHES + b] = kl - a->base_kl;
        if (progress && s == BWT_STATUS_OK) progress(ctx, ++done, total);
        continue;
      }
      skip[l] = b != BWT_ABLATE_MLP, skip[L + l] = b != BWT_ABLATE_ATTN;
      s = evaluate(m, task, &branches, seed, n_seqs, batch, &mae, &kl);
      skip[l] = skip[L + l] = 0;
      a->branch_dmae[l * BWT_ABLATE_BRANCHES + b] = mae - a->base_mae;
      a->branch_dkl[l * BWT_ABLATE_BRANCHES + b] = kl - a->base_kl;
      if (progress && s == BWT_STATUS_OK) progress(ctx, ++done, total);
    }
  free(mask), free(skip);
  if (s == BWT_STATUS_OK) s = concentration(a);
  if (s != BWT_STATUS_OK) bwt_ablation_free(a);
  return s;
}

char *bwt_ablation_to_json(const bwt_ablation *a) {
  cJSON *o = cJSON_CreateObject();
  if (!o) return NULL;
  cJSON_AddNumberToObject(o, "base_entropy_mae_bits", a->base_mae);
  cJSON_AddNumberToObject(o, "base_kl_bits", a->base_kl);
  cJSON *heads = cJSON_AddArrayToObject(o, "heads");
  for (int i = 0; i < a->L * a->NH; i++) {
    cJSON *h = cJSON_CreateObject();
    cJSON_AddNumberToObject(h, "layer", i / a->NH);
    cJSON_AddNumberToObject(h, "head", i % a->NH);
    cJSON_AddNumberToObject(h, "delta_entropy_mae_bits", a->head_dmae[i]);
    cJSON_AddNumberToObject(h, "delta_kl_bits", a->head_dkl[i]);
    cJSON_AddItemToArray(heads, h);
  }
  cJSON *blocks = cJSON_AddArrayToObject(o, "blocks");
  for (int l = 0; l < a->L; l++) {
    cJSON *b = cJSON_CreateObject();
    cJSON_AddNumberToObject(b, "layer", l);
    for (int k = 0; k < BWT_ABLATE_BRANCHES; k++) {
      cJSON *d = cJSON_AddObjectToObject(b, branch_names[k]);
      cJSON_AddNumberToObject(d, "delta_entropy_mae_bits", a->branch_dmae[l * BWT_ABLATE_BRANCHES + k]);
      cJSON_AddNumberToObject(d, "delta_kl_bits", a->branch_dkl[l * BWT_ABLATE_BRANCHES + k]);
    }
    cJSON_AddItemToArray(blocks, b);
  }
  if (a->NH == 0) { /* no heads (Mamba) */
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    return text;
  }
  cJSON *c = cJSON_AddObjectToObject(o, "most_critical_head");
  cJSON_AddNumberToObject(c, "layer", a->critical_layer);
  cJSON_AddNumberToObject(c, "head", a->critical_head);
  cJSON_AddNumberToObject(c, "delta_entropy_mae_bits", a->head_dmae[a->critical_layer * a->NH + a->critical_head]);
  cJSON_AddNumberToObject(c, "share_of_head_damage", a->top_share);
  cJSON_AddNumberToObject(o, "heads_for_80pct_of_damage", a->heads_for_80);
  char *text = cJSON_Print(o);
  cJSON_Delete(o);
  return text;
}

bwt_status bwt_ablation_write_csv(const char *path, const bwt_ablation *a) {
  size_t cap = 128 + (size_t)(a->L * a->NH + a->L * BWT_ABLATE_BRANCHES) * 96, len = 0;
  char *buf = bwt_malloc(cap, NULL);
  if (!buf) return bwt_fail(BWT_STATUS_NOMEM, "out of memory formatting %s", path);
  len += snprintf(buf + len, cap - len, "component,layer,head,delta_entropy_mae_bits,delta_kl_bits\n");
  for (int i = 0; i < a->L * a->NH; i++)
    len += snprintf(buf + len, cap - len, "head,%d,%d,%.9g,%.9g\n", i / a->NH, i % a->NH, a->head_dmae[i], a->head_dkl[i]);
  for (int l = 0; l < a->L; l++)
    for (int k = 0; k < BWT_ABLATE_BRANCHES; k++)
      if (!isnan(a->branch_dmae[l * BWT_ABLATE_BRANCHES + k])) /* Mamba: its blocks only */
        len += snprintf(buf + len, cap - len, "%s,%d,,%.9g,%.9g\n", branch_names[k], l,
                      a->branch_dmae[l * BWT_ABLATE_BRANCHES + k], a->branch_dkl[l * BWT_ABLATE_BRANCHES + k]);
  bwt_status s = bwt_write_file_atomic(path, buf, len);
  free(buf);
  return s;
}

bwt_status bwt_ablation_figure(const bwt_ablation *a, const char *dir) {
  BWT_TRY(bwt_mkdir_p(dir));
  /* Without heads (Mamba) only the block column was measured. */
  int first = a->NH ? 0 : BWT_ABLATE_BLOCK, cols = a->NH + BWT_ABLATE_BRANCHES - first, L = a->L;
  double *z = bwt_calloc((size_t)L * cols, sizeof(double), "ablation figure");
  char (*names)[24] = bwt_calloc(cols, sizeof *names, "ablation figure");
  const char **ticks = bwt_calloc(cols, sizeof *ticks, "ablation figure");
  char (*rows)[24] = bwt_calloc(L, sizeof *rows, "ablation figure");
  const char **rticks = bwt_calloc(L, sizeof *rticks, "ablation figure");
  bwt_status s = z && names && ticks && rows && rticks ? BWT_STATUS_OK : BWT_STATUS_NOMEM;
  double zmax = 0;
  for (int l = 0; s == BWT_STATUS_OK && l < L; l++) {
    snprintf(rows[l], sizeof *rows, "layer %d", l);
    rticks[l] = rows[l];
    for (int c = 0; c < cols; c++) {
      double v = c < a->NH ? a->head_dmae[l * a->NH + c] : a->branch_dmae[l * BWT_ABLATE_BRANCHES + first + c - a->NH];
      z[l * cols + c] = v;
      zmax = fmax(zmax, fabs(v));
    }
  }
  for (int c = 0; s == BWT_STATUS_OK && c < cols; c++) {
    if (c < a->NH) snprintf(names[c], sizeof *names, "head %d", c);
    else snprintf(names[c], sizeof *names, "%s", branch_names[first + c - a->NH]);
    ticks[c] = names[c];
  }
  char path[4096];
  snprintf(path, sizeof path, "%s/ablation", dir);
  bwt_plot_panel p = {"", z, cols, L, ticks, rticks};
  bwt_plot_axes ax = {"Ablations: rise in entropy MAE when a component is removed", "component removed",
                      "layer", 0, 0};
  if (s == BWT_STATUS_OK) s = bwt_plot_heatmaps(path, &ax, &p, 1, zmax > 0 ? -zmax : -1, zmax > 0 ? zmax : 1, "delta entropy MAE (bits)");
  free(z);
  free(names);
  free(ticks);
  free(rows);
  free(rticks);
  return s;
}
