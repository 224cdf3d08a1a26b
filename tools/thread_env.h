// Thread defaults the `deltatune` command sets before OpenMP starts.
#ifndef DT_THREAD_ENV_H
#define DT_THREAD_ENV_H
#include <stdbool.h>

// OpenMP threads that reach a barrier first spin (libgomp: 300000 rounds, about a millisecond) before
// they sleep. On a machine whose cores are also busy with other work, a spinning thread holds the core
// that the thread it waits for needs, and two threads ran several times slower than one
// (bench/bench_threads.sh). So unless the user chose (OMP_WAIT_POLICY or GOMP_SPINCOUNT set), waiting
// threads sleep: sets OMP_WAIT_POLICY=passive and returns true. libgomp reads the variable only when it
// is loaded, so the caller must start the program again for it to apply.
bool dt_thread_env_defaults(void);

#endif
