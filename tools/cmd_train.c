// deltatune train RECIPE.yaml [--overwrite] [key=value ...]
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "tools/commands.h"
#include "tools/train_loop.h"

// The one piece of process-wide state: a signal handler can only reach a global.
static volatile sig_atomic_t g_stop = 0;
static void on_signal(int sig) { (void)sig; g_stop = 1; }

int cmd_train(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fprintf(argc < 2 ? stderr : stdout,
                "usage: deltatune train RECIPE.yaml [--overwrite] [dotted.key=value ...]\n"
                "  --overwrite  start afresh in an output_dir that holds an earlier run's checkpoints (deletes them)\n");
        return argc < 2 ? 2 : 0;
    }
    // --overwrite may stand anywhere after the recipe; the other arguments are overrides.
    bool overwrite = false;
    int n = 2;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--overwrite")) overwrite = true;
        else argv[n++] = argv[i];
    }
    argc = n;
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    ctx.warn = dt_cli_warn;
    dt_recipe r;
    int rc = dt_recipe_load(&ctx, argv[1], (const char *const *)argv + 2, argc - 2, &r);
    if (rc) return dt_cli_fail("train", &ctx, rc);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    // DT_TEST_INTERRUPT_AFTER=N acts like Ctrl-C after step N, so tests can interrupt deterministically.
    const char *stop_after = getenv("DT_TEST_INTERRUPT_AFTER");
    dt_train_hooks hooks = {&g_stop, isatty(STDERR_FILENO), stop_after ? atoll(stop_after) : 0, overwrite};
    rc = dt_train_run(&ctx, &r, &hooks);
    dt_recipe_free(&r);
    if (rc == DT_EINTERRUPTED) {
        fprintf(stderr, "deltatune train: %s\n", ctx.msg);
        return 130;
    }
    return rc ? dt_cli_fail("train", &ctx, rc) : 0;
}
