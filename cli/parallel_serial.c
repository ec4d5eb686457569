/* One process (the plain build): cli/parallel.h with nothing to share. */
#include <stdlib.h>

#include "parallel.h"

void parallel_init(int *argc, char ***argv) {}
int parallel_finish(int code) { return code; }
int parallel_rank(void) { return 0; }
int parallel_size(void) { return 1; }
void parallel_barrier(void) {}
_Noreturn void parallel_abort(int code) { exit(code); }
bwt_status parallel_broadcast(void *buf, size_t n) { return BWT_STATUS_OK; }
bwt_status parallel_sum(void *ctx, float *grads, size_t n, double *extras, int n_extras) { return BWT_STATUS_OK; }
void parallel_sum_stats(long *sums, double *seconds, double *bytes) { *sums = 0, *seconds = *bytes = 0; }
const char *parallel_kind(void) { return "serial"; }
