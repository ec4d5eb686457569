/* libFuzzer harness for the safetensors reader (src/io/safetensors.c), the first thing every
 * checkpoint, snapshot and Hugging Face file goes through. Any bytes must give either a clean
 * failure or a file whose every tensor can be fetched and read in full: no crash, leak or UB.
 *
 * The reader has no way to list tensor names, so the harness parses the header JSON itself (it is
 * valid once the open succeeds) and checks the reader's view against it: the tensor count, each
 * tensor fetched by exactly its own dtype (and by its shape), aligned, its bytes readable, and the
 * tensors' bytes adding up to the data buffer. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "bwt/safetensors.h"
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  bwt_alloc_hooks_install();
  return 0;
}

static const char *const dtype_names[] = {"F32", "F64", "I32", "I64"};

/* Reads every byte of a tensor, so that ASan sees a buffer that is shorter than the header says. */
static unsigned read_bytes(const void *data, size_t n) {
  const unsigned char *p = data;
  unsigned sum = 0;
  for (size_t i = 0; i < n; i++) sum = sum * 31u + p[i];
  return sum;
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
  int n = 0, misaligned = 0;
  size_t total = 0;
  unsigned sum = 0;
  for (const cJSON *it = h->child; it; it = it->next) {
    if (it == meta) continue;
    n++;
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
    for (int d = 0; d < 4; d++) {
      bwt_dtype dtype = (bwt_dtype)d;
      int mine = strcmp(dt->valuestring, dtype_names[d]) == 0;
      int aligned = begin % bwt_dtype_size(dtype) == 0;
      const void *data = (const void *)1;
      bwt_status s = bwt_safetensors_get(f, name, dtype, 0, NULL, &data);
      FUZZ_CHECK((s == BWT_STATUS_OK) == (mine && aligned)); /* its own dtype only, where aligned */
      if (s != BWT_STATUS_OK) {
        FUZZ_CHECK(data == NULL);
        misaligned += mine;
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
    }
  }
  FUZZ_CHECK(n == bwt_safetensors_count(f));
  FUZZ_CHECK(total == bwt_safetensors_data_bytes(f)); /* the tensors tile the data exactly */
  FUZZ_CHECK(misaligned || bwt_safetensors_unused(f) == NULL);
  const char *absent = "\x01 no such tensor";
  const void *none = (const void *)1;
  if (!cJSON_GetObjectItemCaseSensitive(h, absent))
    FUZZ_CHECK(bwt_safetensors_get(f, absent, BWT_DTYPE_F32, 0, NULL, &none) != BWT_STATUS_OK && none == NULL);
  cJSON_Delete(h);
  volatile unsigned sink = sum;
  (void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  bwt_st_file *f = NULL;
  bwt_status s = bwt_safetensors_open_memory(&f, data, size, "fuzz.safetensors");
  FUZZ_CHECK((s == BWT_STATUS_OK) == (f != NULL));
  if (s != BWT_STATUS_OK) return 0;
  walk(f, data, size);
  bwt_safetensors_close(f);
  return 0;
}
