/* The geometry report as JSON: every number of bwt_geometry except the per-row arrays. NaN (a
 * measure that does not apply, e.g. a correlation with zero variance) is written as null. */
#include <cjson/cJSON.h>
#include <stdlib.h>

#include "bwt/lab/geometry.h"

/* A (rows, cols) matrix as an array of rows. */
static cJSON *matrix(const double *x, int rows, int cols) {
  cJSON *a = cJSON_CreateArray();
  for (int r = 0; a && r < rows; r++) cJSON_AddItemToArray(a, cJSON_CreateDoubleArray(x + (size_t)r * cols, cols));
  return a;
}

static cJSON *manifold(const bwt_manifold_stats *m) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "pc1", m->pc1);
  cJSON_AddNumberToObject(o, "pc1_pc2", m->pc12);
  cJSON_AddNumberToObject(o, "dims_for_90pct", m->dims90);
  cJSON_AddNumberToObject(o, "participation_ratio", m->participation_ratio);
  cJSON_AddNumberToObject(o, "pearson_pc1_entropy", m->pearson);
  cJSON_AddNumberToObject(o, "spearman_pc1_entropy", m->spearman);
  cJSON_AddNumberToObject(o, "curvature", m->curvature);
  cJSON_AddNumberToObject(o, "straightness", m->straightness);
  cJSON_AddNumberToObject(o, "curvature_null_median", m->curvature_null);
  cJSON_AddNumberToObject(o, "curvature_null_p", m->curvature_p);
  return o;
}

char *bwt_geometry_to_json(const bwt_geometry *g) {
  cJSON *o = cJSON_CreateObject();
  if (!o) return NULL;
  int L = g->L, NH = g->NH;
  cJSON_AddNumberToObject(o, "layers", L);
  cJSON_AddNumberToObject(o, "heads", NH);
  cJSON_AddNumberToObject(o, "rows", (double)g->n_rows);
  cJSON_AddNumberToObject(o, "entropy_mae_bits", g->entropy_mae);
  cJSON_AddNumberToObject(o, "kl_bits", g->kl_bits);

  cJSON *kf = cJSON_AddObjectToObject(o, "key_frames");
  if (g->key_orth) {
    cJSON_AddNumberToObject(kf, "hypothesis_first_token", g->hyp_lo);
    cJSON_AddNumberToObject(kf, "hypotheses", g->n_hyp);
    cJSON_AddItemToObject(kf, "mean_abs_cos", matrix(g->key_orth, L, NH));
    if (g->key_orth_init) cJSON_AddItemToObject(kf, "mean_abs_cos_init", matrix(g->key_orth_init, L, NH));
    cJSON_AddNumberToObject(kf, "gaussian_expectation", g->gaussian_cos);
  } else {
    cJSON_AddStringToObject(kf, "skipped", "the task has no hypothesis tokens (continuous inputs)");
  }

  cJSON *at = cJSON_AddObjectToObject(o, "attention");
  if (g->attn_entropy) {
    cJSON_AddItemToObject(at, "entropy_bits", matrix(g->attn_entropy, L, NH));
    cJSON_AddNumberToObject(at, "uniform_entropy_bits", g->uniform_entropy);
    cJSON_AddNumberToObject(at, "first_to_last_reduction", g->attn_reduction);
    cJSON *qk = cJSON_AddArrayToObject(at, "query_key_cos");
    for (int l = 0; l < L; l++)
      cJSON_AddItemToArray(qk, matrix(g->qk_cos + (size_t)l * g->n_sup * g->T, g->n_sup, g->T));
  } else {
    cJSON_AddStringToObject(at, "skipped", "the model has no attention");
  }

  cJSON *vm = cJSON_AddObjectToObject(o, "value_manifold");
  cJSON_AddItemToObject(vm, "final", manifold(&g->final));
  cJSON *layers = cJSON_AddArrayToObject(vm, "per_layer");
  for (int l = 0; l < L; l++) cJSON_AddItemToArray(layers, manifold(&g->layer[l]));
  cJSON *pr = cJSON_AddObjectToObject(o, "entropy_probe_r2");
  cJSON_AddNumberToObject(pr, "embeddings", g->probe_r2[0]);
  cJSON_AddItemToObject(pr, "blocks", cJSON_CreateDoubleArray(g->probe_r2 + 1, L));
  cJSON_AddNumberToObject(pr, "final_norm", g->probe_r2[L + 1]);
  if (g->state) { /* Mamba: the scan's state after each supervised row */
    cJSON *ss = cJSON_AddObjectToObject(o, "scan_state");
    cJSON_AddNumberToObject(ss, "width", g->S);
    cJSON *sl = cJSON_AddArrayToObject(ss, "manifold_per_layer");
    for (int l = 0; l < L; l++) cJSON_AddItemToArray(sl, manifold(&g->state[l]));
    cJSON_AddItemToObject(ss, "entropy_probe_r2", cJSON_CreateDoubleArray(g->state_probe_r2, L));
  }
  char *text = cJSON_Print(o);
  cJSON_Delete(o);
  return text;
}
