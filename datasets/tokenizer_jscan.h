// A minimal JSON scanner for the two huge members of tokenizer.json (model.vocab and model.merges):
// building jansson objects for them costs more than the 0.5 s load budget, so they are read in place.
// Everything else in the file is handed to jansson piece by piece.
#ifndef DT_TOKENIZER_JSCAN_H
#define DT_TOKENIZER_JSCAN_H
#include "datasets/tokenizer_impl.h"

typedef struct {
    const char *p, *end; // the unread part
    const char *base;    // start of the file, for byte offsets in messages
    const char *path;
} tk_js;

// Skips white space and returns the next byte (0 at the end) without consuming it.
char tk_js_peek(tk_js *js);
// Consumes byte c (after white space) or fails naming what was expected.
int  tk_js_expect(dt_ctx *ctx, tk_js *js, char c, const char *what);
// Reads a string into out (replacing its contents, NUL-terminated, escapes decoded).
int  tk_js_string(dt_ctx *ctx, tk_js *js, tk_buf *out);
int  tk_js_int(dt_ctx *ctx, tk_js *js, int64_t *v);
// Skips one value of any type.
int  tk_js_skip(dt_ctx *ctx, tk_js *js);
// After '{' or '[' has been read: true while another member/element follows (consumes the ',').
int  tk_js_more(dt_ctx *ctx, tk_js *js, char close, bool *more, bool first);

#endif
