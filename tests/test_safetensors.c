/* safetensors: round trip, layout, atomic writes, and every kind of bad file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bwt/fileio.h"
#include "bwt/safetensors.h"
#include "testutil.h"

static char path[1100];

static void write_sample(void) {
  static const float f32[5] = {1.5f, -2, 3, 4, 5};
  static const double f64[2] = {0.25, -1e300};
  static const int32_t i32[3] = {7, -8, 9};
  static const int64_t i64[1] = {-1234567890123LL};
  bwt_st_tensor t[] = {{"a.f32", BWT_DTYPE_F32, 1, {5}, f32},
                       {"b.f64", BWT_DTYPE_F64, 2, {1, 2}, f64},
                       {"c.i32", BWT_DTYPE_I32, 2, {3, 1}, i32},
                       {"d.scalar", BWT_DTYPE_I64, 0, {0}, i64}};
  const char *k[] = {"format", "note"}, *v[] = {"test", "hello \"world\""};
  assert_int_equal(bwt_safetensors_write(path, t, 4, k, v, 2), BWT_STATUS_OK);
}

static int setup(void **state) {
  snprintf(path, sizeof path, "%s/x.safetensors", test_tmpdir("safetensors"));
  write_sample();
  return 0;
}

static void test_round_trip(void **state) {
  bwt_st_file *f = NULL;
  assert_int_equal(bwt_safetensors_open(&f, path), BWT_STATUS_OK);
  assert_int_equal(bwt_safetensors_count(f), 4);
  assert_string_equal(bwt_safetensors_meta(f, "note"), "hello \"world\"");
  assert_null(bwt_safetensors_meta(f, "missing"));
  const void *d = NULL;
  const int64_t s5[] = {5}, s12[] = {1, 2}, s31[] = {3, 1};
  assert_int_equal(bwt_safetensors_get(f, "a.f32", BWT_DTYPE_F32, 1, s5, &d), BWT_STATUS_OK);
  assert_float_equal(((const float *)d)[0], 1.5, 0);
  assert_int_equal((uintptr_t)d % 4, 0);
  assert_int_equal(bwt_safetensors_get(f, "b.f64", BWT_DTYPE_F64, 2, s12, &d), BWT_STATUS_OK);
  assert_float_equal(((const double *)d)[1], -1e300, 0);
  assert_int_equal((uintptr_t)d % 8, 0);
  assert_int_equal(bwt_safetensors_get(f, "c.i32", BWT_DTYPE_I32, 2, s31, &d), BWT_STATUS_OK);
  assert_int_equal(((const int32_t *)d)[1], -8);
  assert_int_equal(bwt_safetensors_get(f, "d.scalar", BWT_DTYPE_I64, 0, s5, &d), BWT_STATUS_OK);
  assert_int_equal(((const int64_t *)d)[0], -1234567890123LL);
  /* Wrong dtype, wrong shape, missing name: each a format error naming the tensor. */
  assert_int_equal(bwt_safetensors_get(f, "a.f32", BWT_DTYPE_F64, 1, s5, &d), BWT_STATUS_FORMAT);
  assert_non_null(strstr(bwt_last_error(), "a.f32"));
  assert_int_equal(bwt_safetensors_get(f, "b.f64", BWT_DTYPE_F64, 2, s31, &d), BWT_STATUS_FORMAT);
  assert_non_null(strstr(bwt_last_error(), "[1,2], expected [3,1]"));
  assert_int_equal(bwt_safetensors_get(f, "zz", BWT_DTYPE_F32, 1, s5, &d), BWT_STATUS_FORMAT);
  assert_non_null(strstr(bwt_last_error(), "no tensor 'zz'"));
  bwt_safetensors_close(f);
}

static unsigned char *slurp(size_t *n) {
  char *data = NULL;
  bwt_status s = bwt_read_file(path, &data, n);
  assert_int_equal(s, BWT_STATUS_OK);
  return (unsigned char *)data;
}

/* The layout other readers rely on: header length prefix, 8-byte aligned data start, offsets. */
static void test_layout(void **state) {
  size_t n;
  unsigned char *raw = slurp(&n);
  uint64_t h = 0;
  for (int i = 0; i < 8; i++) h |= (uint64_t)raw[i] << (8 * i);
  assert_int_equal((8 + h) % 8, 0);
  assert_true(8 + h <= n);
  char *json = strndup((const char *)raw + 8, h);
  assert_non_null(strstr(json, "\"a.f32\":{\"dtype\":\"F32\",\"shape\":[5],\"data_offsets\":[0,20]}"));
  assert_non_null(strstr(json, "\"data_offsets\":[24,40]")); /* b.f64 starts 8-aligned */
  free(json);
  free(raw);
  /* Same-size tensors are packed without gaps (huggingface's reader rejects gaps). */
  float x[6] = {0};
  bwt_st_tensor two[2] = {{"p", BWT_DTYPE_F32, 1, {3}, x}, {"q", BWT_DTYPE_F32, 1, {3}, x + 3}};
  char packed[1200];
  snprintf(packed, sizeof packed, "%s.packed", path);
  assert_int_equal(bwt_safetensors_write(packed, two, 2, NULL, NULL, 0), BWT_STATUS_OK);
  char *text = NULL;
  assert_int_equal(bwt_read_file(packed, &text, &n), BWT_STATUS_OK);
  uint64_t hp = 0;
  for (int i = 0; i < 8; i++) hp |= (uint64_t)(unsigned char)text[i] << (8 * i);
  assert_int_equal(n, 8 + hp + 24); /* the data is exactly the two tensors */
  text[n - 1] = 0;
  assert_non_null(strstr(text + 8, "\"q\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[12,24]}"));
  free(text);
  remove(packed);
  /* No temporary file is left behind. */
  char tmp[1200];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  assert_false(bwt_path_exists(tmp));
}

static void test_atomic_failure_keeps_old_file(void **state) {
  char tmp[1200], bad[1200];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  assert_int_equal(mkdir(tmp, 0755), 0); /* the temporary file cannot be created */
  float x = 1;
  bwt_st_tensor t = {"x", BWT_DTYPE_F32, 1, {1}, &x};
  assert_int_equal(bwt_safetensors_write(path, &t, 1, NULL, NULL, 0), BWT_STATUS_IO);
  assert_non_null(strstr(bwt_last_error(), ".tmp"));
  rmdir(tmp);
  bwt_st_file *f = NULL;
  assert_int_equal(bwt_safetensors_open(&f, path), BWT_STATUS_OK); /* the old file is intact */
  assert_int_equal(bwt_safetensors_count(f), 4);
  bwt_safetensors_close(f);
  snprintf(bad, sizeof bad, "%s/no/such/dir/y.safetensors", test_tmpdir("safetensors_nodir"));
  assert_int_equal(bwt_safetensors_write(bad, &t, 1, NULL, NULL, 0), BWT_STATUS_IO);
  assert_non_null(strstr(bwt_last_error(), "no/such/dir"));
}

/* Writes bytes to a file of their own and expects open to fail with status and a message part. */
static void expect_bad(const void *bytes, size_t n, bwt_status status, const char *part) {
  char bad[1200];
  snprintf(bad, sizeof bad, "%s.bad", path);
  assert_int_equal(bwt_write_file_atomic(bad, bytes, n), BWT_STATUS_OK);
  bwt_st_file *f = NULL;
  assert_int_equal(bwt_safetensors_open(&f, bad), status);
  assert_null(f);
  if (!strstr(bwt_last_error(), part)) fail_msg("message '%s' lacks '%s'", bwt_last_error(), part);
}

/* A file with the given JSON header and `data` bytes of zeros. */
static void expect_bad_header(const char *json, size_t data, const char *part) {
  size_t h = strlen(json), n = 8 + h + data;
  unsigned char *b = calloc(n, 1);
  for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)h >> (8 * i));
  memcpy(b + 8, json, h);
  expect_bad(b, n, BWT_STATUS_FORMAT, part);
  free(b);
}

static void test_bad_files(void **state) {
  bwt_st_file *f = NULL;
  char missing[1200];
  snprintf(missing, sizeof missing, "%s.missing", path);
  assert_int_equal(bwt_safetensors_open(&f, missing), BWT_STATUS_IO);
  assert_non_null(strstr(bwt_last_error(), "missing"));
  expect_bad("", 0, BWT_STATUS_FORMAT, "truncated");
  expect_bad("\x05\0\0", 3, BWT_STATUS_FORMAT, "truncated");
  expect_bad("\xff\xff\xff\xff\xff\xff\xff\x7f{}", 10, BWT_STATUS_FORMAT, "implausible");
  expect_bad("\x40\0\0\0\0\0\0\0{}", 10, BWT_STATUS_FORMAT, "truncated");
  size_t n;
  unsigned char *raw = slurp(&n);
  expect_bad(raw, n - 3, BWT_STATUS_FORMAT, "truncated: tensor");
  free(raw);
  expect_bad_header("not json at all", 0, "not a JSON object");
  expect_bad_header("[1,2]", 0, "not a JSON object");
  expect_bad_header("{\"w\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, "BF16");
  expect_bad_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "shape and dtype need");
  expect_bad_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, "shape entry");
  expect_bad_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "data_offsets");
  expect_bad_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,80]}}", 8, "truncated");
  expect_bad_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "data_offsets");
  expect_bad_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "overlap");
  expect_bad_header("{\"__metadata__\":{\"k\":3}}", 0, "not a string");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round_trip),
      cmocka_unit_test(test_layout),
      cmocka_unit_test(test_atomic_failure_keeps_old_file),
      cmocka_unit_test(test_bad_files),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
