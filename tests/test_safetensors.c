/* safetensors: round trip, layout, atomic writes, and every kind of bad file. */
#define _GNU_SOURCE /* memmem */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bwt/fileio.h"
#include "core/fault.h"
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
  /* The data is laid out by descending dtype size, then in the given order: b.f64 and d.scalar (8
   * bytes), then a.f32 and c.i32 (4 bytes); each aligned, no gap, and 56 bytes in all. */
  assert_non_null(strstr(json, "\"b.f64\":{\"dtype\":\"F64\",\"shape\":[1,2],\"data_offsets\":[0,16]}"));
  assert_non_null(strstr(json, "\"d.scalar\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[16,24]}"));
  assert_non_null(strstr(json, "\"a.f32\":{\"dtype\":\"F32\",\"shape\":[5],\"data_offsets\":[24,44]}"));
  assert_non_null(strstr(json, "\"c.i32\":{\"dtype\":\"I32\",\"shape\":[3,1],\"data_offsets\":[44,56]}"));
  assert_int_equal(n, 8 + h + 56);
  assert_non_null(strstr(json, "\"" BWT_ST_CHECKSUM_KEY "\":\"")); /* the checksum, in the metadata */
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
  assert_int_equal(test_count_temporaries(path), 0); /* no temporary file is left behind */
}

static void test_atomic_failure_keeps_old_file(void **state) {
  char bad[1200];
  float x = 1;
  bwt_st_tensor t = {"x", BWT_DTYPE_F32, 1, {1}, &x};
  /* A failed write, fsync or rename each leave the old file intact and no temporary behind. */
  const bwt_fault_kind kinds[] = {BWT_FAULT_WRITE, BWT_FAULT_FSYNC, BWT_FAULT_RENAME};
  const char *words[] = {"No space left", "Input/output error", "Input/output error"};
  for (int k = 0; k < 3; k++) {
    bwt_fault_arm(kinds[k], 1);
    assert_int_equal(bwt_safetensors_write(path, &t, 1, NULL, NULL, 0), BWT_STATUS_IO);
    bwt_fault_arm(BWT_FAULT_ALLOC, 0);
    if (!strstr(bwt_last_error(), words[k]) || !strstr(bwt_last_error(), path))
      fail_msg("message '%s' lacks '%s' or the path", bwt_last_error(), words[k]);
    bwt_st_file *f = NULL;
    assert_int_equal(bwt_safetensors_open(&f, path), BWT_STATUS_OK);
    assert_int_equal(bwt_safetensors_count(f), 4);
    bwt_safetensors_close(f);
    assert_int_equal(test_count_temporaries(path), 0);
  }
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
  expect_bad_header("{\"w\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2, "F8_E4M3");
  expect_bad_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "shape and dtype need");
  expect_bad_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, "shape entry");
  expect_bad_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "data_offsets");
  expect_bad_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,80]}}", 8, "truncated");
  expect_bad_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "data_offsets");
  expect_bad_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "overlap");
  expect_bad_header("{\"__metadata__\":{\"k\":3}}", 0, "not a string");
  /* Stricter than a lax reader: the tensors must tile the buffer exactly, the header must be one
   * object and only padding, names are unique. */
  expect_bad_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 9, "after the last tensor");
  expect_bad_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "before tensor 'w'");
  expect_bad_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12, "before tensor 'b'");
  expect_bad_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                    "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "appears twice");
  expect_bad_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}  x", 4, "after its JSON object");
  expect_bad_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"extra\":1}}", 4, "besides");
  expect_bad_header(" {}", 0, "not a JSON object");
  raw = slurp(&n);
  /* A header length one byte short (or long) shifts every tensor: refused, never read shifted. */
  for (int delta = -1; delta <= 1; delta += 2) {
    unsigned char *shifted = malloc(n);
    memcpy(shifted, raw, n);
    uint64_t h = 0;
    for (int i = 0; i < 8; i++) h |= (uint64_t)raw[i] << (8 * i);
    h += (uint64_t)delta;
    for (int i = 0; i < 8; i++) shifted[i] = (unsigned char)(h >> (8 * i));
    expect_bad(shifted, n, BWT_STATUS_FORMAT, "");
    free(shifted);
  }
  /* Trailing bytes, and every single-bit flip in the tensor data, are caught (the checksum). */
  unsigned char *longer = malloc(n + 4);
  memcpy(longer, raw, n);
  memset(longer + n, 0, 4);
  expect_bad(longer, n + 4, BWT_STATUS_FORMAT, "after the last tensor");
  free(longer);
  uint64_t h = 0;
  for (int i = 0; i < 8; i++) h |= (uint64_t)raw[i] << (8 * i);
  for (size_t byte = 8 + h; byte < n; byte++)
    for (int bit = 0; bit < 8; bit++) {
      raw[byte] ^= (unsigned char)(1u << bit);
      expect_bad(raw, n, BWT_STATUS_FORMAT, "damaged");
      raw[byte] ^= (unsigned char)(1u << bit);
    }
  /* A metadata value changed by one character is caught too. */
  char *meta = memmem(raw, n, "hello", 5);
  assert_non_null(meta);
  meta[0] = 'j';
  expect_bad(raw, n, BWT_STATUS_FORMAT, "damaged");
  free(raw);
}

/* Only regular files are read: a FIFO would block and a device could be endless. */
static void test_not_regular(void **state) {
  char fifo[1200], link[1200], dir[1200];
  snprintf(fifo, sizeof fifo, "%s.fifo", path);
  snprintf(link, sizeof link, "%s.zero", path);
  snprintf(dir, sizeof dir, "%s.dir", path);
  unlink(fifo), unlink(link), rmdir(dir);
  assert_int_equal(mkfifo(fifo, 0644), 0);
  assert_int_equal(symlink("/dev/zero", link), 0);
  assert_int_equal(mkdir(dir, 0755), 0);
  const char *paths[] = {fifo, link, dir};
  for (int i = 0; i < 3; i++) {
    bwt_st_file *f = NULL;
    assert_int_equal(bwt_safetensors_open(&f, paths[i]), BWT_STATUS_IO);
    if (!strstr(bwt_last_error(), "not a regular file")) fail_msg("%s: '%s'", paths[i], bwt_last_error());
  }
  unlink(fifo), unlink(link), rmdir(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round_trip),
      cmocka_unit_test(test_layout),
      cmocka_unit_test(test_atomic_failure_keeps_old_file),
      cmocka_unit_test(test_bad_files),
      cmocka_unit_test(test_not_regular),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
