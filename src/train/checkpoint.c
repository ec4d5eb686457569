/* Checkpoints in safetensors: weights by tensor name, optional AdamW moments, self-describing
 * metadata. Readers validate the format, version, config and every tensor's shape. */
#include "bwt/checkpoint.h"

#include <errno.h>
#include <math.h>
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

/* Copies the model's tensors (under prefix) from f into dst, or with dst NULL only checks them.
 * Every value must be finite, and second moments non-negative: a checkpoint with a NaN in it was
 * damaged, and would make every later number NaN too. */
static bwt_status read_tensors(const bwt_st_file *f, const char *path, const bwt_model *m,
                               const char *prefix, float *dst, int nonnegative) {
  for (int i = 0; i < m->n_tensors; i++) {
    const bwt_tensor_desc *d = &m->tensors[i];
    tensor_name name;
    snprintf(name, sizeof name, "%s%s", prefix, d->name);
    int64_t shape[2] = {d->shape[0], d->shape[1]};
    const void *data = NULL;
    BWT_TRY(bwt_safetensors_get(f, name, BWT_DTYPE_F32, d->ndim, shape, &data));
    const float *x = data;
    for (size_t j = 0; j < d->size; j++)
      if (!isfinite(x[j]) || (nonnegative && x[j] < 0))
        return bwt_fail(BWT_STATUS_FORMAT, "%s: tensor '%s' holds %g at index %zu (%s): the checkpoint is damaged",
                        path, name, (double)x[j], j, nonnegative ? "must be finite and >= 0" : "must be finite");
    if (dst) memcpy(dst + d->offset, data, sizeof(float) * d->size);
  }
  return BWT_STATUS_OK;
}

static bwt_status read_checkpoint(const bwt_st_file *f, const char *path, bwt_run_config *cfg,
                                  bwt_model **model, float **adam_m, float **adam_v, int *step) {
  const char *format = bwt_safetensors_meta(f, "format"), *config = bwt_safetensors_meta(f, "config");
  const char *optim = bwt_safetensors_meta(f, "optimizer_state");
  int version = 0;
  if (!format || strcmp(format, BWT_CHECKPOINT_FORMAT) != 0)
    return bwt_fail(BWT_STATUS_FORMAT, "%s is not a bwt checkpoint (metadata 'format' is %s%s%s)", path,
                    format ? "'" : "", format ? format : "missing", format ? "'" : "");
  BWT_TRY(parse_int_meta(f, path, "format_version", &version));
  if (version != BWT_CHECKPOINT_VERSION)
    return bwt_fail(BWT_STATUS_FORMAT, "%s has checkpoint format version %d; this bwt reads version %d", path, version, BWT_CHECKPOINT_VERSION);
  BWT_TRY(parse_int_meta(f, path, "step", step));
  if (!config) return bwt_fail(BWT_STATUS_FORMAT, "%s: checkpoint metadata has no 'config'", path);
  if (!optim || (strcmp(optim, "adamw") != 0 && strcmp(optim, "none") != 0))
    return bwt_fail(BWT_STATUS_FORMAT, "%s: checkpoint metadata 'optimizer_state' must be 'adamw' or 'none'", path);
  int has_moments = strcmp(optim, "adamw") == 0;
  if (adam_m && !has_moments)
    return bwt_fail(BWT_STATUS_FORMAT, "%s holds weights only (a snapshot), without the optimiser state a resume needs", path);
  BWT_TRY(bwt_run_config_from_json(cfg, config, path));
  if (*step > cfg->train.steps)
    return bwt_fail(BWT_STATUS_FORMAT, "%s: step %d is past the run's %d steps", path, *step, cfg->train.steps);
  /* The sizes the config claims, against the file, before allocating anything for them. */
  size_t n_params = 0, per = has_moments ? 3 : 1;
  BWT_TRY(bwt_model_count_params(&cfg->model, &n_params));
  if (bwt_safetensors_data_bytes(f) != n_params * per * sizeof(float))
    return bwt_fail(BWT_STATUS_FORMAT, "%s: its config describes %zu parameters (%zu bytes with %s) but the file holds %zu bytes of tensors",
                    path, n_params, n_params * per * sizeof(float), has_moments ? "the AdamW moments" : "no optimiser state",
                    bwt_safetensors_data_bytes(f));
  BWT_TRY(bwt_model_create(model, &cfg->model, cfg->train.seed));
  BWT_TRY(read_tensors(f, path, *model, "", (*model)->params, 0));
  if (has_moments) {
    size_t P = (*model)->n_params;
    if (adam_m) {
      *adam_m = bwt_calloc(P, sizeof(float), "optimiser state");
      *adam_v = bwt_calloc(P, sizeof(float), "optimiser state");
      if (!*adam_m || !*adam_v) return BWT_STATUS_NOMEM;
    }
    BWT_TRY(read_tensors(f, path, *model, "optim.m.", adam_m ? *adam_m : NULL, 0));
    BWT_TRY(read_tensors(f, path, *model, "optim.v.", adam_v ? *adam_v : NULL, 1));
  }
  const char *extra = bwt_safetensors_unused(f);
  if (extra)
    return bwt_fail(BWT_STATUS_FORMAT, "%s holds tensor '%s', which the model its config describes does not have (was the config edited?)", path, extra);
  return BWT_STATUS_OK;
}

/* Opens (path) or parses (bytes) and reads a checkpoint; on failure frees everything it made. */
static bwt_status load(const char *path, const void *bytes, size_t len, bwt_run_config *cfg,
                       bwt_model **model, float **adam_m, float **adam_v, int *step) {
  *model = NULL;
  if (adam_m) *adam_m = NULL;
  if (adam_v) *adam_v = NULL;
  if ((adam_m == NULL) != (adam_v == NULL)) return bwt_fail(BWT_STATUS_ARG, "bwt_checkpoint_load: give both moments or neither");
  bwt_st_file *f = NULL;
  BWT_TRY(bytes ? bwt_safetensors_open_memory(&f, bytes, len, path) : bwt_safetensors_open(&f, path));
  bwt_status s = read_checkpoint(f, path, cfg, model, adam_m, adam_v, step);
  bwt_safetensors_close(f);
  if (s != BWT_STATUS_OK) {
    bwt_model_free(*model);
    *model = NULL;
    if (adam_m) free(*adam_m), *adam_m = NULL;
    if (adam_v) free(*adam_v), *adam_v = NULL;
  }
  return s;
}

bwt_status bwt_checkpoint_load(const char *path, bwt_run_config *cfg, bwt_model **model,
                               float **adam_m, float **adam_v, int *step) {
  return load(path, NULL, 0, cfg, model, adam_m, adam_v, step);
}

bwt_status bwt_checkpoint_load_memory(const void *bytes, size_t len, const char *name, bwt_run_config *cfg,
                                      bwt_model **model, float **adam_m, float **adam_v, int *step) {
  return load(name, bytes ? bytes : "", len, cfg, model, adam_m, adam_v, step);
}
