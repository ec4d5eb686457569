/* Checkpoints in safetensors: weights by tensor name, optional AdamW moments, self-describing
 * metadata. Readers validate the format, version, config and every tensor's shape. */
#include "bwt/checkpoint.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/safetensors.h"

#ifndef BWT_CODE_VERSION
#define BWT_CODE_VERSION "unknown"
#endif

const char *bwt_code_version(void) { return BWT_CODE_VERSION; }

typedef char tensor_name[BWT_TENSOR_NAME_MAX + 16];

bwt_status bwt_checkpoint_save(const char *path, const bwt_run_config *cfg, const bwt_model *model,
                               const float *adam_m, const float *adam_v, int step) {
  int per = adam_m && adam_v ? 3 : 1, n = model->n_tensors * per;
  bwt_st_tensor *ts = bwt_calloc(n, sizeof *ts, "checkpoint");
  tensor_name *names = bwt_calloc(n, sizeof *names, "checkpoint");
  char *config = bwt_run_config_to_json(cfg);
  if (!ts || !names || !config) {
    free(ts), free(names), free(config);
    return bwt_fail(BWT_STATUS_NOMEM, "out of memory writing %s", path);
  }
  const char *prefix[3] = {"", "optim.m.", "optim.v."};
  const float *base[3] = {model->params, adam_m, adam_v};
  for (int k = 0; k < per; k++)
    for (int i = 0; i < model->n_tensors; i++) {
      const bwt_tensor_desc *d = &model->tensors[i];
      bwt_st_tensor *t = &ts[k * model->n_tensors + i];
      snprintf(names[k * model->n_tensors + i], sizeof(tensor_name), "%s%s", prefix[k], d->name);
      t->name = names[k * model->n_tensors + i];
      t->dtype = BWT_DTYPE_F32;
      t->ndim = d->ndim;
      t->shape[0] = d->shape[0];
      t->shape[1] = d->shape[1];
      t->data = base[k] + d->offset;
    }
  char version[16], seed[32], step_s[16];
  snprintf(version, sizeof version, "%d", BWT_CHECKPOINT_VERSION);
  snprintf(seed, sizeof seed, "%llu", (unsigned long long)cfg->train.seed);
  snprintf(step_s, sizeof step_s, "%d", step);
  const char *keys[] = {"format", "format_version", "config", "task", "arch", "seed", "step", "code_version", "optimizer_state"};
  const char *values[] = {BWT_CHECKPOINT_FORMAT, version, config, cfg->task.name,
                          bwt_arch_name(model->cfg.arch), seed, step_s, bwt_code_version(),
                          per == 3 ? "adamw" : "none"};
  bwt_status s = bwt_safetensors_write(path, ts, n, keys, values, 9);
  free(ts);
  free(names);
  free(config);
  return s;
}

static bwt_status parse_int_meta(const bwt_st_file *f, const char *path, const char *key, int *out) {
  const char *v = bwt_safetensors_meta(f, key);
  if (!v) return bwt_fail(BWT_STATUS_FORMAT, "%s: checkpoint metadata has no '%s'", path, key);
  char *end = NULL;
  errno = 0;
  long x = strtol(v, &end, 10);
  if (!*v || *end || errno || x < 0 || x > 2147483647L)
    return bwt_fail(BWT_STATUS_FORMAT, "%s: checkpoint metadata '%s' is not a non-negative integer ('%s')", path, key, v);
  *out = (int)x;
  return BWT_STATUS_OK;
}

static bwt_status read_tensors(const bwt_st_file *f, const bwt_model *m, const char *prefix,
                               float *dst) {
  for (int i = 0; i < m->n_tensors; i++) {
    const bwt_tensor_desc *d = &m->tensors[i];
    tensor_name name;
    snprintf(name, sizeof name, "%s%s", prefix, d->name);
    int64_t shape[2] = {d->shape[0], d->shape[1]};
    const void *data = NULL;
    BWT_TRY(bwt_safetensors_get(f, name, BWT_DTYPE_F32, d->ndim, shape, &data));
    memcpy(dst + d->offset, data, sizeof(float) * d->size);
  }
  return BWT_STATUS_OK;
}

bwt_status bwt_checkpoint_load(const char *path, bwt_run_config *cfg, bwt_model **model,
                               float **adam_m, float **adam_v, int *step) {
  *model = NULL;
  if (adam_m) *adam_m = NULL;
  if (adam_v) *adam_v = NULL;
  bwt_st_file *f = NULL;
  BWT_TRY(bwt_safetensors_open(&f, path));
  bwt_status s = BWT_STATUS_OK;
  const char *format = bwt_safetensors_meta(f, "format"), *config = bwt_safetensors_meta(f, "config");
  int version = 0;
  if (!format || strcmp(format, BWT_CHECKPOINT_FORMAT) != 0)
    s = bwt_fail(BWT_STATUS_FORMAT, "%s is not a bwt checkpoint (metadata 'format' is %s%s%s)", path,
                 format ? "'" : "", format ? format : "missing", format ? "'" : "");
  if (s == BWT_STATUS_OK) s = parse_int_meta(f, path, "format_version", &version);
  if (s == BWT_STATUS_OK && version != BWT_CHECKPOINT_VERSION)
    s = bwt_fail(BWT_STATUS_FORMAT, "%s has checkpoint format version %d; this bwt reads version %d", path, version, BWT_CHECKPOINT_VERSION);
  if (s == BWT_STATUS_OK) s = parse_int_meta(f, path, "step", step);
  if (s == BWT_STATUS_OK && !config) s = bwt_fail(BWT_STATUS_FORMAT, "%s: checkpoint metadata has no 'config'", path);
  if (s == BWT_STATUS_OK) s = bwt_run_config_from_json(cfg, config, path);
  if (s == BWT_STATUS_OK) s = bwt_model_create(model, &cfg->model, cfg->train.seed);
  if (s == BWT_STATUS_OK) s = read_tensors(f, *model, "", (*model)->params);
  if (s == BWT_STATUS_OK && adam_m && adam_v) {
    *adam_m = bwt_calloc((*model)->n_params, sizeof(float), "optimiser state");
    *adam_v = bwt_calloc((*model)->n_params, sizeof(float), "optimiser state");
    if (!*adam_m || !*adam_v) s = BWT_STATUS_NOMEM;
    if (s == BWT_STATUS_OK) s = read_tensors(f, *model, "optim.m.", *adam_m);
    if (s == BWT_STATUS_OK) s = read_tensors(f, *model, "optim.v.", *adam_v);
  }
  bwt_safetensors_close(f);
  if (s != BWT_STATUS_OK) {
    bwt_model_free(*model);
    *model = NULL;
    if (adam_m) free(*adam_m), *adam_m = NULL;
    if (adam_v) free(*adam_v), *adam_v = NULL;
  }
  return s;
}
