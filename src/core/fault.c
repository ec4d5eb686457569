/* Fault injection counters (fault.h). Atomics: allocations also happen inside OpenMP regions. */
#include "fault.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static long counts[BWT_FAULT_KINDS], armed_at[BWT_FAULT_KINDS];
static int fired, kill_on_write, env_read;

void bwt_fault_arm(bwt_fault_kind kind, long n) {
  env_read = 1; /* a test's own arming replaces the environment's */
  for (int k = 0; k < BWT_FAULT_KINDS; k++) __atomic_store_n(&counts[k], 0, __ATOMIC_SEQ_CST), armed_at[k] = 0;
  armed_at[kind] = n;
  kill_on_write = 0;
  __atomic_store_n(&fired, 0, __ATOMIC_SEQ_CST);
}

long bwt_fault_count(bwt_fault_kind kind) { return __atomic_load_n(&counts[kind], __ATOMIC_SEQ_CST); }

int bwt_fault_fired(void) { return __atomic_load_n(&fired, __ATOMIC_SEQ_CST); }

static void read_env(void) {
  env_read = 1;
  const char *v = getenv("BWT_FAULT");
  if (!v) return;
  static const char *const names[] = {"alloc", "write", "fsync", "rename"};
  const char *colon = strchr(v, ':');
  if (!colon) return;
  long n = strtol(colon + 1, NULL, 10);
  size_t len = (size_t)(colon - v);
  if (len == 10 && strncmp(v, "kill-write", 10) == 0) {
    armed_at[BWT_FAULT_WRITE] = n;
    kill_on_write = 1;
    return;
  }
  for (int k = 0; k < BWT_FAULT_KINDS; k++)
    if (strlen(names[k]) == len && strncmp(v, names[k], len) == 0) armed_at[k] = n;
}

int bwt_fault_hit(bwt_fault_kind kind) {
  if (!env_read) read_env();
  long n = __atomic_add_fetch(&counts[kind], 1, __ATOMIC_SEQ_CST);
  if (armed_at[kind] <= 0 || n != armed_at[kind]) return 0;
  if (kind == BWT_FAULT_WRITE && kill_on_write) kill(getpid(), SIGKILL);
  __atomic_store_n(&fired, 1, __ATOMIC_SEQ_CST);
  return 1;
}
