// One entry point per subcommand; argv[0] is the subcommand's name. Each returns the process exit
// code: 0 success, 2 bad input (with a message on stderr), 1 any other failure.
#ifndef DT_COMMANDS_H
#define DT_COMMANDS_H
#include "autograd/context.h"
#include "autograd/dtype_choice.h"

int cmd_version(int argc, char **argv);
int cmd_validate(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_preview(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_merge(int argc, char **argv);
int cmd_inspect(int argc, char **argv);

// Maps a library status to the exit code and prints ctx->msg as "deltatune CMD: msg".
int dt_cli_fail(const char *cmd, const dt_ctx *ctx, int status);
// Prints library warnings to stderr as "warning: ...".
void dt_cli_warn(void *user, const char *msg);
// A command's context: warnings to stderr, and bf16 emulation allowed when DELTATUNE_BF16_EMULATED=1
// (a test hook: bf16 on a CPU without bf16 units, see dt_ctx.bf16_emulated).
void dt_cli_ctx_init(dt_ctx *ctx);

#endif
