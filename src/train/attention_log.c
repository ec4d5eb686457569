/* Two timescales (SPEC.md §6, issue 6): per block, the gradient norms and relative update rates of
 * the attention's W_Q, W_K, W_V and W_O, logged with the training metrics so that the speed of the
 * routing (Q, K) can be set beside that of the content (V, O). */
#include <math.h>
#include <string.h>

#include <stdlib.h>

#include "io/report_json.h"
#include "train_observer.h"

static const struct {
  const char *key;
  bwt_tensor_role role;
} parts[4] = {{"q", BWT_ROLE_ATTN_Q}, {"k", BWT_ROLE_ATTN_K}, {"v", BWT_ROLE_ATTN_V}, {"o", BWT_ROLE_ATTN_O}};

/* The weight of part p of block l. */
static const bwt_tensor_desc *attn_tensor(const bwt_model *m, int l, int p) { return bwt_model_tensor(m, parts[p].role, l, 0); }

/* The weights before the step: W_Q, W_K, W_V, W_O of every block. */
static bwt_status open_log(const bwt_model *m, void **state) {
  *state = NULL;
  if (!bwt_model_has(m, BWT_CAP_ATTENTION)) return BWT_STATUS_OK;
  size_t n = (size_t)m->cfg.n_layers * 4 * m->cfg.d_model * m->cfg.d_model;
  return (*state = bwt_calloc(n, sizeof(float), "timescales log")) ? BWT_STATUS_OK : BWT_STATUS_NOMEM;
}

static void save(void *state, const bwt_model *m) {
  float *prev = state;
  for (int l = 0; l < m->cfg.n_layers; l++)
    for (int p = 0; p < 4; p++) {
      const bwt_tensor_desc *d = attn_tensor(m, l, p);
      memcpy(prev, m->params + d->offset, sizeof(float) * d->size);
      prev += d->size;
    }
}

static double norm(const float *x, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
  return sqrt(s);
}

/* Per block {"layer", "grad": {q,k,v,o} gradient norms (after clipping), "update": {q,k,v,o}
 * |ΔW|/|W|}. */
static cJSON *log_json(void *state, const bwt_model *m) {
  const float *prev = state;
  cJSON *a = cJSON_CreateArray();
  int ok = a != NULL;
  for (int l = 0; ok && l < m->cfg.n_layers; l++) {
    cJSON *o = cJSON_CreateObject(), *g = cJSON_AddObjectToObject(o, "grad"), *u = cJSON_AddObjectToObject(o, "update");
    ok = g && u && cJSON_AddNumberToObject(o, "layer", l);
    for (int p = 0; p < 4; p++) {
      const bwt_tensor_desc *d = attn_tensor(m, l, p);
      const float *w = m->params + d->offset;
      double dw = 0;
      for (size_t i = 0; i < d->size; i++) dw += ((double)w[i] - prev[i]) * ((double)w[i] - prev[i]);
      double wn = norm(w, d->size);
      ok = ok && cJSON_AddNumberToObject(g, parts[p].key, norm(m->grads + d->offset, d->size)) &&
           cJSON_AddNumberToObject(u, parts[p].key, wn > 0 ? sqrt(dw) / wn : 0); /* |ΔW| / |W| */
      prev += d->size;
    }
    if (ok) ok = bwt_json_push(a, o);
    else cJSON_Delete(o);
  }
  if (ok) return a;
  cJSON_Delete(a);
  return NULL;
}

const train_observer attention_observer = {"attention", open_log, save, log_json, free};
