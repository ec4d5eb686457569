/* libFuzzer harness for the checkpoint loader (src/train/checkpoint.c): --resume, eval, geometry
 * and every other reader of a run trust what it returns. Any bytes must give either a clean failure
 * or a model that holds what the loader promises (bwt/checkpoint.h): a config that passes every
 * range check, a step within the run, a parameter count the config implies, every value finite and
 * second moments non-negative. The input is loaded twice, weights only and with the AdamW moments;
 * a file the moments load from must load without them too, to the same weights and config.
 *
 * The seeds include checkpoints whose checksum key is renamed (tests/fuzz/make_corpus.sh), so that
 * mutations get past the CRC-32 into the metadata, config and tensor checks. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/checkpoint.h"
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  bwt_alloc_hooks_install();
  return 0;
}

static void check_model(const bwt_run_config *cfg, const bwt_model *m, int step) {
  FUZZ_CHECK(m != NULL && m->n_params > 0 && m->n_tensors > 0 && m->params != NULL);
  FUZZ_CHECK(bwt_run_config_check(cfg) == BWT_STATUS_OK);
  FUZZ_CHECK(step >= 0 && step <= cfg->train.steps);
  size_t n = 0;
  FUZZ_CHECK(bwt_model_count_params(&cfg->model, &n) == BWT_STATUS_OK && n == m->n_params);
  size_t covered = 0;
  for (int i = 0; i < m->n_tensors; i++) { /* the descriptor table carves the arena exactly */
    const bwt_tensor_desc *d = &m->tensors[i];
    FUZZ_CHECK(d->ndim >= 1 && d->ndim <= 2 && d->size > 0 && d->offset + d->size <= m->n_params);
    FUZZ_CHECK(d->size == (size_t)d->shape[0] * (d->ndim == 2 ? (size_t)d->shape[1] : 1));
    covered += d->size;
  }
  FUZZ_CHECK(covered == m->n_params);
  for (size_t j = 0; j < m->n_params; j++) FUZZ_CHECK(isfinite(m->params[j]));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  bwt_run_config cfg, cfg2;
  bwt_model *model = NULL, *model2 = NULL;
  int step = -1, step2 = -1;
  bwt_status s = bwt_checkpoint_load_memory(data, size, "fuzz.safetensors", &cfg, &model, NULL, NULL, &step);
  FUZZ_CHECK((s == BWT_STATUS_OK) == (model != NULL));
  if (s == BWT_STATUS_OK) check_model(&cfg, model, step);

  float *m = (float *)1, *v = (float *)1;
  bwt_status s2 = bwt_checkpoint_load_memory(data, size, "fuzz.safetensors", &cfg2, &model2, &m, &v, &step2);
  FUZZ_CHECK((s2 == BWT_STATUS_OK) == (model2 != NULL));
  if (s2 != BWT_STATUS_OK) FUZZ_CHECK(m == NULL && v == NULL); /* nothing left behind on failure */
  if (s2 == BWT_STATUS_OK) {
    check_model(&cfg2, model2, step2);
    FUZZ_CHECK(m != NULL && v != NULL);
    for (size_t j = 0; j < model2->n_params; j++) FUZZ_CHECK(isfinite(m[j]) && isfinite(v[j]) && v[j] >= 0);
    /* The moments are extra: the weights-only load of the same bytes succeeds, identically. */
    FUZZ_CHECK(s == BWT_STATUS_OK && step == step2 && model->n_params == model2->n_params);
    FUZZ_CHECK(memcmp(model->params, model2->params, sizeof(float) * model->n_params) == 0);
    char *a = bwt_run_config_to_json(&cfg), *b = bwt_run_config_to_json(&cfg2);
    FUZZ_CHECK(a && b && strcmp(a, b) == 0);
    free(a), free(b);
  }
  free(m == (float *)1 ? NULL : m);
  free(v == (float *)1 ? NULL : v);
  bwt_model_free(model);
  bwt_model_free(model2);
  return 0;
}
