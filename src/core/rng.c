/* xoshiro256** (Blackman & Vigna) seeded by splitmix64: fast, small state, reproducible. */
#include "bwt/rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t bwt_hash2(uint64_t a, uint64_t b) {
  uint64_t x = a ^ (b * 0xd1b54a32d192ed03ULL);
  splitmix64(&x);
  return splitmix64(&x) ^ b;
}

void bwt_rng_seed(bwt_rng *rng, uint64_t seed, uint64_t stream) {
  uint64_t x = bwt_hash2(seed, stream);
  for (int i = 0; i < 4; i++) rng->s[i] = splitmix64(&x);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t bwt_rng_u64(bwt_rng *rng) {
  uint64_t *s = rng->s;
  uint64_t result = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

double bwt_rng_uniform(bwt_rng *rng) { return (double)(bwt_rng_u64(rng) >> 11) * 0x1.0p-53; }

uint32_t bwt_rng_below(bwt_rng *rng, uint32_t n) {
  /* Lemire's multiply-shift with rejection: unbiased for every n. */
  uint64_t m = (uint64_t)(uint32_t)(bwt_rng_u64(rng) >> 32) * n;
  uint32_t low = (uint32_t)m;
  if (low < n) {
    uint32_t threshold = (uint32_t)(-n) % n;
    while (low < threshold) {
      m = (uint64_t)(uint32_t)(bwt_rng_u64(rng) >> 32) * n;
      low = (uint32_t)m;
    }
  }
  return (uint32_t)(m >> 32);
}

double bwt_rng_normal(bwt_rng *rng) {
  double u1 = 1.0 - bwt_rng_uniform(rng); /* (0, 1] so log is finite */
  double u2 = bwt_rng_uniform(rng);
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
