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
 * Reading is strict, as strict as the format: a regular file only; header length within the file;
 * the header one JSON object followed by nothing but space padding; no duplicate names; known dtypes;
 * shapes matching byte ranges; the ranges tiling the byte buffer exactly (no gap, overlap or
 * trailing byte); and the checksum, when the file has one (files from other tools load without). */
#ifndef BWT_SAFETENSORS_H
#define BWT_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "bwt/status.h"

#define BWT_ST_MAX_DIMS 8

typedef enum { BWT_DTYPE_F32, BWT_DTYPE_F64, BWT_DTYPE_I32, BWT_DTYPE_I64 } bwt_dtype;

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

/* Reads and validates the whole file into memory. */
bwt_status bwt_safetensors_open(bwt_st_file **out, const char *path);
/* The same from len bytes in memory (copied); name stands for the file in messages. */
bwt_status bwt_safetensors_open_memory(bwt_st_file **out, const void *bytes, size_t len, const char *name);
void bwt_safetensors_close(bwt_st_file *f);
/* The metadata value for key, or NULL if absent. */
const char *bwt_safetensors_meta(const bwt_st_file *f, const char *key);
int bwt_safetensors_count(const bwt_st_file *f);
/* Bytes of tensor data (after the header); the tensors tile exactly this many. */
size_t bwt_safetensors_data_bytes(const bwt_st_file *f);
/* The name of a tensor no bwt_safetensors_get has fetched yet, or NULL if every one was. */
const char *bwt_safetensors_unused(const bwt_st_file *f);
/* Looks up a tensor by name; fails (naming the file, tensor and what differs) if it is missing or its
 * dtype or shape differ from those given. On success *data points into the file's buffer (valid
 * until close; aligned for its dtype). */
bwt_status bwt_safetensors_get(const bwt_st_file *f, const char *name, bwt_dtype dtype, int ndim,
                               const int64_t *shape, const void **data);
size_t bwt_dtype_size(bwt_dtype dtype);
const char *bwt_dtype_name(bwt_dtype dtype); /* "F32", "F64", "I32", "I64" */

#endif
