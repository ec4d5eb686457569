/* Checkpoints: round trip of weights, optimiser state and config; validation of what is read. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/checkpoint.h"
#include "bwt/fileio.h"
#include "core/fault.h"
#include "bwt/safetensors.h"
#include "testutil.h"

static bwt_run_config tiny_config(void) {
  bwt_run_config c = test_bijection_config(4, 8, 2, 2);
  c.train.seed = 18446744073709551557ULL; /* a seed above 2^53 survives the JSON round trip */
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

/* Non-finite weights or moments (and negative second moments) are refused on load: they used to
 * pass every reading command, which then printed plausible numbers beside a NaN. */
static void test_non_finite_values_refused(void **state) {
  bwt_run_config c = tiny_config(), c2;
  bwt_model *m = NULL, *m2 = NULL;
  assert_int_equal(bwt_model_create(&m, &c.model, 5), BWT_STATUS_OK);
  float *am = calloc(m->n_params, sizeof(float)), *av = calloc(m->n_params, sizeof(float));
  char path[1100];
  snprintf(path, sizeof path, "%s/ck.safetensors", test_tmpdir("ckpt_nan"));
  const float bad[] = {NAN, INFINITY, -INFINITY};
  for (int i = 0; i < 3; i++) {
    m->params[7] = bad[i];
    assert_int_equal(bwt_checkpoint_save(path, &c, m, NULL, NULL, 1), BWT_STATUS_OK); /* the writer is no judge */
    int step;
    assert_int_equal(bwt_checkpoint_load(path, &c2, &m2, NULL, NULL, &step), BWT_STATUS_FORMAT);
    assert_non_null(strstr(bwt_last_error(), "must be finite"));
    assert_null(m2);
  }
  m->params[7] = 0.5f;
  av[3] = -1e-9f; /* a second moment below zero would make the AdamW step NaN */
  assert_int_equal(bwt_checkpoint_save(path, &c, m, am, av, 1), BWT_STATUS_OK);
  float *am2 = NULL, *av2 = NULL;
  int step;
  assert_int_equal(bwt_checkpoint_load(path, &c2, &m2, &am2, &av2, &step), BWT_STATUS_FORMAT);
  assert_non_null(strstr(bwt_last_error(), "optim.v."));
  assert_int_equal(bwt_checkpoint_load(path, &c2, &m2, NULL, NULL, &step), BWT_STATUS_FORMAT); /* unread moments too */
  free(am), free(av);
  bwt_model_free(m);
}

/* Every single-bit flip anywhere in a checkpoint (length prefix, header, padding, tensor data) is
 * either refused or leaves what loads identical: 44 of 400 random flips once changed bwt eval's
 * output without a word. */
static void test_every_bit_flip(void **state) {
  bwt_run_config c = tiny_config(), c2;
  c.model.d_model = 4, c.model.n_heads = 1, c.model.n_layers = 1;
  bwt_model *m = NULL, *m2 = NULL;
  assert_int_equal(bwt_model_create(&m, &c.model, 5), BWT_STATUS_OK);
  char path[1100];
  snprintf(path, sizeof path, "%s/ck.safetensors", test_tmpdir("ckpt_flip"));
  assert_int_equal(bwt_checkpoint_save(path, &c, m, NULL, NULL, 3), BWT_STATUS_OK);
  char *bytes = NULL, *want = bwt_run_config_to_json(&c);
  size_t n = 0;
  assert_int_equal(bwt_read_file(path, &bytes, &n), BWT_STATUS_OK);
  long refused = 0, identical = 0;
  for (size_t i = 0; i < n; i++)
    for (int bit = 0; bit < 8; bit++) {
      bytes[i] ^= (char)(1u << bit);
      int step = -1;
      bwt_status s = bwt_checkpoint_load_memory(bytes, n, "flipped", &c2, &m2, NULL, NULL, &step);
      if (s == BWT_STATUS_OK) {
        char *got = bwt_run_config_to_json(&c2);
        int same = step == 3 && strcmp(got, want) == 0 && m2->n_params == m->n_params &&
                   memcmp(m2->params, m->params, sizeof(float) * m->n_params) == 0;
        free(got);
        bwt_model_free(m2);
        if (!same) fail_msg("a flip of bit %d of byte %zu loaded as a different checkpoint", bit, i);
        identical++;
      } else {
        assert_null(m2);
        refused++;
      }
      bytes[i] ^= (char)(1u << bit);
    }
  print_message("  %ld single-bit flips: %ld refused, %ld load the same checkpoint\n", refused + identical, refused, identical);
  assert_true(refused > 0);
  free(bytes);
  free(want);
  bwt_model_free(m);
}

/* A config that claims a far larger model than the file holds is refused before anything is
 * allocated for it (it once took 12 s and 1.6 GB to fail). */
static void test_sizes_checked_before_allocating(void **state) {
  bwt_run_config c = tiny_config();
  bwt_model *m = NULL, *m2 = NULL;
  assert_int_equal(bwt_model_create(&m, &c.model, 5), BWT_STATUS_OK);
  char path[1100];
  snprintf(path, sizeof path, "%s/ck.safetensors", test_tmpdir("ckpt_claims"));
  c.model.d_model = 2048, c.model.n_layers = 64; /* about 3.2e9 parameters claimed */
  assert_int_equal(bwt_checkpoint_save(path, &c, m, NULL, NULL, 1), BWT_STATUS_OK);
  bwt_run_config c2;
  int step;
  bwt_fault_arm(BWT_FAULT_ALLOC, 0);
  assert_int_equal(bwt_checkpoint_load(path, &c2, &m2, NULL, NULL, &step), BWT_STATUS_FORMAT);
  assert_non_null(strstr(bwt_last_error(), "parameters"));
  /* A few small allocations (the file, the header, the tensor table), none of the model's arenas. */
  assert_true(bwt_fault_count(BWT_FAULT_ALLOC) < 2000);
  bwt_model_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round_trip),
      cmocka_unit_test(test_mismatched_tensors),
      cmocka_unit_test(test_foreign_and_versioned_files),
      cmocka_unit_test(test_non_finite_values_refused),
      cmocka_unit_test(test_every_bit_flip),
      cmocka_unit_test(test_sizes_checked_before_allocating),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
