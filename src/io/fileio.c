#include "bwt/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void fsync_parent_dir(const char *path) {
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash == dir) slash[1] = '\0';
  else if (slash) *slash = '\0';
  else snprintf(dir, sizeof dir, ".");
  int fd = open(dir, O_RDONLY);
  if (fd >= 0) {
    fsync(fd); /* best effort: some file systems refuse fsync on directories */
    close(fd);
  }
}

bwt_status bwt_write_file_atomic(const char *path, const void *data, size_t n) {
  char tmp[4096];
  if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
    return bwt_fail(BWT_STATUS_ARG, "path too long: %s", path);
  FILE *f = fopen(tmp, "wb");
  if (!f) return bwt_fail(BWT_STATUS_IO, "cannot write %s: %s", tmp, strerror(errno));
  int ok = fwrite(data, 1, n, f) == n && fflush(f) == 0 && fsync(fileno(f)) == 0;
  int err = errno;
  ok = (fclose(f) == 0) && ok;
  if (!ok || rename(tmp, path) != 0) {
    if (ok) err = errno;
    remove(tmp);
    return bwt_fail(BWT_STATUS_IO, "cannot write %s: %s", path, strerror(err));
  }
  fsync_parent_dir(path);
  return BWT_STATUS_OK;
}

bwt_status bwt_read_file(const char *path, char **data, size_t *n) {
  *data = NULL;
  *n = 0;
  FILE *f = fopen(path, "rb");
  if (!f) return bwt_fail(BWT_STATUS_IO, "cannot read %s: %s", path, strerror(errno));
  size_t cap = 4096, len = 0;
  char *buf = malloc(cap);
  while (buf) {
    len += fread(buf + len, 1, cap - 1 - len, f);
    if (len < cap - 1) break;
    char *grown = realloc(buf, cap * 2);
    if (!grown) free(buf);
    buf = grown;
    cap *= 2;
  }
  int err = ferror(f);
  fclose(f);
  if (!buf) return bwt_fail(BWT_STATUS_NOMEM, "out of memory reading %s", path);
  if (err) {
    free(buf);
    return bwt_fail(BWT_STATUS_IO, "error reading %s", path);
  }
  buf[len] = '\0';
  *data = buf;
  *n = len;
  return BWT_STATUS_OK;
}

bwt_status bwt_mkdir_p(const char *path) {
  char buf[4096];
  if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
    return bwt_fail(BWT_STATUS_ARG, "path too long: %s", path);
  for (char *p = buf + 1; ; p++) {
    if (*p == '/' || *p == '\0') {
      char c = *p;
      *p = '\0';
      if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return bwt_fail(BWT_STATUS_IO, "cannot create directory %s: %s", buf, strerror(errno));
      *p = c;
      if (c == '\0') break;
    }
  }
  struct stat st;
  if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
    return bwt_fail(BWT_STATUS_IO, "%s exists and is not a directory", path);
  if (access(path, W_OK) != 0)
    return bwt_fail(BWT_STATUS_IO, "cannot write into directory %s: %s", path, strerror(errno));
  return BWT_STATUS_OK;
}

int bwt_path_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}
