/* Thread count and placement for OpenMP and OpenBLAS (one shared OpenMP pool: bwt links the
 * OpenMP build of OpenBLAS).
 *
 * When the pool covers every CPU the process may use, each pool thread is pinned to its own CPU.
 * Unpinned, the kernel moves threads between cores between the many short parallel regions of a
 * step, which measured 20-35% slower on a 2-core machine (bench/HISTORY.md). With fewer threads
 * than CPUs, or when the user placed threads already (OMP_PROC_BIND, GOMP_CPU_AFFINITY), threads
 * are left where the system puts them. Placement never changes results. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cblas.h>
#include <omp.h>

#include "bwt/train.h"

/* The CPUs the process may use, read before bwt first pins anything. */
static cpu_set_t allowed;
static int n_allowed = -1, pinned;

static void place_pool(int n) {
  if (getenv("OMP_PROC_BIND") || getenv("GOMP_CPU_AFFINITY")) return;
  if (n_allowed < 0) n_allowed = sched_getaffinity(0, sizeof allowed, &allowed) == 0 ? CPU_COUNT(&allowed) : 0;
  int pin = n_allowed > 0 && n == n_allowed;
  if (!pin && !pinned) return; /* never pinned: leave placement to the system */
  int cpus[CPU_SETSIZE], n_cpus = 0;
  for (int c = 0; c < CPU_SETSIZE; c++)
    if (CPU_ISSET(c, &allowed)) cpus[n_cpus++] = c;
#pragma omp parallel num_threads(n)
  {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpus[omp_get_thread_num() % n_cpus], &one);
    /* Best effort: a failure only costs speed. Unpinning gives back every allowed CPU. */
    pthread_setaffinity_np(pthread_self(), sizeof(cpu_set_t), pin ? &one : &allowed);
  }
  pinned = pin;
}

/* OpenBLAS takes one buffer of this much address space per thread of a product, and when it cannot
 * get one (under an address-space limit: ulimit -v, a cluster's h_vmem) it retries for ever. */
#define BLAS_BUFFER_BYTES ((size_t)128 << 20)

/* The address space the process may still map, or SIZE_MAX without a limit. */
static size_t address_space_left(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_AS, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return SIZE_MAX;
  long pages = 0, page = sysconf(_SC_PAGESIZE);
  FILE *f = fopen("/proc/self/statm", "r");
  if (f) {
    if (fscanf(f, "%ld", &pages) != 1) pages = 0;
    fclose(f);
  }
  size_t used = (size_t)pages * (size_t)(page > 0 ? page : 4096);
  return rl.rlim_cur > used ? (size_t)(rl.rlim_cur - used) : 0;
}

bwt_status bwt_set_threads(int n) {
  if (n <= 0) n = omp_get_max_threads();
  size_t left = address_space_left(), need = (size_t)n * BLAS_BUFFER_BYTES;
  if (left != SIZE_MAX && need + BLAS_BUFFER_BYTES > left) /* and room for the model besides */
    return bwt_fail(BWT_STATUS_NOMEM,
                    "%d threads need %zu MB of address space for OpenBLAS's buffers, but the limit (ulimit -v) leaves %zu MB: use at most %zu threads (--threads), or raise the limit",
                    n, need >> 20, left >> 20, left / BLAS_BUFFER_BYTES > 1 ? left / BLAS_BUFFER_BYTES - 1 : 0);
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
  place_pool(n);
  return BWT_STATUS_OK;
}
