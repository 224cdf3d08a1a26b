// A small seeded generator (splitmix64) for initialisation and data order; the state is a plain value
// owned by the caller, so runs are reproducible and checkpoints can save it.
#ifndef DT_RNG_H
#define DT_RNG_H
#include <math.h>
#include <stdint.h>

typedef struct { uint64_t s; } dt_rng;

static inline uint64_t dt_rng_next(dt_rng *r) {
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
// Uniform in [0, 1) with 53 random bits.
static inline double dt_rng_uniform(dt_rng *r) { return (double)(dt_rng_next(r) >> 11) * (1.0 / 9007199254740992.0); }
// Standard normal (Box-Muller).
static inline double dt_rng_normal(dt_rng *r) {
    double u1 = dt_rng_uniform(r), u2 = dt_rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
// Uniform integer in [0, n).
static inline uint64_t dt_rng_below(dt_rng *r, uint64_t n) { return n ? dt_rng_next(r) % n : 0; }

#endif
