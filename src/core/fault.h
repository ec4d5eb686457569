/* Fault injection for tests: make the n-th allocation, write, fsync or rename of the library fail
 * (as if memory or the disk had run out), or kill the process at the n-th write, so tests can
 * check that every failure point gives a clean error, leaks nothing and keeps the last good
 * checkpoint. Off unless armed; costs one atomic increment per operation.
 *
 * Armed from a test with bwt_fault_arm, or for a whole process by the environment variable
 * BWT_FAULT="KIND:N" (KIND alloc, write, fsync, rename, or kill-write: SIGKILL at the N-th write),
 * read at the first counted operation. */
#ifndef BWT_CORE_FAULT_H
#define BWT_CORE_FAULT_H

typedef enum { BWT_FAULT_ALLOC, BWT_FAULT_WRITE, BWT_FAULT_FSYNC, BWT_FAULT_RENAME, BWT_FAULT_KINDS } bwt_fault_kind;

/* Resets every counter and arms the n-th (1-based) next operation of `kind` to fail (n 0: none). */
void bwt_fault_arm(bwt_fault_kind kind, long n);
/* Operations of `kind` counted since the last bwt_fault_arm. */
long bwt_fault_count(bwt_fault_kind kind);
/* Whether a fault fired since the last bwt_fault_arm. */
int bwt_fault_fired(void);
/* Counts one operation of `kind`; returns 1 if it is to fail. */
int bwt_fault_hit(bwt_fault_kind kind);

#endif
