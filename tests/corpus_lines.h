// Test corpora: a file of JSON strings, one per line (tests/data/tokenizer/corpus.jsonl), read into a list
// of byte strings (NULs allowed, so each keeps its length). Used by the tokenizer tests.
#ifndef DT_TEST_CORPUS_LINES_H
#define DT_TEST_CORPUS_LINES_H
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct { char **s; size_t *len; size_t n; } lines;

// Appends a copy of s[0..n) (NUL-terminated).
static inline void add_line(lines *l, const char *s, size_t n) {
    l->s = realloc(l->s, (l->n + 1) * sizeof *l->s);
    l->len = realloc(l->len, (l->n + 1) * sizeof *l->len);
    l->s[l->n] = malloc(n + 1);
    memcpy(l->s[l->n], s, n);
    l->s[l->n][n] = 0;
    l->len[l->n++] = n;
}

// Appends the file's lines that are JSON strings; -1 when it cannot be opened.
static inline int read_corpus(const char *path, lines *out) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        json_t *j = json_loads(line, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        if (json_is_string(j)) add_line(out, json_string_value(j), json_string_length(j));
        json_decref(j);
    }
    free(line);
    fclose(f);
    return 0;
}

static inline void free_lines(lines *l) {
    for (size_t i = 0; i < l->n; i++) free(l->s[i]);
    free(l->s);
    free(l->len);
    memset(l, 0, sizeof *l);
}

#endif
