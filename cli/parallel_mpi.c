/* The ranks of an MPI job (the MPI build): cli/parallel.h over MPI_COMM_WORLD. Errors are returned
 * (MPI_ERRORS_RETURN), not fatal inside MPI, so that bwt can say what failed. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#include <mpi.h>

#include "parallel.h"

static int rank, size = 1;
static long n_sums;           /* gradient sums (steps) so far */
static double sum_s, sum_bytes; /* their wall time and the bytes this rank contributed */

void parallel_init(int *argc, char ***argv) {
  int provided;
  /* bwt calls MPI from the main thread only; OpenMP threads never do. */
  MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
}

int parallel_finish(int code) {
  MPI_Finalize();
  return code;
}

int parallel_rank(void) { return rank; }
int parallel_size(void) { return size; }
void parallel_barrier(void) { MPI_Barrier(MPI_COMM_WORLD); }

_Noreturn void parallel_abort(int code) {
  fflush(stdout);
  fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, code);
  exit(code); /* not reached */
}

static bwt_status mpi_failed(const char *what, int err) {
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(err, msg, &len);
  return bwt_fail(BWT_STATUS_IO, "%s across %d MPI ranks failed (a rank died or the network failed): %s", what, size, msg);
}

/* MPI counts are ints: large buffers go in pieces. */
#define PIECE ((size_t)INT_MAX / 8)

bwt_status parallel_broadcast(void *buf, size_t n) {
  for (size_t at = 0; at < n; at += PIECE) {
    size_t k = n - at < PIECE ? n - at : PIECE;
    int err = MPI_Bcast((char *)buf + at, (int)k, MPI_BYTE, 0, MPI_COMM_WORLD);
    if (err != MPI_SUCCESS) return mpi_failed("a broadcast", err);
  }
  return BWT_STATUS_OK;
}

bwt_status parallel_sum(void *ctx, float *grads, size_t n, double *extras, int n_extras) {
  (void)ctx;
  double t0 = MPI_Wtime();
  for (size_t at = 0; at < n; at += PIECE) {
    size_t k = n - at < PIECE ? n - at : PIECE;
    int err = MPI_Allreduce(MPI_IN_PLACE, grads + at, (int)k, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    if (err != MPI_SUCCESS) return mpi_failed("the gradient sum", err);
  }
  int err = n_extras ? MPI_Allreduce(MPI_IN_PLACE, extras, n_extras, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD) : MPI_SUCCESS;
  if (n) n_sums++, sum_s += MPI_Wtime() - t0, sum_bytes += (double)n * sizeof(float) + n_extras * sizeof(double);
  return err == MPI_SUCCESS ? BWT_STATUS_OK : mpi_failed("the step's agreement", err);
}

void parallel_sum_stats(long *sums, double *seconds, double *bytes) { *sums = n_sums, *seconds = sum_s, *bytes = sum_bytes; }

const char *parallel_kind(void) { return "MPI"; }
