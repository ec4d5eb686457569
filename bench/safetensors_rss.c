/* Peak memory of reading a large safetensors file: what opening it and reading one tensor costs
 * with the mapped reader, against reading the whole file the way bwt did before (one malloc'd copy
 * of the file, and a second one for bwt_safetensors_open_memory).
 *
 *   build/safetensors_rss [MB [DIR]]      writes DIR/rss.safetensors (default 512 MB in /tmp): a big
 *                                         F32 tensor and a 4 KB one after it, with a bwt checksum
 *   build/safetensors_rss --file PATH NAME  the same measures on an existing file and tensor
 *
 * Each measure runs in a child process of its own and reports the growth of that child's peak RSS
 * (getrusage ru_maxrss) over the step; the parent never holds more than 1 MB of the file. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <zlib.h>

#include "bwt/fileio.h"
#include "bwt/safetensors.h"

static long peak_kb(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

/* A big F32 tensor of mb MB and "small" (1024 floats), with a checksum, written 1 MB at a time. */
static int write_file(const char *path, size_t mb) {
  size_t big = mb << 20, small = 4096, chunk = 1 << 20;
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  float *x = malloc(chunk);
  if (fd < 0 || !x) return perror(path), 1;
  uint32_t crc = (uint32_t)crc32(0L, Z_NULL, 0);
  char header[512];
  int hl = 0;
  for (int pass = 0; pass < 2; pass++) {
    hl = snprintf(header, sizeof header,
                  "{\"__metadata__\":{\"" BWT_ST_CHECKSUM_KEY "\":\"%08x\"},\"big\":{\"dtype\":\"F32\",\"shape\":[%zu],"
                  "\"data_offsets\":[0,%zu]},\"small\":{\"dtype\":\"F32\",\"shape\":[1024],\"data_offsets\":[%zu,%zu]}}",
                  (unsigned)crc, big / 4, big, big, big + small);
    while (hl % 8) header[hl++] = ' ';
    unsigned char len[8];
    for (int i = 0; i < 8; i++) len[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    if (pwrite(fd, len, 8, 0) != 8 || pwrite(fd, header, (size_t)hl, 8) != hl) return perror(path), 1;
    if (pass) break;
    for (size_t at = 0; at <= big; at += chunk) {
      size_t n = at < big ? chunk : small;
      for (size_t i = 0; i < n / 4; i++) x[i] = (float)((at / 4 + i) % 1000);
      crc = (uint32_t)crc32(crc, (const Bytef *)x, (uInt)n);
      if (pwrite(fd, x, n, (off_t)(8 + hl + at)) != (ssize_t)n) return perror(path), 1;
    }
  }
  free(x);
  return close(fd) != 0;
}

typedef enum { LAZY_ONE, CHECKED_ONE, LAZY_WHOLE, OLD_READ, OLD_MEMORY } measure;
static const char *const labels[] = {
    "open_lazy + get_f32 of the one tensor",
    "open (checksum checked) + get_f32 of the one tensor",
    "open_lazy + every page of the file's largest tensor",
    "old reader: the whole file read into memory (bwt_read_file)",
    "old open_memory: the file read, then copied (bwt_safetensors_open_memory)",
};

static int run(measure m, const char *path, const char *name) {
  long before = peak_kb();
  bwt_st_file *f = NULL;
  const float *x = NULL;
  bwt_status s = BWT_STATUS_OK;
  char *bytes = NULL;
  size_t len = 0;
  if (m == LAZY_ONE || m == CHECKED_ONE || m == LAZY_WHOLE) {
    s = m == CHECKED_ONE ? bwt_safetensors_open(&f, path) : bwt_safetensors_open_lazy(&f, path);
    const char *which = name;
    if (s == BWT_STATUS_OK && m == LAZY_WHOLE) { /* the largest tensor */
      size_t most = 0;
      for (int i = 0; i < bwt_safetensors_count(f); i++) {
        bwt_st_info info = bwt_safetensors_info_at(f, i);
        if (info.n_bytes >= most) most = info.n_bytes, which = info.name;
      }
    }
    if (s == BWT_STATUS_OK) s = bwt_safetensors_get_f32(f, which, 0, NULL, &x);
    if (s == BWT_STATUS_OK && m == LAZY_WHOLE) {
      bwt_st_info info;
      bwt_safetensors_info(f, which, &info);
      volatile float sum = 0;
      for (size_t i = 0; i < info.n_elems; i += 1024) sum += x[i];
    }
  } else {
    s = bwt_read_file(path, &bytes, &len);
    if (s == BWT_STATUS_OK) {
      volatile char touch = bytes[len / 2];
      (void)touch;
    }
    if (s == BWT_STATUS_OK && m == OLD_MEMORY) s = bwt_safetensors_open_memory(&f, bytes, len, path);
  }
  long grew = peak_kb() - before;
  if (s != BWT_STATUS_OK) return fprintf(stderr, "%s: %s\n", labels[m], bwt_last_error()), 1;
  printf("  %-75s peak RSS +%8.1f MB\n", labels[m], grew / 1024.0);
  bwt_safetensors_close(f);
  free(bytes);
  return 0;
}

int main(int argc, char **argv) {
  char path[4096];
  const char *name = "small";
  int made = 0;
  if (argc == 4 && strcmp(argv[1], "--file") == 0) {
    snprintf(path, sizeof path, "%s", argv[2]);
    name = argv[3];
  } else {
    size_t mb = argc > 1 ? (size_t)atol(argv[1]) : 512;
    snprintf(path, sizeof path, "%s/rss.safetensors", argc > 2 ? argv[2] : "/tmp");
    if (mb == 0 || write_file(path, mb)) return 1;
    made = 1;
  }
  struct stat st;
  if (stat(path, &st) != 0) return perror(path), 1;
  bwt_st_info info = {0};
  bwt_st_file *f = NULL;
  if (bwt_safetensors_open_lazy(&f, path) != BWT_STATUS_OK || bwt_safetensors_info(f, name, &info) != BWT_STATUS_OK)
    return fprintf(stderr, "%s\n", bwt_last_error()), 1;
  bwt_safetensors_close(f);
  printf("%s: %.1f MB; tensor '%s' %s, %zu bytes; parent peak RSS %.1f MB\n", path, st.st_size / 1048576.0, name,
         bwt_dtype_name(info.dtype), info.n_bytes, peak_kb() / 1024.0);
  int failed = 0;
  for (measure m = LAZY_ONE; m <= OLD_MEMORY; m++) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
      int rc = run(m, path, name);
      fflush(stdout);
      _exit(rc);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    failed |= !WIFEXITED(status) || WEXITSTATUS(status) != 0;
  }
  if (made) unlink(path);
  return failed;
}
