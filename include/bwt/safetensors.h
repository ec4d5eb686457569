/* safetensors files: the checkpoint container (https://github.com/huggingface/safetensors format).
 *
 * Layout: 8-byte little-endian header length n, n bytes of JSON header, then the raw tensor bytes.
 * The header maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets
 * relative to the byte buffer after the header) and may hold "__metadata__", a string→string map.
 *
 * Writing is atomic (bwt_write_file_atomic): a reader never sees a partly written file under path.
 * The tensor bytes are laid out by descending dtype size, so each is aligned without gaps, and
 * __metadata__ gets BWT_ST_CHECKSUM_KEY: the CRC-32 of the tensor bytes followed by every other
 * metadata key and value (each NUL-terminated) in header order, as 8 lowercase hex digits.
 *
 * Reading maps the file (mmap, read-only, private) and parses only its header: tensor bytes are
 * paged in when a tensor is fetched, so opening a 7 GB file and reading one tensor costs about that
 * tensor in memory, not the file. The header is checked as strictly as the format allows: a regular
 * file only; header length within the file; the header one JSON object followed by nothing but space
 * padding; no duplicate names; known dtypes; shapes matching byte ranges; the ranges tiling the byte
 * buffer exactly (no gap, overlap or trailing byte). bwt_safetensors_open also checks the checksum,
 * when the file has one (files from other tools load without); that reads every byte, in pieces
 * that are dropped from memory again. bwt_safetensors_open_lazy leaves it to bwt_safetensors_verify.
 *
 * The file must not be truncated by someone else while it is open (as with every mapped file, the
 * bytes would vanish under the reader); bwt itself replaces files by rename, which is safe. A file
 * is not thread-safe: fetches record which tensors were used and may allocate copies.
 *
 * Sharded checkpoints (Hugging Face's model.safetensors.index.json) are read through
 * bwt_safetensors_model_*, at the end. */
#ifndef BWT_SAFETENSORS_H
#define BWT_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "bwt/status.h"

#define BWT_ST_MAX_DIMS 8

/* Element types. F16 is IEEE 754 binary16; BF16 is the top 16 bits of an F32. */
typedef enum {
  BWT_DTYPE_F32,
  BWT_DTYPE_F64,
  BWT_DTYPE_I32,
  BWT_DTYPE_I64,
  BWT_DTYPE_F16,
  BWT_DTYPE_BF16,
  BWT_DTYPE_COUNT
} bwt_dtype;

typedef struct {
  const char *name;
  bwt_dtype dtype;
  int ndim;
  int64_t shape[BWT_ST_MAX_DIMS];
  const void *data; /* element count = product of shape, bytes = that × dtype size */
} bwt_st_tensor;

/* Writes tensors and metadata (keys[i] → values[i], n_meta pairs) atomically to path. */
bwt_status bwt_safetensors_write(const char *path, const bwt_st_tensor *tensors, int n_tensors,
                                 const char *const *meta_keys, const char *const *meta_values,
                                 int n_meta);

typedef struct bwt_st_file bwt_st_file;

#define BWT_ST_CHECKSUM_KEY "bwt_crc32"

/* Maps the file, validates its header and, when it has one, its checksum (every byte is read once
 * for that; bwt's own checkpoints have one, other tools' files do not). */
bwt_status bwt_safetensors_open(bwt_st_file **out, const char *path);
/* The same without the checksum: only the header is read. */
bwt_status bwt_safetensors_open_lazy(bwt_st_file **out, const char *path);
/* The same from len bytes in memory (copied), checksum included; name stands for the file in messages. */
bwt_status bwt_safetensors_open_memory(bwt_st_file **out, const void *bytes, size_t len, const char *name);
/* Checks the checksum of an open file (OK without one; a format error naming the file if it differs). */
bwt_status bwt_safetensors_verify(const bwt_st_file *f);
void bwt_safetensors_close(bwt_st_file *f);
/* The path (or name) the file was opened under. */
const char *bwt_safetensors_path(const bwt_st_file *f);
/* The metadata value for key, or NULL if absent. */
const char *bwt_safetensors_meta(const bwt_st_file *f, const char *key);
int bwt_safetensors_count(const bwt_st_file *f);
/* Bytes of tensor data (after the header); the tensors tile exactly this many. */
size_t bwt_safetensors_data_bytes(const bwt_st_file *f);
/* The name of a tensor no fetch (bwt_safetensors_get, _get_f32, _read_f32) has used yet, or NULL if
 * every one was. */
const char *bwt_safetensors_unused(const bwt_st_file *f);

/* What the header says of one tensor (the name points into the file's header: valid until close). */
typedef struct {
  const char *name;
  bwt_dtype dtype;
  int ndim;
  int64_t shape[BWT_ST_MAX_DIMS];
  size_t n_elems; /* product of shape */
  size_t n_bytes; /* n_elems × dtype size */
  size_t offset;  /* of its first byte, from the start of the tensor data */
} bwt_st_info;

/* The i-th tensor in header order, 0 <= i < count (the metadata is not a tensor). */
bwt_st_info bwt_safetensors_info_at(const bwt_st_file *f, int i);
/* The tensor called name; fails (naming the file and tensor) if there is none. */
bwt_status bwt_safetensors_info(const bwt_st_file *f, const char *name, bwt_st_info *info);

/* Fetches a tensor by name, of exactly this dtype; fails (naming the file, tensor and what differs)
 * if it is missing or its dtype or shape (ndim, shape) differ from those given (shape NULL: any
 * shape). On success *data points to its bytes, aligned for its dtype and valid until close: into the
 * mapped file (no copy) when the file places it aligned, else a copy owned by the file. */
bwt_status bwt_safetensors_get(const bwt_st_file *f, const char *name, bwt_dtype dtype, int ndim,
                               const int64_t *shape, const void **data);
/* A float tensor (F32, F16 or BF16) as floats, valid until close: an F32 tensor without a copy
 * (as bwt_safetensors_get), F16 and BF16 converted exactly into a buffer owned by the file. Fails
 * for other dtypes, or a shape that differs (shape NULL: any). */
bwt_status bwt_safetensors_get_f32(const bwt_st_file *f, const char *name, int ndim, const int64_t *shape,
                                   const float **data);
/* The same into the caller's dst (n floats, which must be the tensor's element count): nothing is
 * kept by the file, so a large F16/BF16 model can be converted tensor by tensor into its own arena. */
bwt_status bwt_safetensors_read_f32(const bwt_st_file *f, const char *name, int ndim, const int64_t *shape,
                                    float *dst, size_t n);

size_t bwt_dtype_size(bwt_dtype dtype);
const char *bwt_dtype_name(bwt_dtype dtype); /* "F32", "F64", "I32", "I64", "F16", "BF16" */

/* Exact conversions to float: F16 with its subnormals, infinities and NaNs (payload kept); BF16 by
 * appending 16 zero bits. */
float bwt_f16_to_f32(uint16_t h);
float bwt_bf16_to_f32(uint16_t h);
/* dst(n) from n little-endian 2-byte values at src (any alignment), of dtype F16 or BF16. */
void bwt_half_to_f32(float *dst, const void *src, size_t n, bwt_dtype dtype);

/* A model's tensors, in one file or sharded over several (Hugging Face's layout: a JSON index
 * {"metadata": {...}, "weight_map": {tensor name: shard file name}} beside the shards). Opening reads
 * only the index; each shard is mapped, its header alone read, when a tensor in it is first asked
 * for (shards are opened lazily: their checksums, if any, are not checked). Not thread-safe. */
typedef struct bwt_st_model bwt_st_model;

/* path: a directory (holding model.safetensors.index.json, else model.safetensors), an index file
 * (a name ending in .json), or one safetensors file. Fails on a malformed index (not JSON, no
 * weight_map object, a shard name that is not a relative file name). */
bwt_status bwt_safetensors_model_open(bwt_st_model **out, const char *path);
void bwt_safetensors_model_close(bwt_st_model *m);
/* Tensors the model lists (the index's weight_map, or the one file's header), and the i-th name. */
int bwt_safetensors_model_count(const bwt_st_model *m);
const char *bwt_safetensors_model_name(const bwt_st_model *m, int i);
/* The shard file holding tensor name, opened if it was not yet. Fails naming the tensor and file if
 * the model lists no such tensor, the shard cannot be opened (missing, damaged), or the shard does
 * not hold the tensor its index lists in it. *file is the model's: valid until model_close. */
bwt_status bwt_safetensors_model_file(bwt_st_model *m, const char *name, const bwt_st_file **file);
/* bwt_safetensors_get_f32 / bwt_safetensors_read_f32 on the shard holding name. */
bwt_status bwt_safetensors_model_get_f32(bwt_st_model *m, const char *name, int ndim, const int64_t *shape,
                                         const float **data);
bwt_status bwt_safetensors_model_read_f32(bwt_st_model *m, const char *name, int ndim, const int64_t *shape,
                                          float *dst, size_t n);

#endif
