/* Checkpoints: round trip of weights, optimiser state and config; validation of what is read. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/checkpoint.h"
#include "bwt/safetensors.h"
#include "testutil.h"

static bwt_run_config tiny_config(void) {
  bwt_run_config c;
  memset(&c, 0, sizeof c);
  assert_int_equal(bwt_task_config_default(&c.task, "bijection"), BWT_STATUS_OK);
  c.task.V = 4;
  c.task.L = 3;
  bwt_train_config_default(&c.train);
  c.train.seed = 18446744073709551557ULL; /* a seed above 2^53 survives the JSON round trip */
  bwt_task *task = NULL;
  assert_int_equal(bwt_task_create(&task, &c.task), BWT_STATUS_OK);
  bwt_model_config_default(&c.model, BWT_ARCH_TRANSFORMER, task);
  c.model.d_model = 8;
  c.model.n_heads = 2;
  bwt_task_free(task);
  return c;
}

static void test_round_trip(void **state) {
  bwt_run_config c = tiny_config(), c2;
  bwt_model *m = NULL, *m2 = NULL;
  assert_int_equal(bwt_model_create(&m, &c.model, 5), BWT_STATUS_OK);
  float *am = calloc(m->n_params, sizeof(float)), *av = calloc(m->n_params, sizeof(float));
  test_fill_uniform(am, m->n_params, -1, 1, 1);
  test_fill_uniform(av, m->n_params, 0, 1, 2);
  char path[1100];
  snprintf(path, sizeof path, "%s/ck.safetensors", test_tmpdir("ckpt_round_trip"));
  assert_int_equal(bwt_checkpoint_save(path, &c, m, am, av, 42), BWT_STATUS_OK);

  float *am2 = NULL, *av2 = NULL;
  int step = 0;
  assert_int_equal(bwt_checkpoint_load(path, &c2, &m2, &am2, &av2, &step), BWT_STATUS_OK);
  assert_int_equal(step, 42);
  assert_int_equal(c2.train.seed, c.train.seed);
  assert_int_equal(m2->n_params, m->n_params);
  assert_memory_equal(m2->params, m->params, sizeof(float) * m->n_params);
  assert_memory_equal(am2, am, sizeof(float) * m->n_params);
  assert_memory_equal(av2, av, sizeof(float) * m->n_params);
  char *j1 = bwt_run_config_to_json(&c), *j2 = bwt_run_config_to_json(&c2);
  assert_string_equal(j1, j2);
  free(j1), free(j2), free(am2), free(av2);
  bwt_model_free(m2);

  /* Weights-only files load without optimiser state, and refuse to provide it. */
  assert_int_equal(bwt_checkpoint_save(path, &c, m, NULL, NULL, 3), BWT_STATUS_OK);
  assert_int_equal(bwt_checkpoint_load(path, &c2, &m2, NULL, NULL, &step), BWT_STATUS_OK);
  bwt_model_free(m2);
  assert_int_equal(bwt_checkpoint_load(path, &c2, &m2, &am2, &av2, &step), BWT_STATUS_FORMAT);
  assert_non_null(strstr(bwt_last_error(), "weights only"));
  assert_null(m2);
  free(am), free(av);
  bwt_model_free(m);
}

/* A file whose tensors do not match the config it carries (a tensor missing, another reshaped). */
static void test_mismatched_tensors(void **state) {
  bwt_run_config c = tiny_config();
  bwt_model *m = NULL, *m2 = NULL;
  assert_int_equal(bwt_model_create(&m, &c.model, 5), BWT_STATUS_OK);
  char path[1100];
  snprintf(path, sizeof path, "%s/ck.safetensors", test_tmpdir("ckpt_mismatch"));
  c.model.d_model = 16; /* the metadata now describes a wider model than the tensors hold */
  assert_int_equal(bwt_checkpoint_save(path, &c, m, NULL, NULL, 1), BWT_STATUS_OK);
  bwt_run_config c2;
  int step;
  assert_int_equal(bwt_checkpoint_load(path, &c2, &m2, NULL, NULL, &step), BWT_STATUS_FORMAT);
  assert_non_null(strstr(bwt_last_error(), "parameters")); /* the sizes disagree before anything is allocated */
  assert_null(m2);

  /* A config that fails validation is reported as a format error naming the file. */
  c.model.d_model = 8;
  c.train.batch = 0;
  assert_int_equal(bwt_checkpoint_save(path, &c, m, NULL, NULL, 1), BWT_STATUS_OK);
  assert_int_equal(bwt_checkpoint_load(path, &c2, &m2, NULL, NULL, &step), BWT_STATUS_FORMAT);
  assert_non_null(strstr(bwt_last_error(), "batch"));
  assert_non_null(strstr(bwt_last_error(), path));
  bwt_model_free(m);
}

/* Files that are valid safetensors but not bwt checkpoints, or of another version. */
static void test_foreign_and_versioned_files(void **state) {
  char path[1100];
  snprintf(path, sizeof path, "%s/x.safetensors", test_tmpdir("ckpt_foreign"));
  float w[2] = {1, 2};
  bwt_st_tensor t = {"w", BWT_DTYPE_F32, 1, {2}, w};
  const char *k1[] = {"format"}, *v1[] = {"other"};
  assert_int_equal(bwt_safetensors_write(path, &t, 1, k1, v1, 1), BWT_STATUS_OK);
  bwt_run_config c;
  bwt_model *m = NULL;
  int step;
  assert_int_equal(bwt_checkpoint_load(path, &c, &m, NULL, NULL, &step), BWT_STATUS_FORMAT);
  assert_non_null(strstr(bwt_last_error(), "not a bwt checkpoint"));
  const char *k2[] = {"format", "format_version"}, *v2[] = {BWT_CHECKPOINT_FORMAT, "2"};
  assert_int_equal(bwt_safetensors_write(path, &t, 1, k2, v2, 2), BWT_STATUS_OK);
  assert_int_equal(bwt_checkpoint_load(path, &c, &m, NULL, NULL, &step), BWT_STATUS_FORMAT);
  assert_non_null(strstr(bwt_last_error(), "version 2"));
  const char *v3[] = {BWT_CHECKPOINT_FORMAT, "1x"};
  assert_int_equal(bwt_safetensors_write(path, &t, 1, k2, v3, 2), BWT_STATUS_OK);
  assert_int_equal(bwt_checkpoint_load(path, &c, &m, NULL, NULL, &step), BWT_STATUS_FORMAT);
  assert_non_null(strstr(bwt_last_error(), "format_version"));
  assert_null(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round_trip),
      cmocka_unit_test(test_mismatched_tensors),
      cmocka_unit_test(test_foreign_and_versioned_files),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
