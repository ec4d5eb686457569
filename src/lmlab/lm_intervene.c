/* Interventions on the entropy axis (bwt/lab/lm_intervene.h): the axis and its random control, the
 * edit of layer ℓ's final-token values through bwt_lm_edit_run, and the effects. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "bwt/fileio.h"
#include "bwt/lab/lm_geometry.h"
#include "bwt/lab/lm_intervene.h"
#include "bwt/lab/plot.h"
#include "bwt/lm_edit.h"
#include "bwt/rng.h"

void bwt_lm_axis_apply(bwt_axis_op op, double alpha, double s, const double *u, const double *mu, const double *sd,
                       int d, float *v) {
  double proj = 0;
  for (int j = 0; j < d; j++) proj += (v[j] - mu[j]) / sd[j] * u[j];
  for (int j = 0; j < d; j++) {
    double z = (v[j] - mu[j]) / sd[j], dz;
    if (op == BWT_AXIS_CUT) dz = -alpha * proj * u[j];
    else if (op == BWT_AXIS_KEEP) dz = -alpha * (z - proj * u[j]);
    else dz = alpha * s * u[j];
    if (dz != 0) v[j] = (float)(v[j] + sd[j] * dz);
  }
}

bwt_status bwt_lm_random_orthogonal_axis(const double *u, int d, uint64_t seed, double *r) {
  if (d < 2) return bwt_fail(BWT_STATUS_ARG, "a random axis orthogonal to u needs d >= 2 (got %d)", d);
  bwt_rng rng;
  bwt_rng_seed(&rng, seed, 0x7a11);
  double norm = 0;
  while (!(norm > 1e-6)) {
    for (int j = 0; j < d; j++) r[j] = bwt_rng_normal(&rng);
    for (int pass = 0; pass < 2; pass++) {
      double dot = 0;
      for (int j = 0; j < d; j++) dot += r[j] * u[j];
      for (int j = 0; j < d; j++) r[j] -= dot * u[j];
    }
    norm = 0;
    for (int j = 0; j < d; j++) norm += r[j] * r[j];
    norm = sqrt(norm);
  }
  for (int j = 0; j < d; j++) r[j] /= norm;
  return BWT_STATUS_OK;
}

typedef struct {
  const bwt_lm_intervention *iv;
  const double *axis;
  bwt_axis_op op;
  double alpha;
} edit_ctx;

/* Edits the final row of a (T, NKV, hs) hook_v. */
static int edit_final_values(void *ctx, const char *name, float *data, int ndim, const int64_t *shape) {
  const edit_ctx *e = ctx;
  size_t d = (size_t)shape[1] * (size_t)shape[2];
  if ((int)d != e->iv->d) return 1;
  bwt_lm_axis_apply(e->op, e->alpha, e->iv->score_sd, e->axis, e->iv->mu, e->iv->sd, e->iv->d, data + (size_t)(shape[0] - 1) * d);
  return 0;
}

/* Runs ids with the edit (axis NULL: none), the final-token values of the layer into v (d) if not
 * NULL and the final logits into logits (V). all (n,V) is scratch. */
static bwt_status run_edited(bwt_lm *lm, const bwt_lm_intervention *iv, const double *axis, bwt_axis_op op, double alpha,
                             const int32_t *ids, int n, float *v, float *logits) {
  const bwt_lm_config *c = bwt_lm_config_of(lm);
  char point[BWT_LM_NAME_MAX];
  snprintf(point, sizeof point, "blocks.%d.attn.hook_v", iv->layer);
  edit_ctx e = {iv, axis, op, alpha};
  bwt_lm_edit ed = {point, edit_final_values, &e};
  const char *pats[] = {point};
  float *all = malloc((size_t)n * c->V * sizeof *all);
  if (!all) return bwt_fail(BWT_STATUS_NOMEM, "out of memory");
  bwt_lm_capture cap;
  bwt_status s = bwt_lm_edit_run(lm, ids, n, &ed, axis ? 1 : 0, pats, v ? 1 : 0, &cap, all);
  if (s == BWT_STATUS_OK && v) memcpy(v, cap.acts[0].data + (size_t)(n - 1) * iv->d, (size_t)iv->d * sizeof *v);
  if (s == BWT_STATUS_OK) memcpy(logits, all + (size_t)(n - 1) * c->V, (size_t)c->V * sizeof *logits);
  bwt_lm_capture_free(&cap);
  free(all);
  return s;
}

bwt_status bwt_lm_intervene_logits(bwt_lm *lm, const bwt_lm_intervention *iv, const double *axis, bwt_axis_op op,
                                   double alpha, const int32_t *ids, int n, float *logits) {
  return run_edited(lm, iv, axis, op, alpha, ids, n, NULL, logits);
}

static double h2(double p) {
  double q = 1 - p, h = 0;
  if (p > 0) h -= p * log2(p);
  if (q > 0) h -= q * log2(q);
  return h;
}

bwt_status bwt_lm_sula_mae(bwt_lm *lm, const bwt_lm_intervention *iv, const double *axis, bwt_axis_op op, double alpha,
                           const bwt_lm_record *r, int n, double *mae) {
  const bwt_lm_config *c = bwt_lm_config_of(lm);
  float *logits = malloc((size_t)c->V * sizeof *logits);
  if (!logits) return bwt_fail(BWT_STATUS_NOMEM, "out of memory");
  bwt_status s = BWT_STATUS_OK;
  double sum = 0;
  for (int i = 0; s == BWT_STATUS_OK && i < n; i++) {
    s = run_edited(lm, iv, axis, op, alpha, r[i].tokens, r[i].T, NULL, logits);
    /* p_A renormalised over the two labels: 1 / (1 + e^(l_B − l_A)). */
    double pa = 1 / (1 + exp((double)logits[r[i].labels[1]] - logits[r[i].labels[0]]));
    sum += fabs(h2(pa) - h2(r[i].posterior[0]));
  }
  free(logits);
  *mae = n ? sum / n : NAN;
  return s;
}

void bwt_lm_intervention_free(bwt_lm_intervention *iv) {
  if (!iv) return;
  free(iv->u), free(iv->r), free(iv->mu), free(iv->sd);
  memset(iv, 0, sizeof *iv);
}

bwt_status bwt_lm_intervene(bwt_lm *lm, const bwt_lm_pool *prompts, int layer, double alpha, uint64_t seed,
                            const bwt_lm_record *sula, int n_sula, bwt_lm_intervention *iv,
                            void (*progress)(void *ctx, int i, int n), void *ctx) {
  memset(iv, 0, sizeof *iv);
  const bwt_lm_config *c = bwt_lm_config_of(lm);
  int n = prompts->n, d = c->NKV * c->hs;
  if (layer < 0 || layer >= c->L) return bwt_fail(BWT_STATUS_ARG, "layer %d is outside the model's 0..%d", layer, c->L - 1);
  if (n < 3) return bwt_fail(BWT_STATUS_ARG, "interventions need at least 3 prompts (got %d)", n);
  iv->layer = layer, iv->d = d, iv->n = n, iv->n_sula = n_sula;
  iv->u = calloc((size_t)d, sizeof *iv->u), iv->r = calloc((size_t)d, sizeof *iv->r);
  iv->mu = calloc((size_t)d, sizeof *iv->mu), iv->sd = calloc((size_t)d, sizeof *iv->sd);
  float *V = calloc((size_t)n * d, sizeof *V), *logits = calloc((size_t)c->V, sizeof *logits);
  double *H0 = calloc((size_t)n, sizeof *H0), *H = calloc((size_t)n, sizeof *H), *sc = calloc((size_t)2 * n, sizeof *sc);
  bwt_status s = iv->u && iv->r && iv->mu && iv->sd && V && logits && H0 && H && sc ? BWT_STATUS_OK : bwt_fail(BWT_STATUS_NOMEM, "out of memory");
  /* The unedited values, the axis and the standardisation. */
  for (int i = 0; s == BWT_STATUS_OK && i < n; i++) {
    s = run_edited(lm, iv, NULL, BWT_AXIS_CUT, 0, prompts->p[i].ids, prompts->p[i].n, V + (size_t)i * d, logits);
    H0[i] = bwt_lm_entropy_bits(logits, c->V);
  }
  double pc12, pr;
  if (s == BWT_STATUS_OK) s = bwt_lm_manifold_stats(V, n, d, H0, &iv->pc1, &pc12, &pr, &iv->spearman, iv->u, sc);
  if (s == BWT_STATUS_OK) {
    bwt_lm_standardise_fit(V, n, d, iv->mu, iv->sd);
    double m = 0, v = 0;
    for (int i = 0; i < n; i++) m += sc[2 * i] / n;
    for (int i = 0; i < n; i++) v += (sc[2 * i] - m) * (sc[2 * i] - m) / n;
    iv->score_sd = sqrt(v);
    s = bwt_lm_random_orthogonal_axis(iv->u, d, seed, iv->r);
  }
  iv->sula_mae = NAN;
  if (s == BWT_STATUS_OK && sula) s = bwt_lm_sula_mae(lm, iv, NULL, BWT_AXIS_CUT, 0, sula, n_sula, &iv->sula_mae);
  static const struct {
    const char *name;
    bwt_axis_op op;
    double sign;
  } ops[4] = {{"cut", BWT_AXIS_CUT, 1}, {"keep_only", BWT_AXIS_KEEP, 1}, {"shift_plus", BWT_AXIS_SHIFT, 1}, {"shift_minus", BWT_AXIS_SHIFT, -1}};
  for (int k = 0; s == BWT_STATUS_OK && k < 8; k++) {
    const double *axis = k % 2 ? iv->r : iv->u;
    bwt_lm_intervention_effect *e = &iv->effects[iv->n_effects++];
    snprintf(e->op, sizeof e->op, "%s", ops[k / 2].name);
    snprintf(e->axis, sizeof e->axis, "%s", k % 2 ? "random" : "entropy");
    e->alpha = ops[k / 2].sign * alpha;
    if (progress) progress(ctx, k, 8);
    float *Ve = calloc((size_t)n * d, sizeof *Ve);
    if (!Ve) s = bwt_fail(BWT_STATUS_NOMEM, "out of memory");
    for (int i = 0; s == BWT_STATUS_OK && i < n; i++) {
      s = run_edited(lm, iv, axis, ops[k / 2].op, e->alpha, prompts->p[i].ids, prompts->p[i].n, Ve + (size_t)i * d, logits);
      H[i] = bwt_lm_entropy_bits(logits, c->V);
      e->mean_entropy_change += (H[i] - H0[i]) / n;
      e->mean_abs_entropy_change += fabs(H[i] - H0[i]) / n;
    }
    double p1, p2, prr;
    e->spearman = NAN;
    if (s == BWT_STATUS_OK && bwt_lm_manifold_stats(Ve, n, d, H, &p1, &p2, &prr, &e->spearman, NULL, NULL) != BWT_STATUS_OK)
      e->spearman = NAN; /* degenerate after the edit (keep-only leaves rank 1) */
    free(Ve);
    e->sula_mae = NAN;
    if (s == BWT_STATUS_OK && sula) s = bwt_lm_sula_mae(lm, iv, axis, ops[k / 2].op, e->alpha, sula, n_sula, &e->sula_mae);
  }
  free(V), free(logits), free(H0), free(H), free(sc);
  if (s != BWT_STATUS_OK) bwt_lm_intervention_free(iv);
  return s;
}

char *bwt_lm_intervention_to_json(const bwt_lm_intervention *iv, int n_layers, const char *model, const char *pool) {
  cJSON *o = cJSON_CreateObject();
  if (!o) return NULL;
  cJSON_AddStringToObject(o, "model", model);
  cJSON_AddStringToObject(o, "pool", pool);
  cJSON_AddStringToObject(o, "axis_definition", "u_ent: PC1 of the final-token values (hook_v, all KV heads) of the layer, z-scored per coordinate over the prompts");
  cJSON *ls = cJSON_AddArrayToObject(o, "layers");
  for (int l = 0; l < n_layers; l++) {
    const bwt_lm_intervention *v = &iv[l];
    cJSON *e = cJSON_CreateObject();
    cJSON_AddNumberToObject(e, "layer", v->layer);
    cJSON_AddNumberToObject(e, "prompts", v->n);
    cJSON_AddNumberToObject(e, "dim", v->d);
    cJSON_AddNumberToObject(e, "pc1", v->pc1);
    cJSON_AddNumberToObject(e, "pc1_score_sd", v->score_sd);
    cJSON_AddNumberToObject(e, "spearman_pc1_entropy", v->spearman);
    double dot = 0;
    for (int j = 0; j < v->d; j++) dot += v->u[j] * v->r[j];
    cJSON_AddNumberToObject(e, "random_axis_dot_u", dot);
    cJSON_AddNumberToObject(e, "sula_records", v->n_sula);
    cJSON_AddNumberToObject(e, "sula_entropy_mae_bits", v->sula_mae);
    cJSON *ef = cJSON_AddArrayToObject(e, "interventions");
    for (int k = 0; k < v->n_effects; k++) {
      const bwt_lm_intervention_effect *x = &v->effects[k];
      cJSON *r = cJSON_CreateObject();
      cJSON_AddStringToObject(r, "op", x->op);
      cJSON_AddStringToObject(r, "axis", x->axis);
      cJSON_AddNumberToObject(r, "alpha", x->alpha);
      cJSON_AddNumberToObject(r, "spearman_pc1_entropy", x->spearman);
      cJSON_AddNumberToObject(r, "mean_entropy_change_bits", x->mean_entropy_change);
      cJSON_AddNumberToObject(r, "mean_abs_entropy_change_bits", x->mean_abs_entropy_change);
      cJSON_AddNumberToObject(r, "sula_entropy_mae_bits", x->sula_mae);
      cJSON_AddItemToArray(ef, r);
    }
    cJSON_AddItemToArray(ls, e);
  }
  char *s = cJSON_Print(o);
  cJSON_Delete(o);
  return s;
}

bwt_status bwt_lm_intervention_figure(const bwt_lm_intervention *iv, int n_layers, const char *dir) {
  BWT_TRY(bwt_mkdir_p(dir));
  bwt_plot_panel *p = calloc((size_t)n_layers, sizeof *p);
  double *z = calloc((size_t)n_layers * 10, sizeof *z);
  char (*titles)[32] = calloc((size_t)n_layers, sizeof *titles);
  if (!p || !z || !titles) return free(p), free(z), free(titles), bwt_fail(BWT_STATUS_NOMEM, "out of memory");
  static const char *const rows[] = {"no edit", "cut", "keep only", "shift +", "shift -"};
  static const char *const cols[] = {"entropy axis", "random axis"};
  for (int l = 0; l < n_layers; l++) {
    double *zl = z + (size_t)l * 10;
    zl[0] = zl[1] = iv[l].spearman;
    for (int k = 0; k < iv[l].n_effects && k < 8; k++) zl[2 + k] = iv[l].effects[k].spearman; /* row 1 + k/2, column k%2 */
    snprintf(titles[l], sizeof titles[l], "layer %d", iv[l].layer);
    p[l] = (bwt_plot_panel){titles[l], zl, 2, 5, cols, rows};
  }
  char path[4200];
  snprintf(path, sizeof path, "%s/intervene_spearman", dir);
  bwt_plot_axes ax = {"Spearman(PC1, H) after each edit", "axis", "edit", 0, 0};
  bwt_status s = bwt_plot_heatmaps(path, &ax, p, n_layers, -1, 1, "Spearman");
  free(p), free(z), free(titles);
  return s;
}
