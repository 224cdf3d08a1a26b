// A rendered example as a list of segments, each either text or one literal token id, each trained or
// not, and the segment-wise tokenisation that turns it into ids and labels.
//
// Masks are built the way torchtune builds them: every segment is tokenised on its own (prompt parts get
// label -100, answer parts get labels = ids) and the pieces are concatenated, instead of tokenising the
// whole rendered string and mapping character offsets back. Adjacent text segments with the same flag are
// merged first, so a cut falls only where training switches on or off; there the two token sequences can
// differ from the whole-string tokenisation (e.g. "assistant\n" + "\nHi" gives two "\n" tokens where the
// whole string has one "\n\n" token), which is the same trade torchtune makes.
#ifndef DT_SEGMENTS_H
#define DT_SEGMENTS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "autograd/context.h"
#include "datasets/tokenizer.h"

typedef struct {
    size_t off, len; // text: bytes [off, off+len) of dt_segs.text
    int32_t token;   // >= 0: this segment is that one token and has no text
    bool trained;
} dt_seg;

typedef struct {
    char *text;
    size_t len, cap;
    dt_seg *v;
    size_t n, vcap;
} dt_segs;

void dt_segs_clear(dt_segs *s);
void dt_segs_free(dt_segs *s);
// Appends text (merged into the previous segment when that is text with the same flag). Empty text is a no-op.
int dt_segs_text(dt_ctx *ctx, dt_segs *s, const char *text, size_t len, bool trained);
static inline int dt_segs_str(dt_ctx *ctx, dt_segs *s, const char *text, bool trained) {
    size_t n = 0;
    while (text[n]) n++;
    return dt_segs_text(ctx, s, text, n, trained);
}
// Appends one literal token (BOS, EOS): works also for tokenizers that do not match special tokens in text.
int dt_segs_token(dt_ctx *ctx, dt_segs *s, int32_t id, bool trained);

// What segment-wise encoding needs to know about a tokenizer, measured once.
typedef struct {
    const dt_tokenizer *tok;
    int32_t bos, eos;    // -1 when none
    bool add_bos;        // the tokenizer puts BOS in front when asked to add special tokens
    dt_ids nl;           // the ids of "\n" alone, for continuation encoding
    dt_ids tmp;
    char *buf;           // "\n" + segment text
    size_t buf_cap;
} dt_seg_encoder;

int  dt_seg_encoder_init(dt_ctx *ctx, dt_seg_encoder *e, const dt_tokenizer *tok);
void dt_seg_encoder_free(dt_seg_encoder *e);
// Tokenises the segments and appends to ids and labels (label = id for trained tokens, -100 otherwise;
// train_all marks everything trained). A text segment that continues text (the token before it is not a
// special token) is encoded as if preceded by "\n", whose ids are then dropped: tokenizers that mark the
// start of every piece with a space (SentencePiece's "▁" prefix in Llama 2/Mistral) would otherwise put a
// space at every cut that the whole string does not have. When the "\n" merges with the text (byte-level
// BPE with text starting in a newline) the segment is encoded plainly instead.
int dt_segs_encode(dt_ctx *ctx, dt_seg_encoder *e, const dt_segs *s, bool train_all, dt_ids *ids, dt_ids *labels);

#endif
