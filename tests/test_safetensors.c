/* safetensors: round trip, layout, atomic writes, every kind of bad file; F16/BF16 conversions;
 * sharded models through an index; and the memory a large file costs (mapped, read by tensor). */
#define _GNU_SOURCE /* memmem */
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

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

/* ---- F16 and BF16 ---- */

static uint32_t bits_of(float x) {
  uint32_t b;
  memcpy(&b, &x, sizeof b);
  return b;
}

/* Every F16 and BF16 bit pattern against an independent oracle (the value computed in double from
 * the fields), and a few values worked out by hand. */
static void test_half_conversions(void **state) {
  for (uint32_t h = 0; h < 65536; h++) {
    uint32_t sign = h >> 15, exp = (h >> 10) & 31u, man = h & 1023u;
    float got = bwt_f16_to_f32((uint16_t)h);
    if (exp == 31 && man) { /* NaN, quiet or signalling: sign and payload kept */
      assert_true(isnan(got));
      assert_int_equal(bits_of(got), sign << 31 | 0x7f800000u | man << 13);
      continue;
    }
    double want = exp == 31 ? INFINITY : exp == 0 ? ldexp(man, -24) : ldexp(1024 + man, (int)exp - 25);
    float w = (float)(sign ? -want : want);
    if (bits_of(got) != bits_of(w)) fail_msg("F16 %04x gives %a (bits %08x), expected %a", h, (double)got, bits_of(got), (double)w);
    assert_int_equal(bits_of(bwt_bf16_to_f32((uint16_t)h)), h << 16);
  }
  const uint16_t f16[] = {0x3c00, 0xc000, 0x7bff, 0x0001, 0x03ff, 0x0400, 0x3555, 0x7c00, 0xfc00, 0x8000};
  const float f16_want[] = {1.0f, -2.0f, 65504.0f, 0x1p-24f, 0x1.ff8p-15f, 0x1p-14f, 0x1.554p-2f, INFINITY, -INFINITY, -0.0f};
  for (int i = 0; i < 10; i++) assert_int_equal(bits_of(bwt_f16_to_f32(f16[i])), bits_of(f16_want[i]));
  assert_true(isnan(bwt_f16_to_f32(0x7e00)) && isnan(bwt_f16_to_f32(0x7c01)) && signbit(bwt_f16_to_f32(0xfe00)));
  const uint16_t bf16[] = {0x3f80, 0x4049, 0xc2f7, 0x7f80, 0x0000};
  const float bf16_want[] = {1.0f, 3.140625f, -123.5f, INFINITY, 0.0f};
  for (int i = 0; i < 5; i++) assert_int_equal(bits_of(bwt_bf16_to_f32(bf16[i])), bits_of(bf16_want[i]));
  assert_int_equal(bits_of(bwt_bf16_to_f32(0x0001)), 0x00010000u); /* a float subnormal */
  assert_true(isnan(bwt_bf16_to_f32(0x7fc0)));
  /* The array form reads little-endian pairs at any alignment. */
  const unsigned char raw[] = {0xff, 0x00, 0x3c, 0x00, 0xc0};
  float out[2];
  bwt_half_to_f32(out, raw + 1, 2, BWT_DTYPE_F16);
  assert_true(out[0] == 1.0f && out[1] == -2.0f);
  bwt_half_to_f32(out, raw + 1, 1, BWT_DTYPE_BF16);
  assert_int_equal(bits_of(out[0]), 0x3c000000u);
}

static void fixture_path(char *out, size_t n, const char *name) {
  const char *src = __FILE__, *slash = strrchr(src, '/');
  int dir_len = slash ? (int)(slash - src) : 1;
  snprintf(out, n, "%.*s/fixtures/%s", dir_len, slash ? src : ".", name);
}

/* tests/fixtures/half.safetensors (tools/make_half_fixture.py): values from Python's own F16 decoder,
 * every tensor at a misaligned offset, as another writer may leave them. */
static void test_half_fixture(void **state) {
  char fx[1200];
  fixture_path(fx, sizeof fx, "half.safetensors");
  bwt_st_file *f = NULL;
  assert_int_equal(bwt_safetensors_open(&f, fx), BWT_STATUS_OK);
  assert_int_equal(bwt_safetensors_count(f), 5);
  const char *names[2][2] = {{"f16", "f16.as_f32"}, {"bf16", "bf16.as_f32"}};
  for (int k = 0; k < 2; k++) {
    bwt_st_info info;
    assert_int_equal(bwt_safetensors_info(f, names[k][0], &info), BWT_STATUS_OK);
    assert_int_equal(info.dtype, k ? BWT_DTYPE_BF16 : BWT_DTYPE_F16);
    assert_int_equal(info.n_bytes, 2 * info.n_elems);
    assert_true(info.n_elems > 100);
    const float *got = NULL, *want = NULL;
    const void *raw = NULL;
    assert_int_equal(bwt_safetensors_get_f32(f, names[k][0], 1, info.shape, &got), BWT_STATUS_OK);
    assert_int_equal(bwt_safetensors_get_f32(f, names[k][1], 1, info.shape, &want), BWT_STATUS_OK);
    assert_int_equal((uintptr_t)want % 4, 0); /* misaligned in the file: copied */
    assert_int_equal(bwt_safetensors_get(f, names[k][0], info.dtype, 1, info.shape, &raw), BWT_STATUS_OK);
    assert_int_equal((uintptr_t)raw % 2, 0);
    float *dst = malloc(info.n_elems * sizeof *dst);
    assert_int_equal(bwt_safetensors_read_f32(f, names[k][0], 1, info.shape, dst, info.n_elems), BWT_STATUS_OK);
    for (size_t i = 0; i < info.n_elems; i++) {
      uint16_t h;
      memcpy(&h, (const unsigned char *)raw + 2 * i, 2);
      if (bits_of(got[i]) != bits_of(want[i]) || bits_of(dst[i]) != bits_of(want[i]))
        fail_msg("%s[%zu] = %04x gives %a, Python gives %a", names[k][0], i, h, (double)got[i], (double)want[i]);
    }
    free(dst);
  }
  const float *x = NULL;
  const int64_t s3[] = {3};
  assert_int_equal(bwt_safetensors_get_f32(f, "f32", 1, s3, &x), BWT_STATUS_OK);
  assert_true(x[0] == 1.5f && x[1] == -2.0f && x[2] == 3.25f);
  assert_null(bwt_safetensors_unused(f));
  bwt_safetensors_close(f);
}

/* Whether [p, p + n) lies in a mapping of the file `file` (/proc/self/maps): read without a copy. */
static int in_mapping_of(const void *p, size_t n, const char *file) {
  FILE *maps = fopen("/proc/self/maps", "r");
  char line[4096];
  int found = 0;
  while (maps && !found && fgets(line, sizeof line, maps)) {
    unsigned long lo, hi;
    if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && strstr(line, file) && (uintptr_t)p >= lo && (uintptr_t)p + n <= hi) found = 1;
  }
  if (maps) fclose(maps);
  return found;
}

/* Float access to bwt's own files: F32 read in place, F16/BF16 converted, other dtypes refused. */
static void test_float_access(void **state) {
  char p[1200];
  snprintf(p, sizeof p, "%s/floats.safetensors", test_tmpdir("st_floats"));
  static const float w[6] = {1, 2, 3, 4, 5, 6};
  static const uint16_t h[3] = {0x3c00, 0xc000, 0x3800}, b[2] = {0x3f80, 0xc2f7};
  static const int32_t n[1] = {7};
  bwt_st_tensor t[] = {{"w", BWT_DTYPE_F32, 2, {2, 3}, w}, {"h", BWT_DTYPE_F16, 1, {3}, h},
                       {"b", BWT_DTYPE_BF16, 1, {2}, b}, {"n", BWT_DTYPE_I32, 1, {1}, n}};
  assert_int_equal(bwt_safetensors_write(p, t, 4, NULL, NULL, 0), BWT_STATUS_OK);
  bwt_st_file *f = NULL;
  assert_int_equal(bwt_safetensors_open_lazy(&f, p), BWT_STATUS_OK);
  assert_string_equal(bwt_safetensors_path(f), p);
  bwt_st_info info = bwt_safetensors_info_at(f, 0);
  assert_string_equal(info.name, "w");
  assert_true(info.dtype == BWT_DTYPE_F32 && info.ndim == 2 && info.shape[1] == 3 && info.n_elems == 6 && info.n_bytes == 24);
  const int64_t s23[] = {2, 3}, s6[] = {6};
  const float *x = NULL, *y = NULL;
  const void *raw = NULL;
  assert_int_equal(bwt_safetensors_get_f32(f, "w", 2, s23, &x), BWT_STATUS_OK);
  assert_int_equal(bwt_safetensors_get(f, "w", BWT_DTYPE_F32, 2, s23, &raw), BWT_STATUS_OK);
  assert_ptr_equal(x, raw);
  assert_true(in_mapping_of(x, 24, p)); /* the file's own pages, no copy */
  assert_true(x[5] == 6.0f);
  assert_int_equal(bwt_safetensors_get_f32(f, "h", 0, NULL, &y), BWT_STATUS_OK);
  assert_true(y[0] == 1.0f && y[1] == -2.0f && y[2] == 0.5f);
  float z[2];
  assert_int_equal(bwt_safetensors_read_f32(f, "b", 0, NULL, z, 2), BWT_STATUS_OK);
  assert_true(z[0] == 1.0f && z[1] == -123.5f);
  assert_int_equal(bwt_safetensors_read_f32(f, "b", 0, NULL, z, 1), BWT_STATUS_ARG);
  assert_non_null(strstr(bwt_last_error(), "has 2 elements"));
  assert_int_equal(bwt_safetensors_get_f32(f, "w", 1, s6, &x), BWT_STATUS_FORMAT);
  assert_non_null(strstr(bwt_last_error(), "shape [2,3], expected [6]"));
  assert_int_equal(bwt_safetensors_get_f32(f, "n", 0, NULL, &x), BWT_STATUS_FORMAT);
  assert_non_null(strstr(bwt_last_error(), "tensor 'n' is I32, expected a float tensor"));
  assert_int_equal(bwt_safetensors_info(f, "zz", &info), BWT_STATUS_FORMAT);
  assert_non_null(strstr(bwt_last_error(), "no tensor 'zz'"));
  assert_string_equal(bwt_safetensors_unused(f), "n");
  bwt_safetensors_close(f);
  /* A damaged byte: open_lazy does not read the data, verify (and open) do. */
  char *bytes = NULL;
  size_t len = 0;
  assert_int_equal(bwt_read_file(p, &bytes, &len), BWT_STATUS_OK);
  bytes[len - 1] ^= 1;
  assert_int_equal(bwt_write_file_atomic(p, bytes, len), BWT_STATUS_OK);
  free(bytes);
  assert_int_equal(bwt_safetensors_open_lazy(&f, p), BWT_STATUS_OK);
  assert_int_equal(bwt_safetensors_verify(f), BWT_STATUS_FORMAT);
  assert_non_null(strstr(bwt_last_error(), "is damaged"));
  bwt_safetensors_close(f);
  assert_int_equal(bwt_safetensors_open(&f, p), BWT_STATUS_FORMAT);
  assert_null(f);
}

/* ---- sharded models ---- */

#define SHARD1 "model-00001-of-00002.safetensors"
#define SHARD2 "model-00002-of-00002.safetensors"

static void write_text(const char *dir, const char *name, const char *text) {
  char p[1200];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  assert_int_equal(bwt_write_file_atomic(p, text, strlen(text)), BWT_STATUS_OK);
}

/* Two shards as a Hugging Face export lays them out: a (F32 2x3) and b (BF16 4) in the first, c (F16
 * 3) and d (F32 5) in the second, and the index. */
static const char *write_shards(const char *name) {
  const char *dir = test_tmpdir(name);
  static const float a[6] = {1, 2, 3, 4, 5, 6}, d[5] = {-1, -2, -3, -4, -5};
  static const uint16_t b[4] = {0x3f80, 0x4049, 0xc2f7, 0x0000}, c[3] = {0x3c00, 0xc000, 0x3800};
  bwt_st_tensor one[] = {{"a", BWT_DTYPE_F32, 2, {2, 3}, a}, {"b", BWT_DTYPE_BF16, 1, {4}, b}};
  bwt_st_tensor two[] = {{"c", BWT_DTYPE_F16, 1, {3}, c}, {"d", BWT_DTYPE_F32, 1, {5}, d}};
  char p[1200];
  snprintf(p, sizeof p, "%s/" SHARD1, dir);
  assert_int_equal(bwt_safetensors_write(p, one, 2, NULL, NULL, 0), BWT_STATUS_OK);
  snprintf(p, sizeof p, "%s/" SHARD2, dir);
  assert_int_equal(bwt_safetensors_write(p, two, 2, NULL, NULL, 0), BWT_STATUS_OK);
  write_text(dir, "model.safetensors.index.json",
             "{\"metadata\": {\"total_size\": 54},\n \"weight_map\": {\"a\": \"" SHARD1 "\", \"b\": \"" SHARD1
             "\", \"c\": \"" SHARD2 "\", \"d\": \"" SHARD2 "\"}}\n");
  return dir;
}

static void test_sharded_model(void **state) {
  const char *dir = write_shards("st_sharded");
  char index[1200], s2[1200], away[1200];
  snprintf(index, sizeof index, "%s/model.safetensors.index.json", dir);
  snprintf(s2, sizeof s2, "%s/" SHARD2, dir);
  snprintf(away, sizeof away, "%s/away", dir);
  for (int by_index = 0; by_index < 2; by_index++) { /* the directory, or the index file itself */
    bwt_st_model *m = NULL;
    assert_int_equal(bwt_safetensors_model_open(&m, by_index ? index : dir), BWT_STATUS_OK);
    assert_int_equal(bwt_safetensors_model_count(m), 4);
    assert_string_equal(bwt_safetensors_model_name(m, 0), "a");
    assert_string_equal(bwt_safetensors_model_name(m, 3), "d");
    const float *x = NULL;
    const int64_t s23[] = {2, 3};
    assert_int_equal(bwt_safetensors_model_get_f32(m, "c", 0, NULL, &x), BWT_STATUS_OK);
    assert_true(x[0] == 1.0f && x[1] == -2.0f && x[2] == 0.5f);
    float y[4];
    assert_int_equal(bwt_safetensors_model_read_f32(m, "b", 0, NULL, y, 4), BWT_STATUS_OK);
    assert_true(y[0] == 1.0f && y[1] == 3.140625f && y[2] == -123.5f && y[3] == 0.0f);
    assert_int_equal(bwt_safetensors_model_get_f32(m, "a", 2, s23, &x), BWT_STATUS_OK);
    assert_true(x[5] == 6.0f);
    const bwt_st_file *f = NULL;
    assert_int_equal(bwt_safetensors_model_file(m, "d", &f), BWT_STATUS_OK);
    assert_non_null(strstr(bwt_safetensors_path(f), SHARD2));
    assert_int_equal(bwt_safetensors_model_get_f32(m, "zz", 0, NULL, &x), BWT_STATUS_FORMAT);
    if (!strstr(bwt_last_error(), "model.safetensors.index.json has no tensor 'zz'")) fail_msg("'%s'", bwt_last_error());
    bwt_safetensors_model_close(m);
  }
  /* Shards are opened when first needed: without the second, the first still reads; the second's
   * tensors fail naming the shard and tensor, and read once it is back. */
  bwt_st_model *m = NULL;
  assert_int_equal(bwt_safetensors_model_open(&m, dir), BWT_STATUS_OK);
  assert_int_equal(rename(s2, away), 0);
  const float *x = NULL;
  assert_int_equal(bwt_safetensors_model_get_f32(m, "a", 0, NULL, &x), BWT_STATUS_OK);
  assert_int_equal(bwt_safetensors_model_get_f32(m, "d", 0, NULL, &x), BWT_STATUS_IO);
  if (!strstr(bwt_last_error(), "shard '" SHARD2 "' (for tensor 'd') cannot be opened: cannot read") ||
      !strstr(bwt_last_error(), "No such file"))
    fail_msg("'%s'", bwt_last_error());
  assert_int_equal(rename(away, s2), 0);
  assert_int_equal(bwt_safetensors_model_get_f32(m, "d", 0, NULL, &x), BWT_STATUS_OK);
  assert_true(x[4] == -5.0f);
  bwt_safetensors_model_close(m);
  /* A directory with one model.safetensors, and a single file, are models of one shard. */
  char single[1200];
  snprintf(single, sizeof single, "%s/model.safetensors", dir);
  assert_int_equal(rename(s2, single), 0);
  remove(index);
  for (int k = 0; k < 2; k++) {
    assert_int_equal(bwt_safetensors_model_open(&m, k ? single : dir), BWT_STATUS_OK);
    assert_int_equal(bwt_safetensors_model_count(m), 2);
    assert_int_equal(bwt_safetensors_model_get_f32(m, "c", 0, NULL, &x), BWT_STATUS_OK);
    assert_true(x[1] == -2.0f);
    assert_int_equal(bwt_safetensors_model_get_f32(m, "a", 0, NULL, &x), BWT_STATUS_FORMAT);
    assert_non_null(strstr(bwt_last_error(), "model.safetensors has no tensor 'a'"));
    bwt_safetensors_model_close(m);
  }
}

/* Opens the model in dir (after writing its index, if index is not NULL) expecting status and a
 * message holding each of the parts (NULL-terminated), at open or, with tensor, at reading it. */
static void expect_model_error(const char *dir, const char *index, const char *tensor, bwt_status status, ...) {
  if (index) write_text(dir, "model.safetensors.index.json", index);
  bwt_st_model *m = NULL;
  bwt_status s = bwt_safetensors_model_open(&m, dir);
  if (tensor) {
    assert_int_equal(s, BWT_STATUS_OK);
    float x[8];
    s = bwt_safetensors_model_read_f32(m, tensor, 0, NULL, x, 0);
  }
  bwt_safetensors_model_close(m);
  if (s != status) fail_msg("status %d (%s), expected %d", s, bwt_last_error(), status);
  va_list ap;
  va_start(ap, status);
  for (const char *part; (part = va_arg(ap, const char *));)
    if (!strstr(bwt_last_error(), part)) fail_msg("message '%s' lacks '%s'", bwt_last_error(), part);
  va_end(ap);
}

static void test_sharded_errors(void **state) {
  const char *d = write_shards("st_sharded_errors");
  char dir[1100];
  snprintf(dir, sizeof dir, "%s", d);
  bwt_status F = BWT_STATUS_FORMAT;
  const char *map = "{\"weight_map\": {\"a\": \"" SHARD1 "\", ";
  char text[1000];
  /* A tensor the index lists in a shard that does not hold it; a missing shard; a damaged one. */
  snprintf(text, sizeof text, "%s\"ghost\": \"" SHARD1 "\"}}", map);
  expect_model_error(dir, text, "ghost", F, "lists tensor 'ghost' in shard '" SHARD1 "', but", SHARD1 " has no tensor 'ghost'", NULL);
  snprintf(text, sizeof text, "%s\"x\": \"model-00003-of-00002.safetensors\"}}", map);
  expect_model_error(dir, text, "x", BWT_STATUS_IO, "shard 'model-00003-of-00002.safetensors' (for tensor 'x')", "No such file", NULL);
  char p[1200];
  snprintf(p, sizeof p, "%s/cut.safetensors", dir);
  assert_int_equal(bwt_write_file_atomic(p, "\x08\0\0\0\0\0\0\0{}", 10), BWT_STATUS_OK);
  snprintf(text, sizeof text, "%s\"x\": \"cut.safetensors\"}}", map);
  expect_model_error(dir, text, "x", F, "shard 'cut.safetensors' (for tensor 'x')", "truncated", NULL);
  /* An unknown dtype in a shard names the tensor, the dtype and the file. */
  const char *h = "{\"e\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[0,2]}}      ";
  unsigned char buf[128] = {0};
  size_t hl = strlen(h);
  buf[0] = (unsigned char)hl;
  memcpy(buf + 8, h, hl);
  snprintf(p, sizeof p, "%s/f8.safetensors", dir);
  assert_int_equal(bwt_write_file_atomic(p, buf, 8 + hl + 2), BWT_STATUS_OK);
  snprintf(text, sizeof text, "%s\"e\": \"f8.safetensors\"}}", map);
  expect_model_error(dir, text, "e", F, "f8.safetensors: tensor 'e' has unsupported dtype 'F8_E4M3'", NULL);
  /* Malformed indexes. */
  expect_model_error(dir, "not json", NULL, F, "malformed index: not a JSON object", NULL);
  expect_model_error(dir, "{\"weight_map\": 3}", NULL, F, "malformed index: no 'weight_map' object", NULL);
  expect_model_error(dir, "{\"metadata\": 3, \"weight_map\": {}}", NULL, F, "'metadata' is not an object", NULL);
  expect_model_error(dir, "{\"weight_map\": {}}", NULL, F, "lists no tensor", NULL);
  expect_model_error(dir, "{\"weight_map\": {\"a\": 3}}", NULL, F, "tensor 'a' maps to a non-string", NULL);
  expect_model_error(dir, "{\"weight_map\": {\"a\": \"../x.safetensors\"}}", NULL, F, "not a relative file name", NULL);
  expect_model_error(dir, "{\"weight_map\": {\"a\": \"/etc/x\"}}", NULL, F, "not a relative file name", NULL);
  expect_model_error(dir, "{\"weight_map\": {\"a\": \"" SHARD1 "\", \"a\": \"" SHARD1 "\"}}", NULL, F, "tensor 'a' is listed twice", NULL);
  /* Nothing to open. */
  char empty[1200];
  snprintf(empty, sizeof empty, "%s/empty", dir);
  assert_int_equal(mkdir(empty, 0755), 0);
  expect_model_error(empty, NULL, NULL, BWT_STATUS_IO, "holds neither model.safetensors.index.json nor model.safetensors", NULL);
  snprintf(p, sizeof p, "%s/missing", dir);
  expect_model_error(p, NULL, NULL, BWT_STATUS_IO, "cannot read", "missing", NULL);
}

/* ---- a large file ---- */

#define LARGE_MB 512 /* of tensor data */
#define SMALL_N 1024
static char large_path[1200];

static long peak_rss_kb(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

/* The large file: "big" (F32, LARGE_MB MB: x[i] = i mod 1000), then "small" (F32 SMALL_N: i / 2),
 * with a bwt checksum; written in 1 MB pieces, so that writing it costs this process no memory. */
static void write_large(const char *p) {
  size_t big = (size_t)LARGE_MB << 20, small = SMALL_N * sizeof(float), chunk = 1 << 20;
  char header[512];
  int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  assert_true(fd >= 0);
  uint32_t crc = (uint32_t)crc32(0L, Z_NULL, 0);
  int hl = 0;
  for (int pass = 0; pass < 2; pass++) { /* the header again once the checksum is known */
    hl = snprintf(header, sizeof header,
                  "{\"__metadata__\":{\"" BWT_ST_CHECKSUM_KEY "\":\"%08x\"},\"big\":{\"dtype\":\"F32\",\"shape\":[%zu],"
                  "\"data_offsets\":[0,%zu]},\"small\":{\"dtype\":\"F32\",\"shape\":[%d],\"data_offsets\":[%zu,%zu]}}",
                  (unsigned)crc, big / 4, big, SMALL_N, big, big + small);
    while (hl % 8) header[hl++] = ' ';
    unsigned char len[8];
    for (int i = 0; i < 8; i++) len[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    assert_int_equal(pwrite(fd, len, 8, 0), 8);
    assert_int_equal(pwrite(fd, header, (size_t)hl, 8), hl);
    if (pass) break;
    float *x = malloc(chunk);
    for (size_t at = 0; at < big; at += chunk) {
      for (size_t i = 0; i < chunk / 4; i++) x[i] = (float)((at / 4 + i) % 1000);
      crc = (uint32_t)crc32(crc, (const Bytef *)x, (uInt)chunk);
      assert_int_equal(pwrite(fd, x, chunk, (off_t)(8 + hl + at)), (ssize_t)chunk);
    }
    for (int i = 0; i < SMALL_N; i++) x[i] = (float)i / 2;
    crc = (uint32_t)crc32(crc, (const Bytef *)x, (uInt)small);
    assert_int_equal(pwrite(fd, x, small, (off_t)(8 + hl + big)), (ssize_t)small);
    free(x);
  }
  assert_int_equal(close(fd), 0);
}

static int remove_large_file(void **state) {
  if (*large_path) unlink(large_path);
  return 0;
}

/* Opening a 512 MB file and reading one small tensor must cost memory of the order of that tensor,
 * not of the file: the growth of this process's peak RSS (getrusage; a count of pages, not a time)
 * stays far below the file's size, lazily or with the checksum checked. Reading the big tensor then
 * shows the measure does see a file's pages. */
static void test_large_file_rss(void **state) {
  snprintf(large_path, sizeof large_path, "%s/large.safetensors", test_tmpdir("st_large"));
  write_large(large_path);
  const int64_t shape[] = {SMALL_N};
  long limit_kb = 64 << 10, growth[2];
  for (int verify = 0; verify < 2; verify++) {
    long before = peak_rss_kb();
    bwt_st_file *f = NULL;
    assert_int_equal((verify ? bwt_safetensors_open : bwt_safetensors_open_lazy)(&f, large_path), BWT_STATUS_OK);
    const float *x = NULL;
    assert_int_equal(bwt_safetensors_get_f32(f, "small", 1, shape, &x), BWT_STATUS_OK);
    assert_true(x[0] == 0.0f && x[SMALL_N - 1] == (float)(SMALL_N - 1) / 2);
    growth[verify] = peak_rss_kb() - before;
    bwt_safetensors_close(f);
  }
  print_message("large file of %d MB: peak RSS grew by %ld KB (open_lazy + one 4 KB tensor), %ld KB (open with "
                "checksum + the same tensor)\n", LARGE_MB, growth[0], growth[1]);
  if (growth[0] > limit_kb || growth[1] > limit_kb) fail_msg("peak RSS grew by %ld / %ld KB (limit %ld)", growth[0], growth[1], limit_kb);
  long before = peak_rss_kb();
  bwt_st_file *f = NULL;
  assert_int_equal(bwt_safetensors_open_lazy(&f, large_path), BWT_STATUS_OK);
  const float *x = NULL;
  assert_int_equal(bwt_safetensors_get_f32(f, "big", 0, NULL, &x), BWT_STATUS_OK);
  float sum = 0;
  for (size_t i = 0; i < ((size_t)LARGE_MB << 20) / 4; i += 1024) sum += x[i]; /* one float per page */
  assert_true(sum > 0);
  long all = peak_rss_kb() - before;
  bwt_safetensors_close(f);
  print_message("reading all of the big tensor: peak RSS grew by %ld KB\n", all);
  assert_true(all > (LARGE_MB << 10) * 9L / 10);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      /* First, while this process's peak RSS is still small: it measures the peak's growth. */
      cmocka_unit_test_teardown(test_large_file_rss, remove_large_file),
      cmocka_unit_test(test_round_trip),
      cmocka_unit_test(test_layout),
      cmocka_unit_test(test_atomic_failure_keeps_old_file),
      cmocka_unit_test(test_bad_files),
      cmocka_unit_test(test_not_regular),
      cmocka_unit_test(test_half_conversions),
      cmocka_unit_test(test_half_fixture),
      cmocka_unit_test(test_float_access),
      cmocka_unit_test(test_sharded_model),
      cmocka_unit_test(test_sharded_errors),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
