/* File helpers with checked errors: whole-file read, atomic whole-file write, appends, mkdir -p and
 * the run-directory lock. Messages name the file and the system's reason (errno). */
#ifndef BWT_FILEIO_H
#define BWT_FILEIO_H

#include <stddef.h>

#include "bwt/status.h"

/* Writes data to a temporary file of its own beside path ("<path>.tmp.XXXXXX"), fsyncs it, renames it
 * over path and fsyncs the directory: readers see the old file or the new one, never a partial one,
 * and on any failure the old file is kept and the temporary removed. */
bwt_status bwt_write_file_atomic(const char *path, const void *data, size_t n);
/* Reads a whole regular file into a NUL-terminated malloc'd buffer (*n excludes the NUL). Anything
 * else (a FIFO, a device, a directory) is refused at once with a message. */
bwt_status bwt_read_file(const char *path, char **data, size_t *n);
/* Opens a regular file for reading (as bwt_read_file refuses anything else, with the same
 * messages); *size is its size when opened. The caller closes *fd. */
bwt_status bwt_open_read(const char *path, int *fd, size_t *size);
/* Opens (creating) a regular file for appending; refuses anything else. */
bwt_status bwt_open_append(const char *path, int *fd);
/* Writes all n bytes to fd (path names it in messages). */
bwt_status bwt_write_all(int fd, const void *data, size_t n, const char *path);
/* fsync with a message. */
bwt_status bwt_fsync(int fd, const char *path);
/* Creates a directory and its parents (like mkdir -p); fails naming the path if it cannot. */
bwt_status bwt_mkdir_p(const char *path);
/* 1 if path exists. */
int bwt_path_exists(const char *path);

/* Takes the exclusive lock of a directory (the file DIR/lock, flock'ed, holding the holder's pid)
 * or fails at once with "DIR is in use by pid N". The holder may remove the temporary files a
 * killed writer left ("*.tmp.XXXXXX"), which this does. *fd is the lock until bwt_dir_unlock. */
bwt_status bwt_dir_lock(const char *dir, int *fd);
void bwt_dir_unlock(int fd);
/* A claim on a unit of work that several processes share (a cell of a grid): the exclusive lock of
 * the file at path (flock, created if need be). *fd is the claim, or -1 when another process holds
 * it. The claim ends with bwt_dir_unlock(*fd) or with its process, so a killed claimant's work is
 * free for the next. */
bwt_status bwt_claim(const char *path, int *fd);

#endif
