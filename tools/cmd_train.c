// deltatune train RECIPE.yaml [--overwrite] [key=value ...]
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "tools/cli_opts.h"
#include "tools/commands.h"
#include "tools/train_dist.h"
#include "tools/train_loop.h"

// The one piece of process-wide state: a signal handler can only reach a global.
static volatile sig_atomic_t g_stop = 0;
static void on_signal(int sig) { (void)sig; g_stop = 1; }

int cmd_train(int argc, char **argv) {
    char *pos[65];
    int n_pos = 0;
    bool overwrite = false;
    const dt_opt opts[] = {
        DT_O_FLAG("--overwrite", "start afresh in an output_dir that holds an earlier run's checkpoints (deletes them)",
                  &overwrite),
    };
    const dt_cli cli = {"train", "RECIPE.yaml [--overwrite] [dotted.key=value ...]",
                        "Fine-tunes a model from a YAML recipe and writes into its output_dir: the PEFT adapter\n"
                        "(adapter_config.json, adapter_model.safetensors), metrics.jsonl, loss.svg, recipe.yaml and\n"
                        "checkpoints/. Ctrl-C saves a checkpoint; resume: true continues from it.",
                        opts, (int)(sizeof opts / sizeof opts[0]),
                        "RECIPE.yaml: the recipe (recipes/README.md documents every key);\n"
                        "dotted.key=value overrides one key, e.g. train.max_steps=20 output_dir=runs/try."};
    int st = dt_cli_parse(&cli, argc, argv, pos, &n_pos, 65);
    if (st >= 0) return st;
    if (n_pos < 1) return dt_cli_bad(&cli, "a recipe is required");
    dt_ctx ctx;
    dt_cli_ctx_init(&ctx);
    // Under mpirun/srun the processes join one job here; rank 0 speaks for it (see tools/train_dist.h).
    dt_comm *comm;
    int rc = dt_comm_open(&ctx, &comm);
    if (rc) return dt_cli_fail("train", &ctx, rc);
    if (comm->rank != 0) ctx.warn = NULL;
    dt_recipe r;
    rc = dt_recipe_load(&ctx, pos[0], (const char *const *)pos + 1, n_pos - 1, &r);
    bool loaded = !rc;
    if (!rc && r.hardware.device == DT_DEV_CUDA) rc = dt_comm_for_cuda(&ctx, &comm);
    if (!(rc = dt_dist_agree(&ctx, comm, rc))) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        // DT_TEST_INTERRUPT_AFTER=N acts like Ctrl-C after step N, so tests can interrupt deterministically.
        const char *stop_after = getenv("DT_TEST_INTERRUPT_AFTER");
        // DT_TEST_FAIL_SHARE=RANK:STEP fails that rank's share of that step, for the tests of a failing rank.
        const char *fail = getenv("DT_TEST_FAIL_SHARE");
        int fail_rank = 0;
        long long fail_step = 0;
        if (fail && sscanf(fail, "%d:%lld", &fail_rank, &fail_step) != 2) fail_step = 0;
        dt_train_hooks hooks = {&g_stop, isatty(STDERR_FILENO), stop_after ? atoll(stop_after) : 0, fail_rank, fail_step,
                                overwrite, comm};
        rc = dt_train_run(&ctx, &r, &hooks);
    }
    if (loaded) dt_recipe_free(&r);
    int code = rc == DT_EINTERRUPTED ? 130 : rc == DT_EINPUT || rc == DT_EUNSUPPORTED ? 2 : rc ? 1 : 0; // as dt_cli_fail
    if (rc && !dt_dist_quiet(comm, rc)) {
        if (rc == DT_EINTERRUPTED) fprintf(stderr, "deltatune train: %s\n", ctx.msg);
        else dt_cli_fail("train", &ctx, rc);
    }
    dt_comm_close(comm);
    return code;
}
