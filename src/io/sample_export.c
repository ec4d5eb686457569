/* JSON lines of sampled sequences with their exact posteriors (see bwt/sample_export.h). */
#include "bwt/sample_export.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "io/report_json.h"

/* An array of n numbers, or NULL if out of memory. */
static cJSON *int_array(const int32_t *x, int n) {
  cJSON *a = cJSON_CreateArray();
  for (int i = 0; a && i < n; i++) {
    if (!bwt_json_push(a, cJSON_CreateNumber((double)x[i]))) {
      cJSON_Delete(a);
      return NULL;
    }
  }
  return a;
}

/* The JSON object of sequence b, or NULL if out of memory. */
static cJSON *sequence_json(const bwt_task *task, const bwt_batch *batch, const char *seed, int b, int index) {
  int T = batch->T, N = batch->n_sup, K = batch->n_classes, D = batch->input_dim;
  cJSON *o = cJSON_CreateObject();
  if (!o) return NULL;
  int ok = bwt_json_add(o, "index", cJSON_CreateNumber(index)) && bwt_json_add(o, "seed", cJSON_CreateString(seed)) &&
           bwt_json_add(o, "stream", cJSON_CreateNumber(index)) && bwt_json_add(o, "task", cJSON_CreateString(task->cfg.name));
  if (ok && task->vocab > 0) {
    ok = bwt_json_add(o, "tokens", int_array(batch->tokens + (size_t)b * T, T));
  } else if (ok) {
    cJSON *rows = cJSON_CreateArray();
    ok = bwt_json_add(o, "inputs", rows);
    for (int t = 0; ok && t < T; t++)
      ok = bwt_json_push(rows, cJSON_CreateFloatArray(batch->inputs + ((size_t)b * T + t) * D, D));
  }
  cJSON *sup = ok ? cJSON_CreateArray() : NULL;
  ok = ok && bwt_json_add(o, "supervised", sup);
  for (int j = 0; ok && j < N; j++) {
    size_t r = (size_t)b * N + j;
    const double *q = batch->posterior + r * K;
    cJSON *e = cJSON_CreateObject();
    ok = bwt_json_push(sup, e) && bwt_json_add(e, "pos", cJSON_CreateNumber(batch->sup_pos[r])) &&
         bwt_json_add(e, "target", cJSON_CreateNumber(batch->target[r])) &&
         bwt_json_add(e, "posterior", cJSON_CreateDoubleArray(q, K)) &&
         bwt_json_add(e, "entropy_bits", cJSON_CreateNumber(bwt_entropy_bits(q, K)));
  }
  if (!ok) {
    cJSON_Delete(o);
    return NULL;
  }
  return o;
}

bwt_status bwt_batch_write_jsonl(FILE *f, const bwt_task *task, const bwt_batch *batch, uint64_t seed,
                                 int first_index) {
  if (!f || !task || !batch) return bwt_fail(BWT_STATUS_ARG, "bwt_batch_write_jsonl: NULL argument");
  if (batch->T != task->seq_len || batch->n_sup != task->n_sup || batch->n_classes != task->n_classes ||
      batch->input_dim != task->input_dim || batch->B < 0 ||
      (batch->B > 0 && ((task->vocab > 0 ? !batch->tokens : !batch->inputs) || !batch->sup_pos ||
                        !batch->target || !batch->posterior)))
    return bwt_fail(BWT_STATUS_ARG, "bwt_batch_write_jsonl: the batch does not fit task %s", task->cfg.name);
  char seed_s[32];
  snprintf(seed_s, sizeof seed_s, "%llu", (unsigned long long)seed);
  for (int b = 0; b < batch->B; b++) {
    cJSON *o = sequence_json(task, batch, seed_s, b, first_index + b);
    char *line = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!line) return bwt_fail(BWT_STATUS_NOMEM, "out of memory writing sequence %d as JSON", first_index + b);
    int ok = fputs(line, f) >= 0 && fputc('\n', f) != EOF;
    free(line);
    if (!ok) return bwt_fail(BWT_STATUS_IO, "cannot write sampled sequence %d: %s", first_index + b, strerror(errno));
  }
  if (fflush(f) != 0 || ferror(f)) return bwt_fail(BWT_STATUS_IO, "cannot write the sampled sequences: %s", strerror(errno));
  return BWT_STATUS_OK;
}
