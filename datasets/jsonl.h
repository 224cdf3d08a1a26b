// Reads a JSON Lines file one line at a time, plain or gzip-compressed (zlib's gzread passes plain files
// through unchanged, so both take one path). Lines may be of any length: the line buffer grows as needed.
#ifndef DT_JSONL_H
#define DT_JSONL_H
#include <stddef.h>
#include <stdint.h>
#include "autograd/context.h"

typedef struct dt_jsonl dt_jsonl;

// A missing or unreadable file is DT_EINPUT naming the path.
int dt_jsonl_open(dt_ctx *ctx, const char *path, dt_jsonl **out);
// The next line that is not blank: *line is NUL-terminated (it may also hold NUL bytes; *len counts them)
// without its "\n" or "\r\n", valid until the next call; *lineno is 1-based. At the end *line is NULL.
// Corrupt or truncated gzip data is DT_EINPUT naming the file and line.
int dt_jsonl_next(dt_ctx *ctx, dt_jsonl *r, const char **line, size_t *len, int64_t *lineno);
void dt_jsonl_close(dt_jsonl *r);

// Decodes a line that holds exactly one JSON string (white space around it allowed) into *buf, grown as
// needed (*cap bytes; free() it when done), NUL-terminated; *len counts the bytes without the NUL (\u0000
// escapes become NUL bytes). Reads the string in place, without building a JSON value: `deltatune
// tokenize` spent a third of its time in a general parser. DT_EINPUT "expected a JSON string" otherwise,
// with the reason when the line starts a string that goes wrong ("byte 7: unpaired surrogate in a \u
// escape") or has more after it.
int dt_json_line_string(dt_ctx *ctx, const char *line, size_t n, char **buf, size_t *cap, size_t *len);

#endif
