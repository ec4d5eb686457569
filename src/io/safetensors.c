/* safetensors reader and writer (format: 8-byte little-endian header length, JSON header, raw
 * little-endian tensor bytes). Every offset and shape read from a file is checked before use. Files
 * are mapped, not read: only the header is parsed at open, and a tensor's pages are touched when it
 * is fetched. (Sharded models: safetensors_model.c.) */
#define _DEFAULT_SOURCE /* madvise, MADV_DONTNEED */
#include "bwt/safetensors.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <zlib.h>

#include "bwt/fileio.h"

#define HEADER_MAX (100u << 20)

static const char *const dtype_names[BWT_DTYPE_COUNT] = {"F32", "F64", "I32", "I64", "F16", "BF16"};
static const size_t dtype_sizes[BWT_DTYPE_COUNT] = {4, 8, 4, 8, 2, 2};

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


/* ---- conversions ---- */

float bwt_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
  if (exp == 0) { /* zero and the subnormals, man × 2^-24: exact in float */
    float v = (float)man * 0x1p-24f;
    return sign ? -v : v;
  }
  if (exp == 31) bits = sign | 0x7f800000u | (man << 13); /* infinities, and NaNs with their payload */
  else bits = sign | ((exp + 112) << 23) | (man << 13);   /* rebias 15 → 127 */
  float v;
  memcpy(&v, &bits, sizeof v);
  return v;
}

float bwt_bf16_to_f32(uint16_t h) {
  uint32_t bits = (uint32_t)h << 16;
  float v;
  memcpy(&v, &bits, sizeof v);
  return v;
}

void bwt_half_to_f32(float *dst, const void *src, size_t n, bwt_dtype dtype) {
  const unsigned char *p = src;
  if (dtype == BWT_DTYPE_BF16)
    for (size_t i = 0; i < n; i++) dst[i] = bwt_bf16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
  else
    for (size_t i = 0; i < n; i++) dst[i] = bwt_f16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
}

/* ---- reading ---- */

typedef struct {
  const char *name;
  bwt_dtype dtype;
  int ndim;
  int64_t shape[BWT_ST_MAX_DIMS];
  size_t begin, end;
  int used;    /* fetched by bwt_safetensors_get, _get_f32 or _read_f32 */
  void *copy;  /* its bytes, aligned, where the file places them misaligned (made on first fetch) */
  float *f32;  /* an F16/BF16 tensor converted by bwt_safetensors_get_f32 */
} entry;

struct bwt_st_file {
  char *path;
  cJSON *header;
  const unsigned char *bytes; /* the whole file: the map, or owned */
  size_t len;
  void *map;                  /* bytes when the file is mapped (unmapped at close) */
  unsigned char *owned;       /* bytes when copied from memory (freed at close) */
  const unsigned char *data;  /* the tensor bytes: bytes + 8 + header length */
  size_t data_len;
  entry *entries;
  int n;
};

/* Memory is given back in pieces of this size while a checksum reads a mapped file. */
#define VERIFY_CHUNK ((size_t)8 << 20)

void bwt_safetensors_close(bwt_st_file *f) {
  if (!f) return;
  for (int i = 0; i < f->n; i++) free(f->entries[i].copy), free(f->entries[i].f32);
  if (f->map) munmap(f->map, f->len);
  free(f->owned);
  free(f->path);
  cJSON_Delete(f->header);
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
  for (int d = 0; d < BWT_DTYPE_COUNT; d++)
    if (strcmp(dt->valuestring, dtype_names[d]) == 0) e->dtype = (bwt_dtype)d, known = 1;
  if (!known)
    return bwt_fail(BWT_STATUS_FORMAT, "%s: tensor '%s' has unsupported dtype '%s' (bwt reads F32, F16, BF16, F64, I32, I64)",
                    p, name, dt->valuestring);
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

bwt_status bwt_safetensors_verify(const bwt_st_file *f) {
  const cJSON *meta = cJSON_GetObjectItemCaseSensitive(f->header, "__metadata__");
  const cJSON *want = meta ? cJSON_GetObjectItemCaseSensitive(meta, BWT_ST_CHECKSUM_KEY) : NULL;
  if (!want) return BWT_STATUS_OK; /* written by another tool */
  uint32_t crc = (uint32_t)crc32(0L, Z_NULL, 0);
  if (f->map) {
    /* In pieces, each dropped from this process's memory once summed (the page cache keeps it, and a
     * later fetch pages it in again), so that checking a large file does not hold all of it. */
    for (size_t at = (size_t)(f->data - f->bytes); at < f->len;) {
      size_t stop = (at / VERIFY_CHUNK + 1) * VERIFY_CHUNK;
      if (stop > f->len) stop = f->len;
      crc = checksum_data(crc, f->bytes + at, stop - at);
      size_t from = at / VERIFY_CHUNK * VERIFY_CHUNK; /* page-aligned: the map is */
      madvise((unsigned char *)f->map + from, stop - from, MADV_DONTNEED);
      at = stop;
    }
  } else {
    crc = checksum_data(crc, f->data, f->data_len);
  }
  for (const cJSON *m = meta->child; m; m = m->next)
    if (m != want) crc = checksum_more(checksum_more(crc, m->string), m->valuestring);
  char hex[16];
  snprintf(hex, sizeof hex, "%08x", (unsigned)crc);
  if (strcmp(hex, want->valuestring) != 0)
    return bwt_fail(BWT_STATUS_FORMAT, "%s is damaged: its checksum is %s but its contents give %s (bit rot, or an incomplete copy)",
                    f->path, want->valuestring, hex);
  return BWT_STATUS_OK;
}

/* Parses the header of f->bytes (f->len bytes); the tensor bytes are not touched. */
static bwt_status parse(bwt_st_file *f) {
  const char *p = f->path;
  const unsigned char *raw = f->bytes;
  size_t len = f->len;
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
  f->data_len = len - 8 - (size_t)hlen;
  f->data = raw + 8 + hlen;
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
  return check_tiling(f);
}

/* A file struct for name over bytes (len); owned, if not NULL, is freed with it (and on failure). */
static bwt_status file_new(bwt_st_file **out, const char *name, const unsigned char *bytes, size_t len,
                           void *map, unsigned char *owned) {
  static const unsigned char empty[8];
  *out = NULL;
  bwt_st_file *f = bwt_calloc(1, sizeof *f, name);
  char *path = bwt_malloc(strlen(name) + 1, name);
  if (!f || !path) {
    if (map) munmap(map, len);
    free(owned), free(f), free(path);
    return BWT_STATUS_NOMEM;
  }
  strcpy(path, name);
  f->path = path;
  f->bytes = bytes ? bytes : empty;
  f->len = len;
  f->map = map;
  f->owned = owned;
  *out = f;
  return BWT_STATUS_OK;
}

/* Parses f (and checks its checksum if verify); on failure closes it. */
static bwt_status finish_open(bwt_st_file **out, bwt_st_file *f, int verify) {
  bwt_status s = parse(f);
  if (s == BWT_STATUS_OK && verify) s = bwt_safetensors_verify(f);
  if (s != BWT_STATUS_OK) {
    bwt_safetensors_close(f);
    return s;
  }
  *out = f;
  return BWT_STATUS_OK;
}

static bwt_status open_mapped(bwt_st_file **out, const char *path, int verify) {
  *out = NULL;
  bwt_alloc_hooks_install();
  int fd;
  size_t len;
  BWT_TRY(bwt_open_read(path, &fd, &len));
  void *map = NULL;
  if (len > 0) { /* mmap refuses a length of 0; an empty file is refused by parse as truncated */
    map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
      int err = errno;
      close(fd);
      return bwt_fail(BWT_STATUS_IO, "cannot map %s: %s", path, strerror(err));
    }
  }
  close(fd); /* the map keeps the file */
  bwt_st_file *f;
  BWT_TRY(file_new(&f, path, map, len, map, NULL));
  return finish_open(out, f, verify);
}

bwt_status bwt_safetensors_open(bwt_st_file **out, const char *path) { return open_mapped(out, path, 1); }

bwt_status bwt_safetensors_open_lazy(bwt_st_file **out, const char *path) { return open_mapped(out, path, 0); }

bwt_status bwt_safetensors_open_memory(bwt_st_file **out, const void *bytes, size_t len, const char *name) {
  *out = NULL;
  bwt_alloc_hooks_install();
  unsigned char *buf = bwt_malloc(len ? len : 1, name);
  if (!buf) return BWT_STATUS_NOMEM;
  if (len) memcpy(buf, bytes, len);
  bwt_st_file *f;
  BWT_TRY(file_new(&f, name, buf, len, NULL, buf));
  return finish_open(out, f, 1);
}

const char *bwt_safetensors_path(const bwt_st_file *f) { return f->path; }

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

static bwt_st_info info_of(const entry *e) {
  bwt_st_info info = {e->name, e->dtype, e->ndim, {0}, element_count(e->ndim, e->shape), e->end - e->begin, e->begin};
  memcpy(info.shape, e->shape, sizeof e->shape);
  return info;
}

bwt_st_info bwt_safetensors_info_at(const bwt_st_file *f, int i) { return info_of(&f->entries[i]); }

/* The entry called name: f's own allocation, so fetches may keep their bookkeeping in it. */
static entry *find(const bwt_st_file *f, const char *name) {
  for (int i = 0; i < f->n; i++)
    if (strcmp(f->entries[i].name, name) == 0) return &f->entries[i];
  return NULL;
}

bwt_status bwt_safetensors_info(const bwt_st_file *f, const char *name, bwt_st_info *info) {
  const entry *e = find(f, name);
  if (!e) return bwt_fail(BWT_STATUS_FORMAT, "%s has no tensor '%s'", f->path, name);
  *info = info_of(e);
  return BWT_STATUS_OK;
}

static void shape_text(char *buf, size_t n, int ndim, const int64_t *shape) {
  size_t len = snprintf(buf, n, "[");
  for (int d = 0; d < ndim && len < n; d++)
    len += snprintf(buf + len, n - len, "%s%lld", d ? "," : "", (long long)shape[d]);
  if (len < n) snprintf(buf + len, n - len, "]");
}

/* shape NULL skips the shape (and ndim) check. */
static bwt_status check_shape(const bwt_st_file *f, const entry *e, int ndim, const int64_t *shape) {
  if (!shape || (e->ndim == ndim && memcmp(e->shape, shape, sizeof(int64_t) * ndim) == 0)) return BWT_STATUS_OK;
  char want[128], have[128];
  shape_text(want, sizeof want, ndim, shape);
  shape_text(have, sizeof have, e->ndim, e->shape);
  return bwt_fail(BWT_STATUS_FORMAT, "%s: tensor '%s' has shape %s, expected %s", f->path, e->name, have, want);
}

/* A tensor's bytes, aligned for its dtype: in the file where they are, else copied once. */
static bwt_status entry_bytes(const bwt_st_file *f, entry *e, const void **out) {
  const unsigned char *p = f->data + e->begin;
  if ((uintptr_t)p % bwt_dtype_size(e->dtype) == 0) {
    *out = p;
    return BWT_STATUS_OK;
  }
  if (!e->copy) {
    e->copy = bwt_malloc(e->end - e->begin, f->path);
    if (!e->copy) return BWT_STATUS_NOMEM;
    memcpy(e->copy, p, e->end - e->begin);
  }
  *out = e->copy;
  return BWT_STATUS_OK;
}

bwt_status bwt_safetensors_get(const bwt_st_file *f, const char *name, bwt_dtype dtype, int ndim,
                               const int64_t *shape, const void **data) {
  *data = NULL;
  entry *e = find(f, name);
  if (!e) return bwt_fail(BWT_STATUS_FORMAT, "%s has no tensor '%s'", f->path, name);
  if (e->dtype != dtype)
    return bwt_fail(BWT_STATUS_FORMAT, "%s: tensor '%s' is %s, expected %s", f->path, name, bwt_dtype_name(e->dtype), bwt_dtype_name(dtype));
  BWT_TRY(check_shape(f, e, ndim, shape));
  BWT_TRY(entry_bytes(f, e, data));
  e->used = 1;
  return BWT_STATUS_OK;
}

/* The float tensor called name, of this shape (NULL: any). */
static bwt_status find_float(const bwt_st_file *f, const char *name, int ndim, const int64_t *shape, entry **out) {
  entry *e = find(f, name);
  if (!e) return bwt_fail(BWT_STATUS_FORMAT, "%s has no tensor '%s'", f->path, name);
  if (e->dtype != BWT_DTYPE_F32 && e->dtype != BWT_DTYPE_F16 && e->dtype != BWT_DTYPE_BF16)
    return bwt_fail(BWT_STATUS_FORMAT, "%s: tensor '%s' is %s, expected a float tensor (F32, F16 or BF16)", f->path, name, bwt_dtype_name(e->dtype));
  BWT_TRY(check_shape(f, e, ndim, shape));
  *out = e;
  return BWT_STATUS_OK;
}

bwt_status bwt_safetensors_get_f32(const bwt_st_file *f, const char *name, int ndim, const int64_t *shape,
                                   const float **data) {
  *data = NULL;
  entry *e;
  BWT_TRY(find_float(f, name, ndim, shape, &e));
  if (e->dtype == BWT_DTYPE_F32) {
    const void *p;
    BWT_TRY(entry_bytes(f, e, &p));
    *data = p;
  } else {
    size_t n = element_count(e->ndim, e->shape);
    if (!e->f32) {
      e->f32 = bwt_malloc(n * sizeof(float), f->path);
      if (!e->f32) return BWT_STATUS_NOMEM;
      bwt_half_to_f32(e->f32, f->data + e->begin, n, e->dtype);
    }
    *data = e->f32;
  }
  e->used = 1;
  return BWT_STATUS_OK;
}

bwt_status bwt_safetensors_read_f32(const bwt_st_file *f, const char *name, int ndim, const int64_t *shape,
                                    float *dst, size_t n) {
  entry *e;
  BWT_TRY(find_float(f, name, ndim, shape, &e));
  size_t have = element_count(e->ndim, e->shape);
  if (have != n)
    return bwt_fail(BWT_STATUS_ARG, "%s: tensor '%s' has %zu elements but the buffer given for it holds %zu", f->path, name, have, n);
  if (e->dtype == BWT_DTYPE_F32) {
    if (n) memcpy(dst, f->data + e->begin, n * sizeof(float));
  } else {
    bwt_half_to_f32(dst, f->data + e->begin, n, e->dtype);
  }
  e->used = 1;
  return BWT_STATUS_OK;
}
