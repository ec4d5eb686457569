/* safetensors reader and writer (format: 8-byte little-endian header length, JSON header, raw
 * little-endian tensor bytes). Every offset and shape read from a file is checked before use. */
#include "bwt/safetensors.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <zlib.h>

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

/* The checksum of a file's contents: CRC-32 (zlib) of the tensor bytes, then of every metadata
 * key and value but the checksum's own, each followed by a NUL, in header order. */
static uint32_t checksum_data(uint32_t crc, const unsigned char *data, size_t n) {
  for (size_t done = 0; done < n;) { /* zlib takes 32-bit lengths */
    uInt len = n - done > (1u << 30) ? (1u << 30) : (uInt)(n - done);
    crc = (uint32_t)crc32(crc, data + done, len);
    done += len;
  }
  return crc;
}

static uint32_t checksum_more(uint32_t crc, const char *text) {
  return (uint32_t)crc32(crc, (const Bytef *)text, (uInt)strlen(text) + 1);
}

static size_t tensor_bytes(const bwt_st_tensor *t) { return element_count(t->ndim, t->shape) * bwt_dtype_size(t->dtype); }

/* The order of the tensors' bytes in the file: by descending dtype size, then as given, so that every
 * tensor is aligned for its dtype without any gap (readers such as Hugging Face's require the
 * tensors to tile the buffer exactly). */
static int file_order_cmp(const void *a, const void *b) {
  const bwt_st_tensor *const *x = a, *const *y = b;
  size_t sx = bwt_dtype_size((*x)->dtype), sy = bwt_dtype_size((*y)->dtype);
  if (sx != sy) return sx > sy ? -1 : 1;
  return *x < *y ? -1 : *x > *y;
}

bwt_status bwt_safetensors_write(const char *path, const bwt_st_tensor *tensors, int n_tensors,
                                 const char *const *meta_keys, const char *const *meta_values,
                                 int n_meta) {
  bwt_alloc_hooks_install();
  const bwt_st_tensor **order = bwt_calloc(n_tensors ? (size_t)n_tensors : 1, sizeof *order, path);
  size_t *begin = bwt_calloc(n_tensors ? (size_t)n_tensors : 1, sizeof *begin, path);
  if (!order || !begin) return free(order), free(begin), BWT_STATUS_NOMEM;
  for (int i = 0; i < n_tensors; i++) order[i] = &tensors[i];
  qsort(order, (size_t)n_tensors, sizeof *order, file_order_cmp);
  size_t off = 0;
  for (int i = 0; i < n_tensors; i++) {
    begin[order[i] - tensors] = off;
    off += tensor_bytes(order[i]);
  }
  size_t data_len = off;
  uint32_t crc = (uint32_t)crc32(0L, Z_NULL, 0);
  for (int i = 0; i < n_tensors; i++)
    crc = checksum_data(crc, order[i]->data, tensor_bytes(order[i]));
  /* ok: every cJSON allocation succeeded (a header missing a field must never be written). */
  cJSON *h = cJSON_CreateObject();
  cJSON *meta = cJSON_AddObjectToObject(h, "__metadata__");
  int ok = meta != NULL;
  for (int i = 0; i < n_meta; i++) {
    ok = ok && cJSON_AddStringToObject(meta, meta_keys[i], meta_values[i]);
    crc = checksum_more(checksum_more(crc, meta_keys[i]), meta_values[i]);
  }
  char hex[16];
  snprintf(hex, sizeof hex, "%08x", (unsigned)crc);
  ok = ok && cJSON_AddStringToObject(meta, BWT_ST_CHECKSUM_KEY, hex);
  for (int i = 0; ok && i < n_tensors; i++) {
    const bwt_st_tensor *t = &tensors[i];
    size_t bytes = tensor_bytes(t);
    cJSON *e = cJSON_AddObjectToObject(h, t->name);
    ok = e && cJSON_AddStringToObject(e, "dtype", bwt_dtype_name(t->dtype));
    cJSON *shape = ok ? cJSON_AddArrayToObject(e, "shape") : NULL;
    ok = shape != NULL;
    for (int d = 0; ok && d < t->ndim; d++) ok = cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
    cJSON *offs = ok ? cJSON_AddArrayToObject(e, "data_offsets") : NULL;
    ok = offs && cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)begin[i])) &&
         cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(begin[i] + bytes)));
  }
  char *json = ok ? cJSON_PrintUnformatted(h) : NULL;
  cJSON_Delete(h);
  bwt_status s = json ? BWT_STATUS_OK : bwt_fail(BWT_STATUS_NOMEM, "out of memory writing %s", path);
  unsigned char *buf = NULL;
  size_t total = 0;
  if (s == BWT_STATUS_OK) {
    size_t jlen = strlen(json), hlen = (jlen + 7) & ~(size_t)7;
    total = 8 + hlen + data_len;
    buf = bwt_malloc(total, path);
    if (!buf) s = BWT_STATUS_NOMEM;
    else {
      for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
      memcpy(buf + 8, json, jlen);
      memset(buf + 8 + jlen, ' ', hlen - jlen); /* header padded with spaces, as the format allows */
      for (int i = 0; i < n_tensors; i++)
        if (tensor_bytes(&tensors[i])) memcpy(buf + 8 + hlen + begin[i], tensors[i].data, tensor_bytes(&tensors[i]));
    }
  }
  free(json);
  free(order);
  free(begin);
  if (s == BWT_STATUS_OK) s = bwt_write_file_atomic(path, buf, total);
  free(buf);
  return s;
}

typedef struct {
  const char *name;
  bwt_dtype dtype;
  int ndim;
  int64_t shape[BWT_ST_MAX_DIMS];
  size_t begin, end;
  int used; /* fetched by bwt_safetensors_get */
} entry;

struct bwt_st_file {
  char *path;
  cJSON *header;
  unsigned char *buf;  /* the whole file; the tensor bytes are moved to buf + 8 once the header is parsed */
  unsigned char *data; /* the tensor bytes, 8-byte aligned */
  size_t data_len;
  entry *entries;
  int n;
};

void bwt_safetensors_close(bwt_st_file *f) {
  if (!f) return;
  free(f->path);
  cJSON_Delete(f->header);
  free(f->buf);
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
  const entry *x = *(const entry *const *)a, *y = *(const entry *const *)b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  return x->end < y->end ? -1 : x->end > y->end;
}

static bwt_status parse_entry(bwt_st_file *f, const cJSON *item, entry *e) {
  const char *p = f->path, *name = item->string;
  const cJSON *dt = cJSON_GetObjectItemCaseSensitive(item, "dtype");
  const cJSON *sh = cJSON_GetObjectItemCaseSensitive(item, "shape");
  const cJSON *of = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
  if (!cJSON_IsObject(item) || !cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(of))
    return bwt_fail(BWT_STATUS_FORMAT, "%s: tensor '%s' needs dtype (string), shape and data_offsets (arrays)", p, name);
  if (cJSON_GetArraySize(item) != 3)
    return bwt_fail(BWT_STATUS_FORMAT, "%s: tensor '%s' has entries besides dtype, shape and data_offsets", p, name);
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

/* The tensors must tile the byte buffer exactly, as the format requires: sorted by offset, each
 * starting where the previous ends, the first at 0 and the last at the buffer's end. A shifted
 * header length, a gap, an overlap or trailing bytes all fail here. */
static bwt_status check_tiling(const bwt_st_file *f) {
  const entry **sorted = bwt_calloc(f->n ? (size_t)f->n : 1, sizeof *sorted, f->path);
  if (!sorted) return BWT_STATUS_NOMEM;
  for (int i = 0; i < f->n; i++) sorted[i] = &f->entries[i];
  qsort(sorted, (size_t)f->n, sizeof *sorted, cmp_begin);
  size_t at = 0;
  bwt_status s = BWT_STATUS_OK;
  for (int i = 0; i < f->n && s == BWT_STATUS_OK; i++) {
    if (sorted[i]->begin < at)
      s = bwt_fail(BWT_STATUS_FORMAT, "%s: tensors '%s' and '%s' overlap", f->path, sorted[i - 1]->name, sorted[i]->name);
    else if (sorted[i]->begin > at)
      s = bwt_fail(BWT_STATUS_FORMAT, "%s: %zu bytes before tensor '%s' belong to no tensor (damaged file or wrong header length?)",
                   f->path, sorted[i]->begin - at, sorted[i]->name);
    at = sorted[i]->end;
  }
  if (s == BWT_STATUS_OK && at != f->data_len)
    s = bwt_fail(BWT_STATUS_FORMAT, "%s: %zu bytes after the last tensor belong to no tensor (damaged file or wrong header length?)",
                 f->path, f->data_len - at);
  free(sorted);
  return s;
}

static bwt_status check_checksum(const bwt_st_file *f, const cJSON *meta) {
  const cJSON *want = meta ? cJSON_GetObjectItemCaseSensitive(meta, BWT_ST_CHECKSUM_KEY) : NULL;
  if (!want) return BWT_STATUS_OK; /* written by another tool */
  uint32_t crc = checksum_data((uint32_t)crc32(0L, Z_NULL, 0), f->data, f->data_len);
  for (const cJSON *m = meta->child; m; m = m->next)
    if (m != want) crc = checksum_more(checksum_more(crc, m->string), m->valuestring);
  char hex[16];
  snprintf(hex, sizeof hex, "%08x", (unsigned)crc);
  if (strcmp(hex, want->valuestring) != 0)
    return bwt_fail(BWT_STATUS_FORMAT, "%s is damaged: its checksum is %s but its contents give %s (bit rot, or an incomplete copy)",
                    f->path, want->valuestring, hex);
  return BWT_STATUS_OK;
}

/* Parses f->buf (len bytes, owned by f). */
static bwt_status parse(bwt_st_file *f, size_t len) {
  const char *p = f->path;
  const unsigned char *raw = f->buf;
  if (len < 8) return bwt_fail(BWT_STATUS_FORMAT, "%s: truncated: %zu bytes, need at least 8", p, len);
  uint64_t hlen = 0;
  for (int i = 0; i < 8; i++) hlen |= (uint64_t)raw[i] << (8 * i);
  if (hlen > HEADER_MAX) return bwt_fail(BWT_STATUS_FORMAT, "%s: header length %llu is implausible (not a safetensors file?)", p, (unsigned long long)hlen);
  if (hlen > len - 8) return bwt_fail(BWT_STATUS_FORMAT, "%s: truncated: header of %llu bytes but the file has %zu after the length", p, (unsigned long long)hlen, len - 8);
  const char *text = (const char *)raw + 8, *end = NULL;
  if (hlen < 2 || text[0] != '{') return bwt_fail(BWT_STATUS_FORMAT, "%s: header is not a JSON object (not a safetensors file?)", p);
  long failures = bwt_alloc_failures();
  f->header = cJSON_ParseWithLengthOpts(text, (size_t)hlen, &end, 0);
  if (!f->header && bwt_alloc_failures() != failures) return bwt_fail(BWT_STATUS_NOMEM, "out of memory parsing the header of %s", p);
  if (!cJSON_IsObject(f->header)) return bwt_fail(BWT_STATUS_FORMAT, "%s: header is not a JSON object (not a safetensors file?)", p);
  for (; end < text + hlen; end++) /* only the format's padding may follow the object */
    if (*end != ' ') return bwt_fail(BWT_STATUS_FORMAT, "%s: the header has bytes after its JSON object (damaged file or wrong header length?)", p);
  /* The header text is parsed: move the tensor bytes down to buf + 8, which malloc aligns for every
   * dtype, whatever the header's length. */
  f->data_len = len - 8 - hlen;
  f->data = f->buf + 8;
  memmove(f->data, raw + 8 + hlen, f->data_len);
  const cJSON *meta = cJSON_GetObjectItemCaseSensitive(f->header, "__metadata__");
  if (meta) {
    if (!cJSON_IsObject(meta)) return bwt_fail(BWT_STATUS_FORMAT, "%s: __metadata__ is not an object", p);
    for (const cJSON *m = meta->child; m; m = m->next)
      if (!cJSON_IsString(m)) return bwt_fail(BWT_STATUS_FORMAT, "%s: __metadata__ value '%s' is not a string", p, m->string);
  }
  int n = cJSON_GetArraySize(f->header) - (meta ? 1 : 0);
  f->entries = bwt_calloc(n ? (size_t)n : 1, sizeof *f->entries, p);
  if (!f->entries) return BWT_STATUS_NOMEM;
  for (const cJSON *it = f->header->child; it; it = it->next) {
    if (it == meta) continue;
    if (strcmp(it->string, "__metadata__") == 0) return bwt_fail(BWT_STATUS_FORMAT, "%s: __metadata__ appears twice", p);
    for (int i = 0; i < f->n; i++) /* quadratic, but headers hold hundreds of tensors, not millions */
      if (strcmp(f->entries[i].name, it->string) == 0) return bwt_fail(BWT_STATUS_FORMAT, "%s: tensor '%s' appears twice", p, it->string);
    BWT_TRY(parse_entry(f, it, &f->entries[f->n]));
    f->n++;
  }
  BWT_TRY(check_tiling(f));
  return check_checksum(f, meta);
}

static bwt_status open_buffer(bwt_st_file **out, unsigned char *buf, size_t len, const char *name) {
  *out = NULL;
  bwt_alloc_hooks_install();
  bwt_st_file *f = bwt_calloc(1, sizeof *f, name);
  char *path = bwt_malloc(strlen(name) + 1, name);
  if (!f || !path) {
    free(buf), free(f), free(path);
    return BWT_STATUS_NOMEM;
  }
  strcpy(path, name);
  f->path = path;
  f->buf = buf;
  bwt_status s = parse(f, len);
  if (s != BWT_STATUS_OK) {
    bwt_safetensors_close(f);
    return s;
  }
  *out = f;
  return BWT_STATUS_OK;
}

bwt_status bwt_safetensors_open(bwt_st_file **out, const char *path) {
  *out = NULL;
  char *raw = NULL;
  size_t len = 0;
  BWT_TRY(bwt_read_file(path, &raw, &len));
  return open_buffer(out, (unsigned char *)raw, len, path);
}

bwt_status bwt_safetensors_open_memory(bwt_st_file **out, const void *bytes, size_t len, const char *name) {
  *out = NULL;
  unsigned char *buf = bwt_malloc(len ? len : 1, name);
  if (!buf) return BWT_STATUS_NOMEM;
  if (len) memcpy(buf, bytes, len);
  return open_buffer(out, buf, len, name);
}

const char *bwt_safetensors_meta(const bwt_st_file *f, const char *key) {
  const cJSON *meta = cJSON_GetObjectItemCaseSensitive(f->header, "__metadata__");
  const cJSON *v = meta ? cJSON_GetObjectItemCaseSensitive(meta, key) : NULL;
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

int bwt_safetensors_count(const bwt_st_file *f) { return f->n; }

size_t bwt_safetensors_data_bytes(const bwt_st_file *f) { return f->data_len; }

const char *bwt_safetensors_unused(const bwt_st_file *f) {
  for (int i = 0; i < f->n; i++)
    if (!f->entries[i].used) return f->entries[i].name;
  return NULL;
}

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
    ((entry *)e)->used = 1; /* f's own allocation: the flag is bookkeeping, not content */
    *data = f->data + e->begin;
    return BWT_STATUS_OK;
  }
  return bwt_fail(BWT_STATUS_FORMAT, "%s has no tensor '%s'", f->path, name);
}
