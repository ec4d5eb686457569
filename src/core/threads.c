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
#include <stdlib.h>

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

void bwt_set_threads(int n) {
  if (n <= 0) n = omp_get_max_threads();
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
  place_pool(n);
}
