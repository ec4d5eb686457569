/* The processes of one bwt invocation: the ranks of an MPI job in the MPI build (cli/parallel_mpi.c,
 * CMake -DBWT_MPI=ON), else one process (cli/parallel_serial.c). Only the CLI knows about MPI: the
 * engine sees data parallelism through bwt_data_parallel (bwt/train.h). */
#ifndef BWT_CLI_PARALLEL_H
#define BWT_CLI_PARALLEL_H

#include <stddef.h>

#include "bwt/status.h"

void parallel_init(int *argc, char ***argv);
/* Ends the job on this process (MPI_Finalize); returns code. */
int parallel_finish(int code);
int parallel_rank(void);
int parallel_size(void);
/* Waits for every process. */
void parallel_barrier(void);
/* Stops every process at once with this exit code (MPI_Abort; one process: exit). */
_Noreturn void parallel_abort(int code);
/* Copies n bytes at buf from rank 0 to every process. */
bwt_status parallel_broadcast(void *buf, size_t n);
/* bwt_data_parallel.sum: grads (n floats, NULL when n is 0) and extras summed over the processes. */
bwt_status parallel_sum(void *ctx, float *grads, size_t n, double *extras, int n_extras);
/* The gradient sums so far: how many, their wall time and the bytes each rank contributed. */
void parallel_sum_stats(long *sums, double *seconds, double *bytes);
/* "MPI" or "serial", for messages. */
const char *parallel_kind(void);

#endif
