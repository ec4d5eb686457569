/* File helpers with checked errors (bwt/fileio.h). Every write, fsync and rename goes through
 * here, counted by the fault injector (src/core/fault.h) so tests can fail each one in turn. */
#include "bwt/fileio.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/fault.h"

/* Writes go out in pieces of this size, so that a kill can land inside a large file. */
#define WRITE_CHUNK (64 << 10)

bwt_status bwt_write_all(int fd, const void *data, size_t n, const char *path) {
  const char *p = data;
  while (n > 0) {
    size_t len = n < WRITE_CHUNK ? n : WRITE_CHUNK;
    ssize_t w = bwt_fault_hit(BWT_FAULT_WRITE) ? (errno = ENOSPC, -1) : write(fd, p, len);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return bwt_fail(BWT_STATUS_IO, "cannot write %s: %s", path, w < 0 ? strerror(errno) : "nothing written");
    p += w;
    n -= (size_t)w;
  }
  return BWT_STATUS_OK;
}

bwt_status bwt_fsync(int fd, const char *path) {
  if (bwt_fault_hit(BWT_FAULT_FSYNC) ? (errno = EIO, 1) : fsync(fd) != 0)
    return bwt_fail(BWT_STATUS_IO, "cannot flush %s to disk: %s", path, strerror(errno));
  return BWT_STATUS_OK;
}

static void fsync_parent_dir(const char *path) {
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash == dir) slash[1] = '\0';
  else if (slash) *slash = '\0';
  else snprintf(dir, sizeof dir, ".");
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    fsync(fd); /* best effort: some file systems refuse fsync on directories */
    close(fd);
  }
}

bwt_status bwt_write_file_atomic(const char *path, const void *data, size_t n) {
  char tmp[4096];
  if (!*path) return bwt_fail(BWT_STATUS_ARG, "empty file name");
  if (snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", path) >= (int)sizeof tmp)
    return bwt_fail(BWT_STATUS_ARG, "path too long: %s", path);
  /* A name of its own (mkstemp): two writers of one path never share a temporary file. */
  int fd = mkstemp(tmp);
  if (fd < 0) return bwt_fail(BWT_STATUS_IO, "cannot write %s: %s", path, strerror(errno));
  bwt_status s = fchmod(fd, 0644) == 0 ? BWT_STATUS_OK : bwt_fail(BWT_STATUS_IO, "cannot write %s: %s", tmp, strerror(errno));
  if (s == BWT_STATUS_OK) s = bwt_write_all(fd, data, n, path);
  if (s == BWT_STATUS_OK) s = bwt_fsync(fd, path);
  if (close(fd) != 0 && s == BWT_STATUS_OK) s = bwt_fail(BWT_STATUS_IO, "cannot write %s: %s", path, strerror(errno));
  if (s == BWT_STATUS_OK && (bwt_fault_hit(BWT_FAULT_RENAME) ? (errno = EIO, 1) : rename(tmp, path) != 0))
    s = bwt_fail(BWT_STATUS_IO, "cannot replace %s: %s", path, strerror(errno));
  if (s != BWT_STATUS_OK) {
    unlink(tmp);
    return s;
  }
  fsync_parent_dir(path);
  return BWT_STATUS_OK;
}

/* Opens path for reading, refusing anything but a regular file (a FIFO would block, a device could
 * be endless). O_NONBLOCK keeps the open itself from blocking on a FIFO. */
static bwt_status open_regular(const char *path, int flags, int *fd_out, struct stat *st) {
  int fd = open(path, flags | O_NONBLOCK | O_CLOEXEC, 0644);
  if (fd < 0) return bwt_fail(BWT_STATUS_IO, "cannot %s %s: %s", (flags & O_ACCMODE) == O_RDONLY ? "read" : "write", path, strerror(errno));
  if (fstat(fd, st) != 0) {
    int err = errno;
    close(fd);
    return bwt_fail(BWT_STATUS_IO, "cannot stat %s: %s", path, strerror(err));
  }
  if (!S_ISREG(st->st_mode)) {
    close(fd);
    return bwt_fail(BWT_STATUS_IO, "%s is not a regular file", path);
  }
  int fl = fcntl(fd, F_GETFL);
  if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
  *fd_out = fd;
  return BWT_STATUS_OK;
}

bwt_status bwt_read_file(const char *path, char **data, size_t *n) {
  *data = NULL;
  *n = 0;
  int fd;
  struct stat st;
  BWT_TRY(open_regular(path, O_RDONLY, &fd, &st));
  size_t size = (size_t)st.st_size, len = 0;
  char *buf = bwt_malloc(size + 1, path);
  if (!buf) {
    close(fd);
    return BWT_STATUS_NOMEM;
  }
  /* Exactly the size fstat gave: a file that grows while it is read is read as it was. */
  while (len < size) {
    ssize_t r = read(fd, buf + len, size - len);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      int err = errno;
      free(buf);
      close(fd);
      return bwt_fail(BWT_STATUS_IO, "cannot read %s: %s", path, r < 0 ? strerror(err) : "the file shrank while it was read");
    }
    len += (size_t)r;
  }
  close(fd);
  buf[len] = '\0';
  *data = buf;
  *n = len;
  return BWT_STATUS_OK;
}

bwt_status bwt_open_read(const char *path, int *fd, size_t *size) {
  struct stat st;
  *size = 0;
  BWT_TRY(open_regular(path, O_RDONLY, fd, &st));
  *size = (size_t)st.st_size;
  return BWT_STATUS_OK;
}

bwt_status bwt_open_append(const char *path, int *fd) {
  struct stat st;
  return open_regular(path, O_WRONLY | O_APPEND | O_CREAT, fd, &st);
}

bwt_status bwt_mkdir_p(const char *path) {
  char buf[4096];
  if (!*path) return bwt_fail(BWT_STATUS_ARG, "empty directory name");
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

/* Removes the temporary files a killed writer left in dir ("<name>.tmp.XXXXXX"); only called by the
 * holder of the directory's lock, so no live writer owns them. */
static void remove_stale_temporaries(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  char path[4096 + 256];
  for (struct dirent *e; (e = readdir(d));) {
    const char *t = strstr(e->d_name, ".tmp.");
    if (!t || strlen(t) != 11) continue;
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    unlink(path);
  }
  closedir(d);
}

/* The pid in a lock file: fixed width, so a holder writes it in one pwrite over the last holder's,
 * with no moment at which the file is empty. */
#define PID_FIELD 24

/* A lock's holder as a message wants it: the pid in the file once it names a live process (a new
 * holder may not have written its own yet: wait a little), else "?". */
static void lock_holder(int fd, char *pid, size_t cap) {
  for (int tries = 0; tries < 50; tries++) {
    char buf[PID_FIELD + 1] = "";
    ssize_t r = pread(fd, buf, PID_FIELD, 0);
    buf[r > 0 ? r : 0] = '\0';
    long v = strtol(buf, NULL, 10);
    if (v > 0 && (kill((pid_t)v, 0) == 0 || errno == EPERM)) {
      snprintf(pid, cap, "%ld", v);
      return;
    }
    nanosleep(&(struct timespec){0, 10000000}, NULL);
  }
  snprintf(pid, cap, "?");
}

bwt_status bwt_claim(const char *path, int *fd_out) {
  *fd_out = -1;
  int fd = -1;
  struct stat st;
  BWT_TRY(open_regular(path, O_RDWR | O_CREAT, &fd, &st));
  if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
    *fd_out = fd;
    return BWT_STATUS_OK;
  }
  int err = errno;
  close(fd);
  return err == EWOULDBLOCK ? BWT_STATUS_OK : bwt_fail(BWT_STATUS_IO, "cannot lock %s: %s", path, strerror(err));
}

bwt_status bwt_dir_lock(const char *dir, int *fd_out) {
  *fd_out = -1;
  char path[4096];
  if (snprintf(path, sizeof path, "%s/lock", dir) >= (int)sizeof path) return bwt_fail(BWT_STATUS_ARG, "path too long: %s", dir);
  int fd;
  struct stat st;
  BWT_TRY(open_regular(path, O_RDWR | O_CREAT, &fd, &st));
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    char pid[32];
    if (err == EWOULDBLOCK) lock_holder(fd, pid, sizeof pid);
    close(fd);
    if (err != EWOULDBLOCK) return bwt_fail(BWT_STATUS_IO, "cannot lock %s: %s", path, strerror(err));
    return bwt_fail(BWT_STATUS_IO, "%s is in use by pid %s (another bwt is writing it; wait for it or use another directory)", dir, pid);
  }
  char pid[PID_FIELD + 1];
  snprintf(pid, sizeof pid, "%-*ld\n", PID_FIELD - 1, (long)getpid());
  int written = pwrite(fd, pid, PID_FIELD, 0) == PID_FIELD;
  (void)written; /* the pid is for messages only */
  remove_stale_temporaries(dir);
  *fd_out = fd;
  return BWT_STATUS_OK;
}

void bwt_dir_unlock(int fd) {
  if (fd >= 0) close(fd); /* closing releases the flock; the lock file stays, empty of meaning */
}
