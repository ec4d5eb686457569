/* safetensors reader and writer (format: 8-byte little-endian header length, JSON header, raw
 * little-endian tensor bytes). Every offset and shape read from a file is checked before use. */
#include "bwt/safetensors.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "bwt/fileio.h"

#define HEADER_MAX (100u << 20)

static const char *const dtype_names[] = {"F32", "F64", "I32", "I64"};
static const size_t dtype_sizes[] = {4, 8, 4, 8};

size_t bwt_dtype_size(bwt_dtype d) { return dtype_sizes[d]; }
const char *bwt_dtype_name(bwt_dtype d) { return dtype_names[d]; }

static size_t element_count(int ndim, const int64_t *shape) {
  size_t n = 1;
  for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
  return n;
}

bwt_status bwt_safetensors_write(const char *path, const bwt_st_tensor *tensors, int n_tensors,
                                 const char *const *meta_keys, const char *const *meta_values,
                                 int n_meta) {
  cJSON *h = cJSON_CreateObject();
  if (n_meta > 0) {
    cJSON *meta = cJSON_AddObjectToObject(h, "__metadata__");
    for (int i = 0; i < n_meta; i++) cJSON_AddStringToObject(meta, meta_keys[i], meta_values[i]);
  }
  size_t off = 0;
  for (int i = 0; i < n_tensors; i++) {
    const bwt_st_tensor *t = &tensors[i];
    size_t size = bwt_dtype_size(t->dtype), bytes = element_count(t->ndim, t->shape) * size;
    off = (off + size - 1) & ~(size - 1); /* aligned for its dtype; no gap between same-size tensors,
                                             which readers such as huggingface's require */
    cJSON *e = cJSON_AddObjectToObject(h, t->name);
    cJSON_AddStringToObject(e, "dtype", bwt_dtype_name(t->dtype));
    cJSON *shape = cJSON_AddArrayToObject(e, "shape");
    for (int d = 0; d < t->ndim; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
    cJSON *offs = cJSON_AddArrayToObject(e, "data_offsets");
    cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
    cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(off + bytes)));
    off += bytes;
  }
  char *json = cJSON_PrintUnformatted(h);
  cJSON_Delete(h);
  if (!json) return bwt_fail(BWT_STATUS_NOMEM, "out of memory writing %s", path);
  size_t jlen = strlen(json), hlen = (jlen + 7) & ~(size_t)7, total = 8 + hlen + off;
  unsigned char *buf = calloc(total, 1);
  if (!buf) {
    free(json);
    return bwt_fail(BWT_STATUS_NOMEM, "out of memory writing %s", path);
  }
  for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
  memcpy(buf + 8, json, jlen);
  memset(buf + 8 + jlen, ' ', hlen - jlen); /* header padded with spaces, as the format allows */
  free(json);
  off = 0;
  for (int i = 0; i < n_tensors; i++) {
    const bwt_st_tensor *t = &tensors[i];
    size_t size = bwt_dtype_size(t->dtype), bytes = element_count(t->ndim, t->shape) * size;
    off = (off + size - 1) & ~(size - 1);
    if (bytes) memcpy(buf + 8 + hlen + off, t->data, bytes);
    off += bytes;
  }
  bwt_status s = bwt_write_file_atomic(path, buf, total);
  free(buf);
  return s;
}

typedef struct {
  const char *name;
  bwt_dtype dtype;
  int ndim;
  int64_t shape[BWT_ST_MAX_DIMS];
  size_t begin, end;
} entry;

struct bwt_st_file {
  char *path;
  cJSON *header;
  unsigned char *data; /* 8-byte aligned copy of the byte buffer */
  size_t data_len;
  entry *entries;
  int n;
};

void bwt_safetensors_close(bwt_st_file *f) {
  if (!f) return;
  free(f->path);
  cJSON_Delete(f->header);
  free(f->data);
  free(f->entries);
  free(f);
}

/* A JSON number that is a non-negative integer below 2^53. */
static int as_index(const cJSON *v, size_t *out) {
  if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble >= 9007199254740992.0 ||
      v->valuedouble != floor(v->valuedouble))
    return 0;
  *out = (size_t)v->valuedouble;
  return 1;
}

static int cmp_begin(const void *a, const void *b) {
  const entry *x = a, *y = b;
  return x->begin < y->begin ? -1 : x->begin > y->begin;
}

static bwt_status parse_entry(bwt_st_file *f, const cJSON *item, entry *e) {
  const char *p = f->path, *name = item->string;
  const cJSON *dt = cJSON_GetObjectItemCaseSensitive(item, "dtype");
  const cJSON *sh = cJSON_GetObjectItemCaseSensitive(item, "shape");
  const cJSON *of = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
  if (!cJSON_IsObject(item) || !cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(of))
    return bwt_fail(BWT_STATUS_FORMAT, "%s: tensor '%s' needs dtype (string), shape and data_offsets (arrays)", p, name);
  e->name = name;
  int known = 0;
  for (int d = 0; d < 4; d++)
    if (strcmp(dt->valuestring, dtype_names[d]) == 0) e->dtype = (bwt_dtype)d, known = 1;
  if (!known) return bwt_fail(BWT_STATUS_FORMAT, "%s: tensor '%s' has unsupported dtype '%s' (bwt reads F32, F64, I32, I64)", p, name, dt->valuestring);
  e->ndim = cJSON_GetArraySize(sh);
  if (e->ndim > BWT_ST_MAX_DIMS) return bwt_fail(BWT_STATUS_FORMAT, "%s: tensor '%s' has %d dimensions (at most %d)", p, name, e->ndim, BWT_ST_MAX_DIMS);
  double elems = 1;
  for (int d = 0; d < e->ndim; d++) {
    size_t v;
    if (!as_index(cJSON_GetArrayItem(sh, d), &v)) return bwt_fail(BWT_STATUS_FORMAT, "%s: tensor '%s' has a shape entry that is not a non-negative integer", p, name);
    e->shape[d] = (int64_t)v;
    elems *= (double)v;
  }
  if (cJSON_GetArraySize(of) != 2 || !as_index(cJSON_GetArrayItem(of, 0), &e->begin) ||
      !as_index(cJSON_GetArrayItem(of, 1), &e->end) || e->begin > e->end)
    return bwt_fail(BWT_STATUS_FORMAT, "%s: tensor '%s' needs data_offsets [begin, end] with 0 <= begin <= end", p, name);
  if (e->end > f->data_len)
    return bwt_fail(BWT_STATUS_FORMAT, "%s: truncated: tensor '%s' needs bytes up to %zu but the data holds %zu", p, name, e->end, f->data_len);
  if (elems * (double)bwt_dtype_size(e->dtype) != (double)(e->end - e->begin))
    return bwt_fail(BWT_STATUS_FORMAT, "%s: tensor '%s' has %zu bytes but its shape and dtype need %.0f", p, name, e->end - e->begin, elems * (double)bwt_dtype_size(e->dtype));
  return BWT_STATUS_OK;
}

static bwt_status parse(bwt_st_file *f, const unsigned char *raw, size_t len) {
  const char *p = f->path;
  if (len < 8) return bwt_fail(BWT_STATUS_FORMAT, "%s: truncated: %zu bytes, need at least 8", p, len);
  uint64_t hlen = 0;
  for (int i = 0; i < 8; i++) hlen |= (uint64_t)raw[i] << (8 * i);
  if (hlen > HEADER_MAX) return bwt_fail(BWT_STATUS_FORMAT, "%s: header length %llu is implausible (not a safetensors file?)", p, (unsigned long long)hlen);
  if (hlen > len - 8) return bwt_fail(BWT_STATUS_FORMAT, "%s: truncated: header of %llu bytes but the file has %zu after the length", p, (unsigned long long)hlen, len - 8);
  char *text = malloc(hlen + 1);
  if (!text) return bwt_fail(BWT_STATUS_NOMEM, "out of memory reading %s", p);
  memcpy(text, raw + 8, hlen);
  text[hlen] = '\0';
  f->header = cJSON_Parse(text);
  free(text);
  if (!cJSON_IsObject(f->header)) return bwt_fail(BWT_STATUS_FORMAT, "%s: header is not a JSON object (not a safetensors file?)", p);
  f->data_len = len - 8 - hlen;
  f->data = malloc(f->data_len ? f->data_len : 1); /* malloc: aligned for every dtype */
  if (!f->data) return bwt_fail(BWT_STATUS_NOMEM, "out of memory reading %s", p);
  memcpy(f->data, raw + 8 + hlen, f->data_len);
  const cJSON *meta = cJSON_GetObjectItemCaseSensitive(f->header, "__metadata__");
  if (meta) {
    if (!cJSON_IsObject(meta)) return bwt_fail(BWT_STATUS_FORMAT, "%s: __metadata__ is not an object", p);
    for (const cJSON *m = meta->child; m; m = m->next)
      if (!cJSON_IsString(m)) return bwt_fail(BWT_STATUS_FORMAT, "%s: __metadata__ value '%s' is not a string", p, m->string);
  }
  int n = cJSON_GetArraySize(f->header) - (meta ? 1 : 0);
  f->entries = calloc(n ? n : 1, sizeof *f->entries);
  if (!f->entries) return bwt_fail(BWT_STATUS_NOMEM, "out of memory reading %s", p);
  for (const cJSON *it = f->header->child; it; it = it->next) {
    if (it == meta) continue;
    BWT_TRY(parse_entry(f, it, &f->entries[f->n]));
    f->n++;
  }
  /* Tensors may not overlap (checked on a copy sorted by offset; lookups use header order). */
  entry *sorted = malloc(sizeof *sorted * (f->n ? f->n : 1));
  if (!sorted) return bwt_fail(BWT_STATUS_NOMEM, "out of memory reading %s", p);
  memcpy(sorted, f->entries, sizeof *sorted * f->n);
  qsort(sorted, f->n, sizeof *sorted, cmp_begin);
  bwt_status s = BWT_STATUS_OK;
  for (int i = 1; i < f->n && s == BWT_STATUS_OK; i++)
    if (sorted[i].begin < sorted[i - 1].end)
      s = bwt_fail(BWT_STATUS_FORMAT, "%s: tensors '%s' and '%s' overlap", p, sorted[i - 1].name, sorted[i].name);
  free(sorted);
  return s;
}

bwt_status bwt_safetensors_open(bwt_st_file **out, const char *path) {
  *out = NULL;
  char *raw = NULL;
  size_t len = 0;
  BWT_TRY(bwt_read_file(path, &raw, &len));
  bwt_st_file *f = calloc(1, sizeof *f);
  if (f) f->path = malloc(strlen(path) + 1);
  if (!f || !f->path) {
    free(raw);
    bwt_safetensors_close(f);
    return bwt_fail(BWT_STATUS_NOMEM, "out of memory reading %s", path);
  }
  strcpy(f->path, path);
  bwt_status s = parse(f, (const unsigned char *)raw, len);
  free(raw);
  if (s != BWT_STATUS_OK) {
    bwt_safetensors_close(f);
    return s;
  }
  *out = f;
  return BWT_STATUS_OK;
}

const char *bwt_safetensors_meta(const bwt_st_file *f, const char *key) {
  const cJSON *meta = cJSON_GetObjectItemCaseSensitive(f->header, "__metadata__");
  const cJSON *v = meta ? cJSON_GetObjectItemCaseSensitive(meta, key) : NULL;
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

int bwt_safetensors_count(const bwt_st_file *f) { return f->n; }

static void shape_text(char *buf, size_t n, int ndim, const int64_t *shape) {
  size_t len = snprintf(buf, n, "[");
  for (int d = 0; d < ndim && len < n; d++)
    len += snprintf(buf + len, n - len, "%s%lld", d ? "," : "", (long long)shape[d]);
  if (len < n) snprintf(buf + len, n - len, "]");
}

/* shape NULL skips the shape (and ndim) check. */
bwt_status bwt_safetensors_get(const bwt_st_file *f, const char *name, bwt_dtype dtype, int ndim,
                               const int64_t *shape, const void **data) {
  *data = NULL;
  for (int i = 0; i < f->n; i++) {
    const entry *e = &f->entries[i];
    if (strcmp(e->name, name) != 0) continue;
    if (e->dtype != dtype)
      return bwt_fail(BWT_STATUS_FORMAT, "%s: tensor '%s' is %s, expected %s", f->path, name, bwt_dtype_name(e->dtype), bwt_dtype_name(dtype));
    if (shape && (e->ndim != ndim || memcmp(e->shape, shape, sizeof(int64_t) * ndim) != 0)) {
      char want[128], have[128];
      shape_text(want, sizeof want, ndim, shape);
      shape_text(have, sizeof have, e->ndim, e->shape);
      return bwt_fail(BWT_STATUS_FORMAT, "%s: tensor '%s' has shape %s, expected %s", f->path, name, have, want);
    }
    if (e->begin % bwt_dtype_size(dtype))
      return bwt_fail(BWT_STATUS_FORMAT, "%s: tensor '%s' starts at byte %zu, not aligned for %s", f->path, name, e->begin, bwt_dtype_name(dtype));
    *data = f->data + e->begin;
    return BWT_STATUS_OK;
  }
  return bwt_fail(BWT_STATUS_FORMAT, "%s has no tensor '%s'", f->path, name);
}
