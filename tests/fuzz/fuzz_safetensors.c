/* libFuzzer harness for the safetensors reader (src/io/safetensors.c), the first thing every
 * checkpoint, snapshot and Hugging Face file goes through. Any bytes must give either a clean
 * failure or a file whose every tensor can be fetched and read in full: no crash, leak or UB.
 *
 * Each input is read twice: from memory (bwt_safetensors_open_memory, checksum checked) and as a
 * mapped file (written to a scratch file of this process, opened with bwt_safetensors_open_lazy,
 * then bwt_safetensors_verify): both must agree. The harness parses the header JSON itself (it is
 * valid once an open succeeds) and checks the reader's view against it: the tensors listed in header
 * order, each fetched by exactly its own dtype (and by its shape), aligned, its bytes readable, float
 * tensors (F32, F16, BF16) the same through every float accessor, and the tensors' bytes adding up
 * to the data buffer. */
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "bwt/safetensors.h"
#include "fuzz_common.h"

static char scratch[64];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  bwt_alloc_hooks_install();
  snprintf(scratch, sizeof scratch, "/tmp/fuzz_safetensors.%d", (int)getpid());
  return 0;
}

static const char *const dtype_names[BWT_DTYPE_COUNT] = {"F32", "F64", "I32", "I64", "F16", "BF16"};

/* Reads every byte of a tensor, so that ASan sees a buffer that is shorter than the header says. */
static unsigned read_bytes(const void *data, size_t n) {
  const unsigned char *p = data;
  unsigned sum = 0;
  for (size_t i = 0; i < n; i++) sum = sum * 31u + p[i];
  return sum;
}

static int is_float(bwt_dtype d) { return d == BWT_DTYPE_F32 || d == BWT_DTYPE_F16 || d == BWT_DTYPE_BF16; }

/* A float tensor through get_f32 and read_f32: the same bits, and those of its raw bytes. */
static void check_floats(const bwt_st_file *f, const char *name, bwt_dtype dtype, const void *raw, size_t n) {
  const float *x = NULL;
  FUZZ_CHECK(bwt_safetensors_get_f32(f, name, 0, NULL, &x) == BWT_STATUS_OK && x != NULL && (uintptr_t)x % 4 == 0);
  if (n > (1u << 20)) return; /* a copy of a huge tensor would only test malloc */
  float *y = malloc(n ? n * sizeof *y : 1);
  if (!y) return;
  FUZZ_CHECK(bwt_safetensors_read_f32(f, name, 0, NULL, y, n) == BWT_STATUS_OK);
  FUZZ_CHECK(n == 0 || memcmp(x, y, n * sizeof *y) == 0);
  if (dtype == BWT_DTYPE_F32) FUZZ_CHECK(n == 0 || memcmp(x, raw, n * sizeof *y) == 0);
  else
    for (size_t i = 0; i < n; i++) {
      uint16_t h;
      memcpy(&h, (const unsigned char *)raw + 2 * i, 2);
      float want = dtype == BWT_DTYPE_F16 ? bwt_f16_to_f32(h) : bwt_bf16_to_f32(h);
      FUZZ_CHECK(memcmp(&want, &x[i], sizeof want) == 0);
    }
  if (n) FUZZ_CHECK(bwt_safetensors_read_f32(f, name, 0, NULL, y, n - 1) != BWT_STATUS_OK);
  free(y);
}

static void walk(const bwt_st_file *f, const uint8_t *in, size_t len) {
  uint64_t hlen = 0;
  for (int i = 0; i < 8; i++) hlen |= (uint64_t)in[i] << (8 * i);
  FUZZ_CHECK(len >= 8 && hlen <= len - 8);
  cJSON *h = cJSON_ParseWithLength((const char *)in + 8, (size_t)hlen);
  if (!h) return; /* out of memory under the harness's own parse; the reader parsed it */
  const cJSON *meta = cJSON_GetObjectItemCaseSensitive(h, "__metadata__");
  if (meta)
    for (const cJSON *m = meta->child; m; m = m->next) FUZZ_CHECK(bwt_safetensors_meta(f, m->string) != NULL);
  int n = 0;
  size_t total = 0;
  unsigned sum = 0;
  for (const cJSON *it = h->child; it; it = it->next) {
    if (it == meta) continue;
    const char *name = it->string;
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(it, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(it, "shape");
    const cJSON *of = cJSON_GetObjectItemCaseSensitive(it, "data_offsets");
    FUZZ_CHECK(cJSON_IsString(dt) && cJSON_IsArray(sh) && cJSON_IsArray(of) && cJSON_GetArraySize(of) == 2);
    size_t begin = (size_t)cJSON_GetArrayItem(of, 0)->valuedouble, end = (size_t)cJSON_GetArrayItem(of, 1)->valuedouble;
    FUZZ_CHECK(begin <= end && end <= bwt_safetensors_data_bytes(f));
    total += end - begin;
    int ndim = cJSON_GetArraySize(sh);
    FUZZ_CHECK(ndim >= 0 && ndim <= BWT_ST_MAX_DIMS);
    int64_t shape[BWT_ST_MAX_DIMS + 1];
    for (int d = 0; d < ndim; d++) shape[d] = (int64_t)cJSON_GetArrayItem(sh, d)->valuedouble;
    bwt_st_info info = bwt_safetensors_info_at(f, n), again_info;
    FUZZ_CHECK(strcmp(info.name, name) == 0 && strcmp(bwt_dtype_name(info.dtype), dt->valuestring) == 0);
    FUZZ_CHECK(info.ndim == ndim && info.offset == begin && info.n_bytes == end - begin &&
               info.n_bytes == info.n_elems * bwt_dtype_size(info.dtype));
    FUZZ_CHECK(ndim == 0 || memcmp(info.shape, shape, sizeof(int64_t) * ndim) == 0);
    FUZZ_CHECK(bwt_safetensors_info(f, name, &again_info) == BWT_STATUS_OK && again_info.offset == begin);
    n++;
    for (int d = 0; d < BWT_DTYPE_COUNT; d++) {
      bwt_dtype dtype = (bwt_dtype)d;
      int mine = strcmp(dt->valuestring, dtype_names[d]) == 0;
      const void *data = (const void *)1;
      bwt_status s = bwt_safetensors_get(f, name, dtype, 0, NULL, &data);
      FUZZ_CHECK((s == BWT_STATUS_OK) == mine); /* its own dtype only, wherever it lies */
      if (s != BWT_STATUS_OK) {
        FUZZ_CHECK(data == NULL);
        continue;
      }
      FUZZ_CHECK(data != NULL && (uintptr_t)data % bwt_dtype_size(dtype) == 0);
      sum += read_bytes(data, end - begin);
      if (dtype == BWT_DTYPE_F64 && end > begin) { /* a value as the loaders read it */
        double x;
        memcpy(&x, data, sizeof x);
        sum += isfinite(x);
      }
      const void *again = NULL; /* by its full shape: the same bytes */
      FUZZ_CHECK(bwt_safetensors_get(f, name, dtype, ndim, shape, &again) == BWT_STATUS_OK && again == data);
      if (ndim < BWT_ST_MAX_DIMS) { /* one more dimension, even of size 1, is another shape */
        shape[ndim] = 1;
        FUZZ_CHECK(bwt_safetensors_get(f, name, dtype, ndim + 1, shape, &again) != BWT_STATUS_OK && again == NULL);
      }
      if (is_float(dtype)) check_floats(f, name, dtype, data, info.n_elems);
      else {
        const float *x = (const float *)1;
        FUZZ_CHECK(bwt_safetensors_get_f32(f, name, 0, NULL, &x) != BWT_STATUS_OK && x == NULL);
      }
    }
  }
  FUZZ_CHECK(n == bwt_safetensors_count(f));
  FUZZ_CHECK(total == bwt_safetensors_data_bytes(f)); /* the tensors tile the data exactly */
  FUZZ_CHECK(bwt_safetensors_unused(f) == NULL);
  const char *absent = "\x01 no such tensor";
  const void *none = (const void *)1;
  if (!cJSON_GetObjectItemCaseSensitive(h, absent))
    FUZZ_CHECK(bwt_safetensors_get(f, absent, BWT_DTYPE_F32, 0, NULL, &none) != BWT_STATUS_OK && none == NULL);
  cJSON_Delete(h);
  volatile unsigned sink = sum;
  (void)sink;
}

/* The input as the scratch file; 0 if it cannot be written (then only memory is read). */
static int write_scratch(const uint8_t *data, size_t size) {
  int fd = open(scratch, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return 0;
  int ok = size == 0 || write(fd, data, size) == (ssize_t)size;
  return close(fd) == 0 && ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  bwt_st_file *f = NULL, *g = NULL;
  bwt_status s = bwt_safetensors_open_memory(&f, data, size, "fuzz.safetensors");
  FUZZ_CHECK((s == BWT_STATUS_OK) == (f != NULL));
  if (write_scratch(data, size)) {
    bwt_status t = bwt_safetensors_open_lazy(&g, scratch);
    FUZZ_CHECK((t == BWT_STATUS_OK) == (g != NULL));
    if (t == BWT_STATUS_OK) t = bwt_safetensors_verify(g);
    FUZZ_CHECK((t == BWT_STATUS_OK) == (s == BWT_STATUS_OK)); /* mapped and in memory agree */
    if (g) walk(g, data, size);
    bwt_safetensors_close(g);
    unlink(scratch);
  }
  if (f) walk(f, data, size);
  bwt_safetensors_close(f);
  return 0;
}
