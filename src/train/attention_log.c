/* Two timescales (SPEC.md §6, issue 6): per block, the gradient norms and relative update rates of
 * the attention's W_Q, W_K, W_V and W_O, logged with the training metrics so that the speed of the
 * routing (Q, K) can be set beside that of the content (V, O). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "attention_log.h"
#include "bwt/report.h"

static const char *const parts[4] = {"q", "k", "v", "o"};

/* The tensor of part p of block l (NULL if the model has none). */
static const bwt_tensor_desc *attn_tensor(const bwt_model *m, int l, int p) {
  char name[BWT_TENSOR_NAME_MAX];
  snprintf(name, sizeof name, "blocks.%d.attn.w%s.weight", l, parts[p]);
  return bwt_model_find_tensor(m, name);
}

size_t attention_log_floats(const bwt_model *m) {
  if (m->cfg.arch != BWT_ARCH_TRANSFORMER) return 0;
  return (size_t)m->cfg.n_layers * 4 * m->cfg.d_model * m->cfg.d_model;
}

void attention_log_save(const bwt_model *m, float *prev) {
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

cJSON *attention_log_json(const bwt_model *m, const float *prev) {
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
      ok = ok && cJSON_AddNumberToObject(g, parts[p], norm(m->grads + d->offset, d->size)) &&
           cJSON_AddNumberToObject(u, parts[p], wn > 0 ? sqrt(dw) / wn : 0); /* |ΔW| / |W| */
      prev += d->size;
    }
    if (ok) ok = bwt_json_push(a, o);
    else cJSON_Delete(o);
  }
  if (ok) return a;
  cJSON_Delete(a);
  return NULL;
}
