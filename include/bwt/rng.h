/* Seeded random streams (xoshiro256**, seeded through splitmix64).
 *
 * A stream is named by (seed, stream id), so that, e.g., sequence b of the batch at step s can be
 * drawn from its own stream independently of thread count and of how many numbers other streams
 * used. Bit-identical on every platform. */
#ifndef BWT_RNG_H
#define BWT_RNG_H

#include <stdint.h>

typedef struct {
  uint64_t s[4];
} bwt_rng;

void bwt_rng_seed(bwt_rng *rng, uint64_t seed, uint64_t stream);
uint64_t bwt_rng_u64(bwt_rng *rng);
/* Uniform double in [0, 1) with 53 random bits. */
double bwt_rng_uniform(bwt_rng *rng);
/* Uniform integer in [0, n), unbiased; n > 0. */
uint32_t bwt_rng_below(bwt_rng *rng, uint32_t n);
/* Standard normal (Box-Muller, double precision). */
double bwt_rng_normal(bwt_rng *rng);
/* Mixes two 64-bit values into one (for deriving per-step seeds). */
uint64_t bwt_hash2(uint64_t a, uint64_t b);

#endif
