// The documentation stays true: every ```sh block of README.md and docs/*.md is run (in order, from the
// project root, after removing runs/demo so the quickstart starts from a fresh clone's state) and must
// exit 0, unless the line before it is "<!-- not run: REASON -->"; any other block that is code
// (python, ...) must carry that mark. In docs/data-formats.md every ```json example is fed through
// `deltatune preview` and must print exactly the ```text block under it.
#include <ctype.h>
#include <dirent.h>
#include <sys/wait.h>
#include "tests/file_util.h"
#include "tests/test_util.h"

static char demo_gen[512]; // the demo model writer in the build folder this test was built in

typedef struct { char lang[16]; char *body; bool not_run; int line; } block;

// The fenced blocks of a markdown file (malloc'd bodies, with the fence's indentation removed).
static int read_blocks(const char *path, block *out, int max) {
    char *s = tf_slurp(path, NULL);
    if (!s) return -1;
    int n = 0, lineno = 0;
    char prev[256] = "";
    block *cur = NULL;
    size_t indent = 0, len = 0, cap = 0;
    for (char *line = s, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        lineno++;
        if (!*line && !cur) continue; // a blank line between a "not run" mark and its block is allowed
        size_t sp = strspn(line, " ");
        if (!strncmp(line + sp, "```", 3)) {
            if (cur) { cur = NULL; n++; }
            else if (n < max) {
                cur = &out[n];
                memset(cur, 0, sizeof *cur);
                snprintf(cur->lang, sizeof cur->lang, "%s", line + sp + 3);
                cur->not_run = strstr(prev, "<!-- not run:") != NULL;
                cur->line = lineno;
                indent = sp;
                len = 0;
                cap = 1024;
                cur->body = calloc(1, cap);
            }
        } else if (cur) {
            const char *text = strlen(line) >= indent ? line + indent : "";
            size_t k = strlen(text);
            while (len + k + 2 > cap) cur->body = realloc(cur->body, cap *= 2);
            memcpy(cur->body + len, text, k);
            len += k;
            cur->body[len++] = '\n';
            cur->body[len] = 0;
        }
        snprintf(prev, sizeof prev, "%s", line);
    }
    free(s);
    return n;
}

// This run's own folder for the scripts and their output: fixed /tmp names were shared with every other
// checkout's `make test` on the machine, and a concurrent run overwrote the script or its output (a block
// failing with exit 126 or 127 and no output).
static char tmp[64];

// Runs a shell script from the project root; returns its exit status, output into *log.
static int run_sh(const char *script, char **log) {
    char *fixed = malloc(strlen(script) * 2 + 1024), *w = fixed;
    // The quickstart names build/demo/make_demo_model; use this build's.
    for (const char *p = script; *p;) {
        if (!strncmp(p, "build/demo/make_demo_model", 26)) { w += sprintf(w, "%s", demo_gen); p += 26; }
        else *w++ = *p++;
    }
    *w = 0;
    char sh_path[128], out_path[128], cmd[400];
    snprintf(sh_path, sizeof sh_path, "%s/block.sh", tmp);
    snprintf(out_path, sizeof out_path, "%s/out.txt", tmp);
    tf_write(sh_path, fixed, strlen(fixed));
    free(fixed);
    snprintf(cmd, sizeof cmd, "sh -e %s >%s 2>&1", sh_path, out_path);
    int st = system(cmd);
    *log = tf_slurp(out_path, NULL);
    return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

// The text without blank lines and trailing spaces, for comparing preview's output with the docs.
static void squeeze(const char *in, char *out, size_t n) {
    size_t w = 0;
    bool line_start = true;
    for (const char *p = in; *p && w + 1 < n; p++) {
        if (*p == '\n' && line_start) continue;
        out[w++] = *p;
        line_start = *p == '\n';
    }
    while (w > 0 && isspace((unsigned char)out[w - 1])) w--;
    out[w] = 0;
}

static void check_file(const char *path) {
    static block b[128];
    int n = read_blocks(path, b, 128);
    char name[4400];
    snprintf(name, sizeof name, "docs_read_%s", path);
    TEST_CHECK(name, n >= 0, "cannot read %s", path);
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof name, "docs_%s:%d_%s", path, b[i].line, b[i].lang[0] ? b[i].lang : "plain");
        if (b[i].not_run) continue;
        if (!strcmp(b[i].lang, "sh")) {
            char *log = NULL;
            int rc = run_sh(b[i].body, &log);
            TEST_CHECK(name, rc == 0, "exit %d:\n%s\noutput:\n%s", rc, b[i].body, log ? log : "");
            free(log);
        } else if (!strcmp(b[i].lang, "json")) {
            // A data example: preview prints a header line, then the example as the text block under it shows.
            bool has_text = i + 1 < n && !strcmp(b[i + 1].lang, "text");
            char ex_path[128], cmd[400];
            snprintf(ex_path, sizeof ex_path, "%s/example.jsonl", tmp);
            tf_write(ex_path, b[i].body, strlen(b[i].body));
            snprintf(cmd, sizeof cmd, "./deltatune preview demo/demo.yaml data.train=%s data.val=null "
                     "data.format=auto data.max_seq_len=512 -n 1", ex_path);
            char *log = NULL;
            int rc = run_sh(cmd, &log);
            const char *body = log ? strchr(log, '\n') : NULL;
            static char got[1 << 16], want[1 << 16];
            squeeze(body ? body + 1 : "", got, sizeof got);
            squeeze(has_text ? b[i + 1].body : "", want, sizeof want);
            TEST_CHECK(name, rc == 0 && has_text && !strcmp(got, want), "exit %d, preview printed:\n%s\nthe docs show:\n%s", rc,
                       got, want);
            free(log);
        } else if (strcmp(b[i].lang, "text") && b[i].lang[0]) {
            TEST_FAIL(name, "a %s block that is not run needs a '<!-- not run: REASON -->' line before it", b[i].lang);
        }
    }
    for (int i = 0; i < n; i++) free(b[i].body);
}

int main(int argc, char **argv) {
    (void)argc;
    const char *slash = strstr(argv[0], "/tests/");
    snprintf(demo_gen, sizeof demo_gen, "%.*s/demo/make_demo_model", slash ? (int)(slash - argv[0]) : 5, slash ? argv[0] : "build");
    if (access("./deltatune", X_OK) || access(demo_gen, X_OK)) {
        TEST_FAIL("docs_binaries", "run from the project root after make (./deltatune, %s)", demo_gen);
        TEST_EXIT();
    }
    snprintf(tmp, sizeof tmp, "/tmp/dt_docs_XXXXXX");
    if (!mkdtemp(tmp)) { TEST_FAIL("docs_tmp", "mkdtemp"); TEST_EXIT(); }
    tf_rm_tree("runs/demo"); // the state of a fresh clone
    check_file("README.md");
    // docs/*.md in name order.
    char names[32][256];
    int n = 0;
    DIR *d = opendir("docs");
    for (struct dirent *e; d && (e = readdir(d)) && n < 32;)
        if (strlen(e->d_name) > 3 && !strcmp(e->d_name + strlen(e->d_name) - 3, ".md"))
            snprintf(names[n++], sizeof names[0], "docs/%.250s", e->d_name);
    if (d) closedir(d);
    qsort(names, (size_t)n, sizeof names[0], (int (*)(const void *, const void *))strcmp);
    for (int i = 0; i < n; i++) check_file(names[i]);
    TEST_CHECK("docs_found", n >= 2, "%d files in docs/", n);
    tf_rm_tree(tmp);
    TEST_EXIT();
}
