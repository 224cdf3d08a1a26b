// One table of options per command: the parser, the error messages and the --help text all come from
// it, so a command cannot parse an option its --help does not document.
//
//   const dt_opt opts[] = {
//       DT_O_STR("--model", "DIR", "model folder or file", &model),
//       DT_O_INT("-n", "N", "tokens to generate", &n, 0, 1e9),
//   };
//
// A wrong value names the option and what was expected ("-n '10x': expected a whole number from 0 to
// 1000000000"); an unknown option suggests the nearest one; both exit 2. -h/--help prints the usage to
// stdout and exits 0.
#ifndef DT_CLI_OPTS_H
#define DT_CLI_OPTS_H
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef enum {
    DT_OPT_FLAG,   // bool *dest, set to true
    DT_OPT_STR,    // const char **dest
    DT_OPT_INT,    // int64_t *dest, a whole number in [lo, hi]
    DT_OPT_FLOAT,  // double *dest, a finite number in [lo, hi]
    DT_OPT_CHOICE, // const char **dest, one of the '|'-separated words of `arg`
    DT_OPT_LIST,   // const char **dest (an array of max entries), *count entries filled; repeatable
} dt_cli_opt_kind;

typedef struct dt_opt {
    const char *name;   // "--model" or "-n"
    const char *alias;  // a second spelling, or NULL
    dt_cli_opt_kind kind;
    const char *arg;    // the value's name in the usage ("DIR"); for DT_OPT_CHOICE the choices "f32|f16"
    const char *help;   // one line
    void *dest;
    double lo, hi;      // DT_OPT_INT / DT_OPT_FLOAT range, inclusive (both 0: any value)
    int *count;         // DT_OPT_LIST: entries filled so far
    int max;            // DT_OPT_LIST: capacity of dest
} dt_opt;

// One row of each kind (the range of DT_O_INT / DT_O_FLOAT is inclusive).
#define DT_O_FLAG(name, help, dest) {name, NULL, DT_OPT_FLAG, NULL, help, dest, 0, 0, NULL, 0}
#define DT_O_STR(name, arg, help, dest) {name, NULL, DT_OPT_STR, arg, help, dest, 0, 0, NULL, 0}
#define DT_O_CHOICE(name, choices, help, dest) {name, NULL, DT_OPT_CHOICE, choices, help, dest, 0, 0, NULL, 0}
#define DT_O_INT(name, arg, help, dest, lo, hi) {name, NULL, DT_OPT_INT, arg, help, dest, lo, hi, NULL, 0}
#define DT_O_FLOAT(name, arg, help, dest, lo, hi) {name, NULL, DT_OPT_FLOAT, arg, help, dest, lo, hi, NULL, 0}
#define DT_O_LIST(name, arg, help, dest, count, max) {name, NULL, DT_OPT_LIST, arg, help, dest, 0, 0, count, max}

typedef struct dt_cli {
    const char *cmd;        // "generate"
    const char *synopsis;   // what follows "deltatune CMD" in the usage line
    const char *about;      // a paragraph printed under the usage line by --help (may be NULL)
    const dt_opt *opts;
    int n_opts;
    const char *positional; // help for the positional arguments (NULL: none are accepted)
} dt_cli;

// Parses argv[1..argc). Positional arguments (when c->positional) are collected into pos (at most
// max_pos; *n_pos filled). Returns -1 when the command should go on, else the exit code: 0 after --help,
// 2 after a message on stderr about a bad option or value.
int dt_cli_parse(const dt_cli *c, int argc, char **argv, char **pos, int *n_pos, int max_pos);
// The usage line and the option list (what --help prints).
void dt_cli_usage(const dt_cli *c, FILE *f);
// Prints "deltatune CMD: <message>" and the usage line to stderr; returns 2.
int dt_cli_bad(const dt_cli *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
