/* The language-model geometry report (bwt/lab/lm_geometry.h): the validation thresholds, JSON, and
 * the figures. NaN (a measure that does not apply) is written as null. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "bwt/fileio.h"
#include "bwt/lab/lm_geometry.h"
#include "bwt/lab/plot.h"

/* The thresholds this project applies (docs/lm.md, "Validation thresholds"), on the last layer
 * measured: the value manifold is low-dimensional (PC1+PC2 >= 0.5) and aligned with entropy
 * (|ρ| >= 0.5); trained keys are more orthogonal than at initialisation (definition a); attention
 * focuses from the first to the last layer (the reduction's 95% interval above 0). */
int bwt_lm_geometry_checks(const bwt_lm_geometry *g, bwt_lm_check *out, int cap) {
  int n = 0;
  const bwt_lm_manifold *m = g->n_manifold ? &g->manifold[g->n_manifold - 1] : NULL;
  double kw = 0, kwi = 0;
  for (int i = 0; i < g->L * g->NKV; i++) kw += g->key_w[i] / (g->L * g->NKV), kwi += g->key_w_init[i] / (g->L * g->NKV);
  if (m && n < cap) out[n++] = (bwt_lm_check){"value_manifold_pc1_pc2", "PC1+PC2 >= 0.50", m->pc12.est, m->pc12.est >= 0.5};
  if (m && n < cap) out[n++] = (bwt_lm_check){"value_manifold_abs_spearman", "|rho(PC1, H)| >= 0.50", fabs(m->spearman.est), fabs(m->spearman.est) >= 0.5};
  if (n < cap) out[n++] = (bwt_lm_check){"key_orthogonality_weights_below_init", "mean |cos| (a) < at init", kw, kw < kwi};
  if (n < cap) out[n++] = (bwt_lm_check){"attention_reduction_positive", "95% CI of 1 - H_last/H_first > 0", g->attn_reduction.est, g->attn_reduction.lo > 0};
  return n;
}

static cJSON *ci(const bwt_lm_ci *c) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "estimate", c->est);
  cJSON_AddNumberToObject(o, "ci95_lo", c->lo);
  cJSON_AddNumberToObject(o, "ci95_hi", c->hi);
  cJSON_AddNumberToObject(o, "bootstrap_mean", c->boot_mean);
  return o;
}

static cJSON *matrix(const double *x, int rows, int cols) {
  cJSON *a = cJSON_CreateArray();
  for (int r = 0; a && r < rows; r++) cJSON_AddItemToArray(a, cJSON_CreateDoubleArray(x + (size_t)r * cols, cols));
  return a;
}

/* A double array with NaN as null (cJSON_CreateDoubleArray would print them as null too, but say
 * it once here). */
static cJSON *array(const double *x, int n) { return cJSON_CreateDoubleArray(x, n); }

char *bwt_lm_geometry_to_json(const bwt_lm_geometry *g, const char *model, const char *pool) {
  cJSON *o = cJSON_CreateObject();
  if (!o) return NULL;
  int L = g->L;
  cJSON_AddStringToObject(o, "model", model);
  cJSON_AddStringToObject(o, "pool", pool);
  cJSON_AddNumberToObject(o, "layers", L);
  cJSON_AddNumberToObject(o, "heads", g->NH);
  cJSON_AddNumberToObject(o, "kv_heads", g->NKV);
  cJSON_AddNumberToObject(o, "head_dim", g->hs);
  cJSON_AddNumberToObject(o, "hidden_size", g->C);
  cJSON_AddNumberToObject(o, "prompts", g->n);
  cJSON_AddNumberToObject(o, "bootstrap_resamples", g->n_boot);
  cJSON *pr = cJSON_AddArrayToObject(o, "prompt_list");
  for (int i = 0; i < g->n; i++) {
    cJSON *p = cJSON_CreateObject();
    cJSON_AddNumberToObject(p, "tokens", g->length[i]);
    cJSON_AddNumberToObject(p, "quintile", g->quintile[i]);
    cJSON_AddStringToObject(p, "domain", g->domain[i]);
    cJSON_AddNumberToObject(p, "next_token_entropy_bits", g->entropy[i]);
    cJSON_AddItemToArray(pr, p);
  }

  cJSON *vm = cJSON_AddObjectToObject(o, "value_manifold");
  cJSON_AddStringToObject(vm, "definition", "final-token values of all KV heads (hook_v, NKV*hs), z-scored per coordinate over prompts, PCA");
  cJSON *ls = cJSON_AddArrayToObject(vm, "per_layer");
  for (int m = 0; m < g->n_manifold; m++) {
    const bwt_lm_manifold *v = &g->manifold[m];
    cJSON *e = cJSON_CreateObject();
    cJSON_AddNumberToObject(e, "layer", v->layer);
    cJSON_AddItemToObject(e, "pc1", ci(&v->pc1));
    cJSON_AddItemToObject(e, "pc1_pc2", ci(&v->pc12));
    cJSON_AddItemToObject(e, "participation_ratio", ci(&v->participation_ratio));
    cJSON_AddItemToObject(e, "spearman_pc1_entropy", ci(&v->spearman));
    cJSON_AddItemToArray(ls, e);
  }

  cJSON *ko = cJSON_AddObjectToObject(o, "key_orthogonality");
  cJSON *a = cJSON_AddObjectToObject(ko, "weights");
  cJSON_AddStringToObject(a, "definition", "(a) paper's text: mean |cos| between the d_k columns of W_K of one KV head (vectors of hidden_size)");
  cJSON_AddItemToObject(a, "mean_abs_cos", matrix(g->key_w, L, g->NKV));
  cJSON_AddItemToObject(a, "mean_abs_cos_init", matrix(g->key_w_init, L, g->NKV));
  cJSON_AddStringToObject(a, "init_source", g->init_source);
  cJSON_AddNumberToObject(a, "gaussian", g->key_w_gaussian);
  cJSON *b = cJSON_AddObjectToObject(ko, "activations");
  cJSON_AddStringToObject(b, "definition", "(b) paper's code: mean |cos| between the KV heads' keys at the final token, mean over prompts");
  cJSON_AddItemToObject(b, "mean_abs_cos_before_rope", array(g->key_act, L));
  cJSON_AddItemToObject(b, "mean_abs_cos_after_rope", array(g->key_act_rot, L));
  cJSON_AddItemToObject(b, "mean_abs_cos_before_rope_init", array(g->key_act_init, L));
  cJSON_AddItemToObject(b, "mean_abs_cos_after_rope_init", array(g->key_act_rot_init, L));
  cJSON_AddNumberToObject(b, "gaussian", g->key_act_gaussian);
  cJSON *c = cJSON_AddObjectToObject(ko, "embeddings_degenerate");
  cJSON_AddStringToObject(c, "definition", "(c) paper's code, degenerate: mean |cos| between random token embeddings; no layer enters (same for every layer)");
  cJSON_AddNumberToObject(c, "mean_abs_cos", g->embed_cos);
  cJSON_AddNumberToObject(c, "tokens", g->n_embed);
  cJSON_AddNumberToObject(c, "gaussian", g->embed_gaussian);

  cJSON *at = cJSON_AddObjectToObject(o, "attention");
  cJSON_AddStringToObject(at, "definition", "entropy (bits) of the final token's attention row per head, mean over prompts");
  cJSON_AddItemToObject(at, "entropy_per_head", matrix(g->attn_head, L, g->NH));
  cJSON_AddItemToObject(at, "entropy_mean_over_heads", array(g->attn_mean_heads, L));
  cJSON_AddItemToObject(at, "entropy_of_head_mean_pattern", array(g->attn_of_mean, L));
  cJSON_AddNumberToObject(at, "uniform_entropy", g->uniform_entropy);
  cJSON_AddItemToObject(at, "reduction_first_to_last", ci(&g->attn_reduction));
  cJSON_AddItemToObject(at, "reduction_first_to_last_bits", ci(&g->attn_reduction_bits));

  bwt_lm_check chk[8];
  int nc = bwt_lm_geometry_checks(g, chk, 8);
  cJSON *th = cJSON_AddArrayToObject(o, "thresholds");
  for (int i = 0; i < nc; i++) {
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "name", chk[i].name);
    cJSON_AddStringToObject(e, "rule", chk[i].rule);
    cJSON_AddNumberToObject(e, "value", chk[i].value);
    cJSON_AddBoolToObject(e, "pass", chk[i].pass);
    cJSON_AddItemToArray(th, e);
  }
  char *s = cJSON_Print(o);
  cJSON_Delete(o);
  return s;
}

bwt_status bwt_lm_geometry_figures(const bwt_lm_geometry *g, const char *dir) {
  BWT_TRY(bwt_mkdir_p(dir));
  int L = g->L, n = g->n;
  char path[4200], title[200];
  double *buf = calloc((size_t)(3 * n + 10 * L), sizeof *buf);
  if (!buf) return bwt_fail(BWT_STATUS_NOMEM, "out of memory");
  double *x = buf, *y = buf + n, *layer = buf + 2 * n, *kw = layer + L, *kwi = kw + L, *gw = kwi + L, *ga = gw + L, *emb = ga + L, *uni = emb + L;
  const bwt_lm_manifold *m = &g->manifold[g->n_manifold - 1];
  for (int i = 0; i < n; i++) x[i] = m->scores[2 * i], y[i] = m->scores[2 * i + 1];
  snprintf(title, sizeof title, "Value manifold, layer %d: PC1 %.1f%%, PC1+2 %.1f%%, Spearman(PC1, H) %.3f", m->layer,
           100 * m->pc1.est, 100 * m->pc12.est, m->spearman.est);
  bwt_plot_axes ax = {title, "PC1 score", "PC2 score", 0, 0};
  snprintf(path, sizeof path, "%s/value_manifold", dir);
  bwt_status s = bwt_plot_scatter(path, &ax, x, y, g->entropy, n, "next-token entropy (bits)");
  for (int l = 0; l < L; l++) {
    layer[l] = l;
    kw[l] = kwi[l] = 0;
    for (int h = 0; h < g->NKV; h++) kw[l] += g->key_w[l * g->NKV + h] / g->NKV, kwi[l] += g->key_w_init[l * g->NKV + h] / g->NKV;
    gw[l] = g->key_w_gaussian, ga[l] = g->key_act_gaussian, emb[l] = g->embed_cos, uni[l] = g->uniform_entropy;
  }
  bwt_plot_series ks[8];
  int nk = 0;
  ks[nk++] = (bwt_plot_series){"(a) W_K columns, trained", layer, kw, NULL, NULL, L, 0, 1};
  ks[nk++] = (bwt_plot_series){"(a) at init", layer, kwi, NULL, NULL, L, 1, 1};
  ks[nk++] = (bwt_plot_series){"(a) Gaussian sqrt(2/(pi d_model))", layer, gw, NULL, NULL, L, 0, 2};
  if (g->NKV > 1) {
    ks[nk++] = (bwt_plot_series){"(b) KV-head keys, before RoPE", layer, g->key_act, NULL, NULL, L, 0, 3};
    if (g->R) ks[nk++] = (bwt_plot_series){"(b) after RoPE", layer, g->key_act_rot, NULL, NULL, L, 0, 4};
    if (!isnan(g->key_act_init[0])) ks[nk++] = (bwt_plot_series){"(b) at init, before RoPE", layer, g->key_act_init, NULL, NULL, L, 1, 3};
    ks[nk++] = (bwt_plot_series){"(b) Gaussian sqrt(2/(pi d_head))", layer, ga, NULL, NULL, L, 0, 5};
  }
  ks[nk++] = (bwt_plot_series){"(c) random embeddings (degenerate)", layer, emb, NULL, NULL, L, 0, 6};
  bwt_plot_axes kax = {"Key orthogonality by layer (mean |cos|)", "layer", "mean |cos|", 0, 0};
  snprintf(path, sizeof path, "%s/key_orthogonality", dir);
  if (s == BWT_STATUS_OK) s = bwt_plot_lines(path, &kax, ks, nk);
  bwt_plot_series as[3] = {
      {"mean over heads of per-head entropy", layer, g->attn_mean_heads, NULL, NULL, L, 0, 1},
      {"entropy of the head-mean pattern", layer, g->attn_of_mean, NULL, NULL, L, 0, 2},
      {"uniform over the prompt", layer, uni, NULL, NULL, L, 0, 3},
  };
  snprintf(title, sizeof title, "Attention entropy at the final token: reduction first to last %.1f%% [%.1f, %.1f]",
           100 * g->attn_reduction.est, 100 * g->attn_reduction.lo, 100 * g->attn_reduction.hi);
  bwt_plot_axes aax = {title, "layer", "entropy (bits)", 0, 0};
  snprintf(path, sizeof path, "%s/attention_entropy", dir);
  if (s == BWT_STATUS_OK) s = bwt_plot_lines(path, &aax, as, 3);
  free(buf);
  return s;
}
