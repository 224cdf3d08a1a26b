// Thread defaults of the `deltatune` command: the OpenMP wait policy chosen before OpenMP starts, and a
// governor that lowers the thread count while other work takes the cores.
//
// Why. OpenMP threads that reach a barrier first spin (libgomp: 300000 rounds, about a millisecond)
// before they sleep. On an idle machine that is the fastest choice: a sleeping waiter costs a futex
// wake-up at each of the ~1500 parallel regions of a training step (5-9% measured, bench/bench_threads.sh).
// But when the cores are also busy with other work, a spinning thread holds the core that the thread it
// waits for needs, and two threads ran 15-50 times slower than one. Sleeping waiters (passive) are the
// best choice on a loaded machine. libgomp reads the policy once, at start-up, so:
//  - At start-up (train, eval, generate), unless the user chose (OMP_WAIT_POLICY or GOMP_SPINCOUNT set),
//    the load of the cores is sampled for DT_LOAD_SAMPLE_MS. Cores already busy with other work: waiters
//    sleep (OMP_WAIT_POLICY=passive; the program must start again for libgomp to read it). Idle cores:
//    libgomp's default spin, with the governor below on.
//  - The governor (spinning runs only): between steps, at most every DT_GOV_PERIOD_S, it measures how much
//    of the cores other processes used since the last sample and sets the thread count to the cores left
//    free (at least 1), raising it again when they free up. One thread never waits at a barrier, so a
//    run that loses its cores to work started after it degrades to one thread's speed, never to a stall.
// The choice travels to the restarted program in DT_WAIT_AUTO ("spin" or "passive").
#ifndef DT_THREAD_ENV_H
#define DT_THREAD_ENV_H
#include <stdbool.h>

enum { DT_LOAD_SAMPLE_MS = 150 };
#define DT_GOV_PERIOD_S 0.5

// Chooses the wait policy for `command` (argv[1]) as above. Returns true when it set OMP_WAIT_POLICY, so
// the caller must start the program again.
bool dt_thread_env_defaults(const char *command);

// Cores of this process's affinity mask that other processes kept busy over `ms` milliseconds (this
// process assumed idle meanwhile), from /proc/stat; -1 if unreadable.
double dt_cores_busy_elsewhere(int ms);

typedef struct dt_thread_gov {
    bool on;                        // spinning run, governor active
    int max_threads, cur;           // threads chosen for the run; threads now
    int ncpu;                       // cores of the affinity mask
    double t_last, self_last;       // monotonic s and this process's CPU s at the last sample
    unsigned long long busy_last;   // busy jiffies of the mask's cores at the last sample
} dt_thread_gov;

// Starts the governor for a run on `threads` threads (0: OpenMP's default). It is on only when the
// start-up choice was "spin" (DT_WAIT_AUTO) and threads > 1.
void dt_thread_gov_init(dt_thread_gov *g, int threads);
// Between steps: samples the load (at most every DT_GOV_PERIOD_S) and sets the thread count.
void dt_thread_gov_tick(dt_thread_gov *g);
// The thread count for `others` cores busy elsewhere out of ncpu, at most max: the cores left free,
// where a core 65% free counts (so light noise keeps all threads and one busy loop beside a 2-thread run,
// measured as 0.67 of a core, takes one away). Pure; what the governor sets.
int dt_thread_gov_choose(int max, int ncpu, double others);

#endif
