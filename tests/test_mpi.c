// Data-parallel `deltatune train` under `mpirun --oversubscribe -np 2` (tools/train_dist.h), on the tiny
// recipe of test_train (AdamW, LoRA dropout 0.1, shuffled packed data):
//   - 2 processes x 2 micro-batches and 1 process x 4 give the same adapter, byte for byte, and the same
//     losses; the checkpoint records the world size;
//   - a 2-process run interrupted and resumed with 1 process, and a 1-process run resumed with 2, end
//     with the uninterrupted run's adapter;
//   - a bad sequence in rank 1's share of step 4 stops both processes within seconds, with one message
//     naming rank 1 and the cause; the step-3 checkpoint stays as it was and no adapter is written;
//   - SIGTERM to one rank: every rank stops after the step, rank 0 saves one checkpoint, all exit 130.
// Skipped when deltatune was built without MPI or mpirun cannot start.
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include "models/safetensors.h"
#include "tests/file_util.h"
#include "tests/test_util.h"

static char tmp[64];
// -q: mpirun adds no banner of its own when a rank exits non-zero (the job's one message is deltatune's).
// The two variables let it run as root (CI containers); --oversubscribe: 2 ranks on fewer cores.
#define MPIRUN "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun -q --oversubscribe --bind-to none -np 2 "
#define RECIPE "./deltatune train tests/data/train/tiny.yaml train.max_steps=6 train.eval_every_n_steps=3 "

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// Runs a shell command with stdout/stderr in tmp/out.txt and tmp/err.txt; its exit status.
static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...) {
    char cmd[4096], full[4400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    snprintf(full, sizeof full, "%s >%s/out.txt 2>%s/err.txt", cmd, tmp, tmp);
    int st = system(full);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *path_of(char *buf, size_t n, const char *rel) {
    snprintf(buf, n, "%s/%s", tmp, rel);
    return buf;
}

// The metrics lines without the timing field, which differs from run to run.
static char *metrics_without_speed(const char *path) {
    char *s = tf_slurp(path, NULL);
    if (!s) return NULL;
    for (char *p = strstr(s, "\"tokens_per_s\":"); p; p = strstr(p, "\"tokens_per_s\":")) {
        char *end = strchr(p, ',');
        if (!end) break;
        memmove(p, end + 1, strlen(end + 1) + 1);
    }
    return s;
}

static int count(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = hay ? strstr(hay, needle) : NULL; p; p = strstr(p + 1, needle)) n++;
    return n;
}

static void test_two_equal_one(void) {
    char a[512], b[512], ma[512], mb[512], ck[512];
    int rc1 = run(RECIPE "train.gradient_accumulation_steps=4 output_dir=%s/one", tmp);
    int rc2 = run(MPIRUN RECIPE "train.gradient_accumulation_steps=2 output_dir=%s/two", tmp);
    // Rank 0 alone prints (README): rank 1 used to add its own memory estimate and first-step report.
    char *e = tf_slurp(path_of(ma, sizeof ma, "err.txt"), NULL);
    TEST_CHECK("mpi_rank0_alone_prints", rc2 == 0 && count(e, "memory estimate:") == 1 &&
               count(e, "memory after the first step") == 1 && count(e, "frozen weights:") == 1,
               "want each line once; stderr:\n%s", e ? e : "");
    free(e);
    path_of(a, sizeof a, "one/adapter_model.safetensors");
    path_of(b, sizeof b, "two/adapter_model.safetensors");
    TEST_CHECK("mpi_two_processes_same_adapter", rc1 == 0 && rc2 == 0 && tf_same_file(a, b),
               "exit %d / %d; the adapters of 1 x 4 and 2 x 2 micro-batches differ (%s, %s)", rc1, rc2, a, b);
    char *x = metrics_without_speed(path_of(ma, sizeof ma, "one/metrics.jsonl"));
    char *y = metrics_without_speed(path_of(mb, sizeof mb, "two/metrics.jsonl"));
    TEST_CHECK("mpi_two_processes_same_losses", x && y && count(x, "\"val_loss\"") == 2 && !strcmp(x, y),
               "metrics differ:\n%s\n%s", x ? x : "(none)", y ? y : "(none)");
    free(x);
    free(y);
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_safetensors *st = NULL;
    const char *ws = NULL;
    if (!dt_st_open(&ctx, path_of(ck, sizeof ck, "two/checkpoints/step-4/trainer_state.safetensors"), &st))
        ws = dt_st_metadata(st, "world_size");
    TEST_CHECK("mpi_checkpoint_records_world_size", ws && !strcmp(ws, "2"), "world_size %s in %s", ws ? ws : "missing", ck);
    dt_st_close(st);
}

// An interrupted run of `from` processes resumed with `to`; the global batch is 4 micro-batches in both.
static void test_resume(int from, int to, const char *name) {
    char want[512], got[512], err[512];
    const char *launch[3] = {"", "", MPIRUN};
    int rc1 = run("DT_TEST_INTERRUPT_AFTER=3 %s" RECIPE "train.gradient_accumulation_steps=%d output_dir=%s/r%d%d",
                  launch[from], 4 / from, tmp, from, to);
    int rc2 = run("%s" RECIPE "train.gradient_accumulation_steps=%d resume=true output_dir=%s/r%d%d", launch[to], 4 / to,
                  tmp, from, to);
    char *e = tf_slurp(path_of(err, sizeof err, "err.txt"), NULL);
    char dir[64];
    snprintf(dir, sizeof dir, "r%d%d/adapter_model.safetensors", from, to);
    TEST_CHECK(name, rc1 == 130 && rc2 == 0 && count(e, "resuming from") == 1 &&
                     tf_same_file(path_of(want, sizeof want, "one/adapter_model.safetensors"), path_of(got, sizeof got, dir)),
               "exit %d then %d; the resumed adapter %s differs from the uninterrupted one; stderr:\n%s", rc1, rc2, got,
               e ? e : "");
    free(e);
}

static void test_failing_share(void) {
    // 24 sequences of 8 tokens, in file order (no shuffling, no packing): step s (from 1) of 2 ranks x 1
    // micro-batch of 2 takes sequences 4(s-1) .. 4s-1, rank 1 the last two. Sequence 15 holds a token
    // id outside the 128-token vocabulary. It is refused as the data loads, on every rank, naming the
    // file and line, before anything is written.
    char data[512], err[512], ck[512], fin[512];
    FILE *f = fopen(path_of(data, sizeof data, "bad.jsonl"), "w");
    for (int i = 0; f && i < 24; i++) {
        fprintf(f, "{\"input_ids\":[");
        for (int j = 0; j < 8; j++) fprintf(f, "%s%d", j ? "," : "", i == 15 && j == 3 ? 500 : (i * 7 + j * 3) % 128);
        fprintf(f, "]}\n");
    }
    if (f) fclose(f);
    int rc = run(MPIRUN RECIPE "data.train=%s data.shuffle=false data.packing=false train.gradient_accumulation_steps=1 "
                        "train.save_every_n_steps=1 output_dir=%s/bad",
                 data, tmp);
    char *e = tf_slurp(path_of(err, sizeof err, "err.txt"), NULL);
    TEST_CHECK("mpi_bad_token_refused_at_load", rc == 2 && count(e, "deltatune train:") == 1 && count(e, "bad.jsonl:16: ") == 1 &&
               access(path_of(fin, sizeof fin, "bad"), F_OK) != 0,
               "exit %d (want 2), output_dir %s; want one line naming bad.jsonl:16; stderr:\n%s", rc,
               access(fin, F_OK) ? "absent" : "created", e ? e : "");
    free(e);
    // A rank whose share fails mid-run (as out of memory or a device error would; DT_TEST_FAIL_SHARE
    // stands for them, as no data can do it any more): rank 1's share of step 4 on the good data.
    f = fopen(data, "w");
    for (int i = 0; f && i < 24; i++) {
        fprintf(f, "{\"input_ids\":[");
        for (int j = 0; j < 8; j++) fprintf(f, "%s%d", j ? "," : "", (i * 7 + j * 3) % 128);
        fprintf(f, "]}\n");
    }
    if (f) fclose(f);
    double t0 = now();
    rc = run("DT_TEST_FAIL_SHARE=1:4 " MPIRUN "-x DT_TEST_FAIL_SHARE " RECIPE "data.train=%s data.shuffle=false "
             "data.packing=false train.gradient_accumulation_steps=1 train.save_every_n_steps=1 output_dir=%s/bad", data, tmp);
    double took = now() - t0;
    e = tf_slurp(path_of(err, sizeof err, "err.txt"), NULL);
    TEST_CHECK("mpi_failing_rank_stops_all", rc != 0 && rc != 130 && took < 30, "exit %d after %.1f s", rc, took);
    TEST_CHECK("mpi_failing_rank_one_message", count(e, "deltatune train:") == 1 &&
               count(e, "rank 1 of 2: its share of step 4 failed") == 1,
               "want one line naming rank 1 and its failed step; stderr:\n%s", e ? e : "");
    free(e);
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_safetensors *st = NULL;
    bool intact = !dt_st_open(&ctx, path_of(ck, sizeof ck, "bad/checkpoints/step-3/adapter_model.safetensors"), &st) &&
                  dt_st_count(st) > 0;
    dt_st_close(st);
    path_of(fin, sizeof fin, "bad/checkpoints/step-4");
    bool no_step4 = access(fin, F_OK) != 0;
    TEST_CHECK("mpi_failing_rank_keeps_checkpoint", intact && no_step4 && access(path_of(fin, sizeof fin, "bad/adapter_model.safetensors"), F_OK) != 0,
               "step-3 checkpoint %s, step-4 %s, final adapter %s", intact ? "readable" : "unreadable",
               no_step4 ? "absent" : "present", access(fin, F_OK) ? "absent" : "present");
}

// SIGTERM to rank 1 alone, once rank 0 has logged a step: both stop after the step in progress and rank 0
// saves the one checkpoint.
static void test_signal_one_rank(void) {
    char cmd[1024], metrics[512], err[512], cks[512];
    snprintf(cmd, sizeof cmd,
             MPIRUN "./deltatune train tests/data/train/tiny.yaml train.max_steps=1000000 train.save_every_n_steps=0 "
                    "train.eval_every_n_steps=0 output_dir=%s/sig >%s/out.txt 2>%s/err.txt & echo $!",
             tmp, tmp, tmp);
    FILE *p = popen(cmd, "r");
    long mpirun = 0;
    if (!p || fscanf(p, "%ld", &mpirun) != 1) { TEST_FAIL("mpi_sigterm_one_rank", "cannot start mpirun"); if (p) pclose(p); return; }
    pclose(p);
    path_of(metrics, sizeof metrics, "sig/metrics.jsonl");
    double t0 = now();
    char *m = NULL;
    while (now() - t0 < 60 && !(m && strstr(m, "\"step\":2,"))) { free(m); usleep(100000); m = tf_slurp(metrics, NULL); }
    free(m);
    // The ranks are mpirun's children; rank 1 is the one whose environment says so.
    snprintf(cmd, sizeof cmd, "for c in $(pgrep -P %ld); do grep -qz '^OMPI_COMM_WORLD_RANK=1$' /proc/$c/environ && kill -TERM $c; done", mpirun);
    (void)!system(cmd);
    t0 = now();
    while (now() - t0 < 30 && kill((pid_t)mpirun, 0) == 0) usleep(100000);
    bool ended = kill((pid_t)mpirun, 0) != 0;
    if (!ended) kill((pid_t)mpirun, SIGKILL);
    char *e = tf_slurp(path_of(err, sizeof err, "err.txt"), NULL);
    int n_ck = tf_count_prefix(path_of(cks, sizeof cks, "sig/checkpoints"), "step-");
    TEST_CHECK("mpi_sigterm_one_rank", ended && n_ck == 1 && count(e, "interrupted at step") == 1 && count(e, "deltatune train:") == 1,
               "ended %d, %d checkpoints; stderr:\n%s", ended, n_ck, e ? e : "");
    free(e);
}

int main(void) {
#ifndef DT_MPI
    TEST_SKIP("mpi", "deltatune was built without MPI (make MPI=1, needs libopenmpi-dev)");
    TEST_EXIT();
#endif
    snprintf(tmp, sizeof tmp, "/tmp/dt_mpi_XXXXXX");
    if (!mkdtemp(tmp)) { TEST_FAIL("mkdtemp", "cannot make a temporary folder"); TEST_EXIT(); }
    if (run(MPIRUN "true")) {
        TEST_SKIP("mpi", "mpirun cannot start 2 processes here (openmpi-bin missing?)");
        TEST_EXIT();
    }
    test_two_equal_one();
    test_resume(2, 1, "mpi_resume_two_with_one");
    test_resume(1, 2, "mpi_resume_one_with_two");
    test_failing_share();
    test_signal_one_rank();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (!dt_test_failures) (void)!system(cmd);
    TEST_EXIT();
}
