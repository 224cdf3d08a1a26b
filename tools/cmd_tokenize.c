// `deltatune tokenize --tokenizer DIR --json-lines FILE [--special]`: FILE holds one JSON string per line;
// prints the ids of each as a compact JSON array per line (blank lines are skipped, as the reference does).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "datasets/jsonl.h"
#include "datasets/tokenizer.h"
#include "tools/cli_opts.h"
#include "tools/commands.h"

// Formats ids as a compact JSON array line into buf (room for 12 bytes per id + 3).
static size_t format_ids(const dt_ids *ids, char *buf) {
    char *p = buf;
    *p++ = '[';
    for (size_t i = 0; i < ids->n; i++) {
        // A hand-rolled itoa: printf per id would dominate the run time.
        char tmp[12];
        int32_t v = ids->v[i];
        uint32_t u = v < 0 ? (uint32_t)0 - (uint32_t)v : (uint32_t)v;
        int k = 0;
        do tmp[k++] = (char)('0' + u % 10); while (u /= 10);
        if (v < 0) tmp[k++] = '-';
        if (i) *p++ = ',';
        while (k) *p++ = tmp[--k];
    }
    *p++ = ']';
    *p++ = '\n';
    return (size_t)(p - buf);
}

int cmd_tokenize(int argc, char **argv) {
    const char *tok_path = NULL, *file = NULL;
    bool special = false;
    const dt_opt opts[] = {
        DT_O_STR("--tokenizer", "PATH", "a folder with tokenizer.json (+ tokenizer_config.json), a tokenizer.json, a llama2.c tokenizer.bin, or a .gguf (its tokenizer.ggml.* metadata)", &tok_path),
        DT_O_STR("--json-lines", "FILE", "one JSON string per line; prints one JSON array of ids per line", &file),
        DT_O_FLAG("--special", "add BOS/EOS as the tokenizer's post-processor says", &special),
    };
    const dt_cli cli = {"tokenize", "--tokenizer PATH --json-lines FILE [--special]",
                        "Prints the token ids of each JSON-string line of FILE (blank lines are skipped).",
                        opts, (int)(sizeof opts / sizeof opts[0]), NULL};
    int st = dt_cli_parse(&cli, argc, argv, NULL, NULL, 0);
    if (st >= 0) return st;
    if (!tok_path || !file) return dt_cli_bad(&cli, "--tokenizer and --json-lines are required");
    dt_ctx ctx;
    dt_cli_ctx_init(&ctx);
    dt_tokenizer *tok;
    int rc = dt_tokenizer_load(&ctx, tok_path, &tok);
    if (rc) return dt_cli_fail("tokenize", &ctx, rc);
    FILE *in = fopen(file, "rb");
    if (!in) {
        dt_tokenizer_free(tok);
        fprintf(stderr, "deltatune tokenize: %s: cannot open\n", file);
        return 2;
    }
    static char outbuf[1 << 16];
    setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    ssize_t len;
    dt_ids ids = {0};
    char *text = NULL, *str = NULL; // the output line; the decoded input string
    size_t text_cap = 0, str_cap = 0, str_len = 0;
    int status = 0;
    while ((len = getline(&line, &cap, in)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        // A UTF-8 byte-order mark some editors write at the start of the file is not part of the JSON
        // (the data loader skips it too: jsonl.c).
        const char *l = line;
        if (lineno == 1 && len >= 3 && !memcmp(l, "\xEF\xBB\xBF", 3)) l += 3, len -= 3;
        if (len == 0) continue;
        rc = dt_json_line_string(&ctx, l, (size_t)len, &str, &str_cap, &str_len);
        if (rc) {
            dt_prefix(&ctx, rc, "%s:%zu: ", file, lineno);
            status = dt_cli_fail("tokenize", &ctx, rc);
            break;
        }
        ids.n = 0;
        rc = dt_tokenizer_encode(&ctx, tok, str, str_len, special, &ids);
        if (rc) {
            dt_prefix(&ctx, rc, "%s:%zu: ", file, lineno);
            status = dt_cli_fail("tokenize", &ctx, rc);
            break;
        }
        if (text_cap < 12 * ids.n + 3) {
            free(text);
            text_cap = 12 * ids.n + 3;
            if (!(text = malloc(text_cap))) {
                fprintf(stderr, "deltatune tokenize: out of memory\n");
                status = 1;
                break;
            }
        }
        fwrite(text, 1, format_ids(&ids, text), stdout);
    }
    if (!status && ferror(in)) {
        fprintf(stderr, "deltatune tokenize: %s: read error\n", file);
        status = 1;
    }
    if (fflush(stdout) != 0 && !status) {
        fprintf(stderr, "deltatune tokenize: cannot write the output\n");
        status = 1;
    }
    free(line);
    free(text);
    free(str);
    fclose(in);
    dt_ids_free(&ids);
    dt_tokenizer_free(tok);
    return status;
}
