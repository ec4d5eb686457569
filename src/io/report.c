#include "bwt/report.h"
#include "io/report_json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/fileio.h"

int bwt_json_add(cJSON *obj, const char *key, cJSON *item) {
  if (!item) return 0;
  if (!obj || !cJSON_AddItemToObject(obj, key, item)) {
    cJSON_Delete(item);
    return 0;
  }
  return 1;
}

int bwt_json_push(cJSON *arr, cJSON *item) {
  if (!item) return 0;
  if (!arr || !cJSON_AddItemToArray(arr, item)) {
    cJSON_Delete(item);
    return 0;
  }
  return 1;
}

/* o if ok, else NULL with o deleted: a builder's result is whole or nothing. */
static cJSON *whole(cJSON *o, int ok) {
  if (ok) return o;
  cJSON_Delete(o);
  return NULL;
}

cJSON *bwt_metrics_to_json(const bwt_metrics *m) {
  cJSON *o = cJSON_CreateObject();
  int ok = cJSON_AddNumberToObject(o, "n", (double)m->n) && cJSON_AddNumberToObject(o, "entropy_mae", m->entropy_mae) &&
           cJSON_AddNumberToObject(o, "entropy_mae_renorm", m->entropy_mae_renorm) &&
           cJSON_AddNumberToObject(o, "model_entropy", m->model_entropy) &&
           cJSON_AddNumberToObject(o, "bayes_entropy", m->bayes_entropy) && cJSON_AddNumberToObject(o, "kl_bits", m->kl_bits) &&
           cJSON_AddNumberToObject(o, "tv", m->tv) && cJSON_AddNumberToObject(o, "ce_bits", m->ce_bits) &&
           cJSON_AddNumberToObject(o, "excess_ce_bits", m->excess_ce_bits) &&
           cJSON_AddNumberToObject(o, "n_point_mass", (double)m->n_point_mass) &&
           cJSON_AddNumberToObject(o, "accuracy", m->accuracy); /* cJSON writes NaN as null */
  return whole(o, ok);
}

cJSON *bwt_eval_to_json(const bwt_eval_result *r) {
  cJSON *o = cJSON_CreateObject();
  char seed[32];
  snprintf(seed, sizeof seed, "%llu", (unsigned long long)r->seed);
  int ok = cJSON_AddNumberToObject(o, "n_seqs", (double)r->n_seqs) && cJSON_AddStringToObject(o, "seed", seed) &&
           bwt_json_add(o, "overall", bwt_metrics_to_json(&r->overall)) &&
           cJSON_AddNumberToObject(o, "entropy_mae_curves", r->entropy_mae_curves);
  cJSON *pos = ok ? cJSON_AddArrayToObject(o, "positions") : NULL;
  ok = pos != NULL;
  for (int j = 0; ok && j < r->n_pos; j++) ok = bwt_json_push(pos, bwt_metrics_to_json(&r->pos[j]));
  return whole(o, ok);
}

bwt_status bwt_eval_write_json(const char *path, const bwt_eval_result *r) {
  cJSON *o = bwt_eval_to_json(r);
  char *text = o ? cJSON_Print(o) : NULL;
  cJSON_Delete(o);
  if (!text) return bwt_fail(BWT_STATUS_NOMEM, "out of memory formatting %s", path);
  bwt_status s = bwt_write_file_atomic(path, text, strlen(text));
  free(text);
  return s;
}

bwt_status bwt_eval_write_csv(const char *path, const bwt_eval_result *r) {
  size_t cap = 256 + (size_t)r->n_pos * 320, len = 0;
  char *buf = bwt_malloc(cap, NULL);
  if (!buf) return bwt_fail(BWT_STATUS_NOMEM, "out of memory formatting %s", path);
  len += snprintf(buf + len, cap - len,
                  "position,n,entropy_mae,entropy_mae_renorm,model_entropy,bayes_entropy,kl_bits,tv,"
                  "ce_bits,excess_ce_bits,n_point_mass,accuracy\n");
  for (int j = 0; j < r->n_pos; j++) {
    const bwt_metrics *m = &r->pos[j];
    len += snprintf(buf + len, cap - len, "%d,%ld,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%ld,%.9g\n",
                    j, m->n, m->entropy_mae, m->entropy_mae_renorm, m->model_entropy,
                    m->bayes_entropy, m->kl_bits, m->tv, m->ce_bits, m->excess_ce_bits,
                    m->n_point_mass, m->accuracy);
  }
  bwt_status s = bwt_write_file_atomic(path, buf, len);
  free(buf);
  return s;
}
