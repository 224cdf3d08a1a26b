// Streaming detokenization for generation: each new token costs one decode of a few ids, not of the
// whole text so far. The text of ids[prefix..] is decoded and compared with that of ids[prefix..read),
// which was printed already; what it adds is new (the method of Hugging Face's DecodeStream). Decoding a
// window rather than the single token keeps what depends on neighbours right: SentencePiece's leading
// space, byte-fallback pieces of one UTF-8 character, merged spaces. Text that ends inside a UTF-8
// character (or in U+FFFD, which some decoders write for an incomplete one) waits for the next token.
#ifndef DT_DECODE_STREAM_H
#define DT_DECODE_STREAM_H
#include <stddef.h>
#include <stdint.h>
#include "datasets/tokenizer.h"

typedef struct dt_decode_stream {
    size_t prefix, read;    // ids[prefix..read) is context already printed; ids[read..) is not yet
    int64_t ids_decoded;    // ids passed to the decoder so far (stays linear in the tokens generated)
    char *text;             // scratch: the last decode
} dt_decode_stream;

// Starts after `context` ids that are already shown (a prompt); the last of them is kept as context so
// the first new token gets its leading space.
void dt_decode_stream_init(dt_decode_stream *s, size_t context);
// ids (n) are every id so far. *out (len *out_len, not NUL-terminated, valid until the next call) is the
// text to print now, possibly empty.
int dt_decode_stream_next(dt_ctx *ctx, dt_decode_stream *s, const dt_tokenizer *tok, const int32_t *ids, size_t n,
                          const char **out, size_t *out_len);
// The text still held back at the end of generation (an incomplete UTF-8 tail), printed as it is.
int dt_decode_stream_flush(dt_ctx *ctx, dt_decode_stream *s, const dt_tokenizer *tok, const int32_t *ids, size_t n,
                           const char **out, size_t *out_len);
void dt_decode_stream_free(dt_decode_stream *s);

#endif
