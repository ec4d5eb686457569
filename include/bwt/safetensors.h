/* safetensors files: the checkpoint container (https://github.com/huggingface/safetensors format).
 *
 * Layout: 8-byte little-endian header length n, n bytes of JSON header, then the raw tensor bytes.
 * The header maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets
 * relative to the byte buffer after the header) and may hold "__metadata__", a string→string map.
 *
 * Writing is atomic: the file is written to "<path>.tmp", flushed, fsync'ed and renamed over path,
 * and the directory is fsync'ed, so a reader never sees a partly written file under path.
 * Reading validates everything (header length against file size, JSON, dtype names, shapes against
 * byte ranges, ranges inside the buffer and non-overlapping) and reports what is wrong. */
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

/* Reads and validates the whole file into memory. */
bwt_status bwt_safetensors_open(bwt_st_file **out, const char *path);
void bwt_safetensors_close(bwt_st_file *f);
/* The metadata value for key, or NULL if absent. */
const char *bwt_safetensors_meta(const bwt_st_file *f, const char *key);
int bwt_safetensors_count(const bwt_st_file *f);
/* Looks up a tensor by name; fails (naming the file, tensor and what differs) if it is missing or its
 * dtype or shape differ from those given. On success *data points into the file's buffer (valid
 * until close; aligned for its dtype). */
bwt_status bwt_safetensors_get(const bwt_st_file *f, const char *name, bwt_dtype dtype, int ndim,
                               const int64_t *shape, const void **data);
size_t bwt_dtype_size(bwt_dtype dtype);
const char *bwt_dtype_name(bwt_dtype dtype); /* "F32", "F64", "I32", "I64" */

#endif
