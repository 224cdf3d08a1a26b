// The `deltatune` command: dispatches to one function per subcommand (tools/cmd_*.c).
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "autograd/blas_core.h"
#include "recipes/recipe_internal.h"
#include "tools/commands.h"
#include "tools/thread_env.h"

static const struct { const char *name; int (*run)(int, char **); const char *help; } COMMANDS[] = {
    {"version", cmd_version, "print the version"},
    {"validate", cmd_validate, "check a recipe and print it with every default resolved"},
    {"tokenize", cmd_tokenize, "print the token ids of JSON-string lines"},
    {"train", cmd_train, "fine-tune a model from a YAML recipe"},
    {"preview", cmd_preview, "print the first training examples with the trained tokens marked"},
    {"eval", cmd_eval, "mean loss and perplexity of a model (+ adapter) on a data file"},
    {"generate", cmd_generate, "stream text from a model, with adapters applied"},
    {"export", cmd_export, "write a LoRA adapter as a llama.cpp GGUF adapter"},
    {"merge", cmd_merge, "fold LoRA adapters into the weights (Hugging Face or GGUF model)"},
    {"inspect", cmd_inspect, "describe a safetensors, model, adapter or GGUF file: metadata, tensors, counts"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: deltatune COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        fprintf(f, "  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].help);
}

// Starts this program again with the current environment. It execs the binary's real path, not
// /proc/self/exe: the kernel names a process after the file it execs, and "exe" is what ps and top would
// show. If the exec fails we simply go on.
static void dt_restart(char **argv) {
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0 || n >= (ssize_t)sizeof self - 1) return;
    self[n] = 0;
    execv(self, argv);
}

int main(int argc, char **argv) {
    // Settings OpenMP and OpenBLAS read only when they are loaded, so the program starts again (once:
    // the second time both are set) when it changes them. See blas_core.h: OpenBLAS fell back to slow
    // generic kernels on this CPU; and thread_env.h: on cores already busy with other work, threads
    // waiting at a barrier should sleep, not spin.
    const char *core = dt_blas_better_coretype();
    bool restart = core && setenv("OPENBLAS_CORETYPE", core, 1) == 0;
    if (dt_thread_env_defaults(argc > 1 ? argv[1] : NULL)) restart = true;
    if (restart) dt_restart(argv);
    // Past a file-size limit (ulimit -f) a write then fails with EFBIG and the command reports it,
    // leaving the previous outputs intact, instead of being killed by SIGXFSZ mid-write.
    signal(SIGXFSZ, SIG_IGN);
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (!strcmp(argv[1], COMMANDS[i].name)) return COMMANDS[i].run(argc - 1, argv + 1);
    const char *names[sizeof COMMANDS / sizeof COMMANDS[0]];
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++) names[i] = COMMANDS[i].name;
    const char *near = dt_rsuggest(argv[1], names, (int)(sizeof names / sizeof names[0]));
    if (near) fprintf(stderr, "deltatune: unknown command '%s' (did you mean %s?)\n", argv[1], near);
    else fprintf(stderr, "deltatune: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
