#include "tools/thread_env.h"
#include <omp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <cblas.h>

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double self_cpu_s(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru)) return 0;
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

// Busy jiffies (user, nice, system, irq, softirq, steal: steal is time the hypervisor gave our cores to
// others) summed over the cores of this process's affinity mask, and how many cores that is. -1 when
// /proc/stat cannot be read.
static long long busy_jiffies(int *ncpu) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set)) CPU_ZERO(&set);
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return -1;
    char line[512];
    long long busy = 0;
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        int cpu;
        unsigned long long u, ni, sy, id, io, irq, sirq, st;
        if (strncmp(line, "cpu", 3) || line[3] < '0' || line[3] > '9') continue; // per-core lines only
        if (sscanf(line, "cpu%d %llu %llu %llu %llu %llu %llu %llu %llu", &cpu, &u, &ni, &sy, &id, &io, &irq, &sirq, &st) != 9)
            continue;
        if (CPU_COUNT(&set) && (cpu >= CPU_SETSIZE || !CPU_ISSET(cpu, &set))) continue;
        busy += (long long)(u + ni + sy + irq + sirq + st);
        n++;
    }
    fclose(f);
    *ncpu = n;
    return n ? busy : -1;
}

double dt_cores_busy_elsewhere(int ms) {
    int n;
    long long b0 = busy_jiffies(&n);
    double t0 = mono_s(), c0 = self_cpu_s();
    if (b0 < 0) return -1;
    nanosleep(&(struct timespec){ms / 1000, (long)(ms % 1000) * 1000000L}, NULL);
    long long b1 = busy_jiffies(&n);
    double dt = mono_s() - t0, self = self_cpu_s() - c0;
    if (b1 < 0 || dt <= 0) return -1;
    double others = ((double)(b1 - b0) / (double)sysconf(_SC_CLK_TCK) - self) / dt;
    return others < 0 ? 0 : others;
}

bool dt_thread_env_defaults(const char *command) {
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT") || getenv("DT_WAIT_AUTO")) return false; // chosen
    if (!command || (strcmp(command, "train") && strcmp(command, "eval") && strcmp(command, "generate"))) return false;
    int n = 0;
    busy_jiffies(&n);
    double others = dt_cores_busy_elsewhere(DT_LOAD_SAMPLE_MS);
    // Busy cores: a loaded machine, where sleeping waiters degrade gracefully. A single core never waits
    // at a barrier, so it needs no choice.
    bool passive = n > 1 && others >= 0.5;
    setenv("DT_WAIT_AUTO", passive ? "passive" : "spin", 1);
    return passive && setenv("OMP_WAIT_POLICY", "passive", 1) == 0;
}

int dt_thread_gov_choose(int max, int ncpu, double others) {
    int free = (int)((double)ncpu - others + 0.35);
    return free < 1 ? 1 : free > max ? max : free;
}

void dt_thread_gov_init(dt_thread_gov *g, int threads) {
    *g = (dt_thread_gov){0};
    const char *w = getenv("DT_WAIT_AUTO");
    g->max_threads = g->cur = threads > 0 ? threads : omp_get_max_threads();
    long long b = busy_jiffies(&g->ncpu);
    g->on = w && !strcmp(w, "spin") && g->max_threads > 1 && b >= 0;
    g->busy_last = (unsigned long long)(b < 0 ? 0 : b);
    g->t_last = mono_s();
    g->self_last = self_cpu_s();
}

void dt_thread_gov_tick(dt_thread_gov *g) {
    if (!g->on) return;
    double t = mono_s();
    if (t - g->t_last < DT_GOV_PERIOD_S) return;
    int n;
    long long b = busy_jiffies(&n);
    double self = self_cpu_s();
    if (b < 0) return;
    double others = ((double)((unsigned long long)b - g->busy_last) / (double)sysconf(_SC_CLK_TCK) - (self - g->self_last)) /
                    (t - g->t_last);
    g->busy_last = (unsigned long long)b;
    g->t_last = t;
    g->self_last = self;
    int want = dt_thread_gov_choose(g->max_threads, g->ncpu, others < 0 ? 0 : others);
    if (want != g->cur) {
        g->cur = want;
        omp_set_num_threads(want);
        openblas_set_num_threads(want);
    }
}
