#include "bwt/sample_export.h"

#include <stdlib.h>

#include <cjson/cJSON.h>

bwt_status bwt_batch_write_jsonl(FILE *f, const bwt_task *task, const bwt_batch *batch,
                                 uint64_t seed, int first_index) {
  int T = batch->T, N = batch->n_sup, K = batch->n_classes;
  char seed_s[32];
  snprintf(seed_s, sizeof seed_s, "%llu", (unsigned long long)seed);
  for (int b = 0; b < batch->B; b++) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "index", first_index + b);
    cJSON_AddStringToObject(o, "seed", seed_s);
    cJSON_AddStringToObject(o, "task", task->cfg.name);
    if (batch->tokens) {
      cJSON_AddItemToObject(o, "tokens", cJSON_CreateIntArray(batch->tokens + (size_t)b * T, T));
    } else {
      cJSON *rows = cJSON_AddArrayToObject(o, "inputs");
      for (int t = 0; t < T; t++)
        cJSON_AddItemToArray(rows, cJSON_CreateFloatArray(batch->inputs + ((size_t)b * T + t) * batch->input_dim, batch->input_dim));
    }
    cJSON *sup = cJSON_AddArrayToObject(o, "supervised");
    for (int j = 0; j < N; j++) {
      size_t r = (size_t)b * N + j;
      const double *q = batch->posterior + r * K;
      cJSON *e = cJSON_CreateObject();
      cJSON_AddNumberToObject(e, "pos", batch->sup_pos[r]);
      cJSON_AddNumberToObject(e, "target", batch->target[r]);
      cJSON_AddNumberToObject(e, "entropy_bits", bwt_entropy_bits(q, K));
      cJSON_AddItemToObject(e, "posterior", cJSON_CreateDoubleArray(q, K));
      cJSON_AddItemToArray(sup, e);
    }
    char *line = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    int ok = line && fputs(line, f) >= 0 && fputc('\n', f) != EOF;
    free(line);
    if (!ok) return bwt_fail(BWT_STATUS_IO, "cannot write the sampled sequences");
  }
  return BWT_STATUS_OK;
}
