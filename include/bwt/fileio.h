/* Small file helpers with checked errors: whole-file read, atomic whole-file write, mkdir -p. */
#ifndef BWT_FILEIO_H
#define BWT_FILEIO_H

#include <stddef.h>

#include "bwt/status.h"

/* Writes data to "<path>.tmp", fsyncs it, renames it over path and fsyncs the directory: readers
 * see the old file or the new one, never a partial one. */
bwt_status bwt_write_file_atomic(const char *path, const void *data, size_t n);
/* Reads a whole file into a NUL-terminated malloc'd buffer (*n excludes the NUL). */
bwt_status bwt_read_file(const char *path, char **data, size_t *n);
/* Creates a directory and its parents (like mkdir -p); fails naming the path if it cannot. */
bwt_status bwt_mkdir_p(const char *path);
/* 1 if path exists. */
int bwt_path_exists(const char *path);

#endif
