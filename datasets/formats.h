// The JSONL record formats and how one record becomes token ids and labels (-100 = not trained).
//
//   text        {"text"}                          BOS (when the tokenizer adds one) + text + EOS, all trained
//   completion  {"prompt","completion"}           BOS + prompt (not trained) + completion + EOS (trained)
//   alpaca      {"instruction","input","output"}  the Stanford Alpaca prompt (with or without input, not
//                                                 trained) + output + EOS (trained); "input" is optional
//   chat        {"messages":[{"role","content"}]} rendered by a chat template (chat_template.h)
//   sharegpt    {"conversations":[{"from","value"}]} the same, with from human/gpt/system (also
//                                                 user/assistant) read as user/assistant/system
//   tokens      {"input_ids":[..],"labels":[..]}  used as they are; labels optional (all trained),
//                                                 -100 = not trained
#ifndef DT_FORMATS_H
#define DT_FORMATS_H
#include <jansson.h>
#include <stdbool.h>
#include "datasets/chat_template.h"
#include "datasets/segments.h"

typedef enum {
    DT_FMT_AUTO, DT_FMT_TEXT, DT_FMT_COMPLETION, DT_FMT_ALPACA, DT_FMT_CHAT, DT_FMT_SHAREGPT, DT_FMT_TOKENS,
    DT_FMT_COUNT
} dt_rec_format;

#define DT_FORMAT_LIST "text {\"text\"}, completion {\"prompt\",\"completion\"}, alpaca " \
    "{\"instruction\",\"input\",\"output\"}, chat {\"messages\":[{\"role\",\"content\"}]}, sharegpt " \
    "{\"conversations\":[{\"from\",\"value\"}]}, tokens {\"input_ids\",\"labels\"}"

const char *dt_rec_format_name(dt_rec_format f);
// "auto" or one of the names above; anything else is DT_EINPUT listing the formats.
int dt_rec_format_parse(dt_ctx *ctx, const char *name, dt_rec_format *out);
// The format of a record from its keys; DT_EINPUT listing the formats when none fits.
int dt_rec_format_detect(dt_ctx *ctx, const json_t *rec, dt_rec_format *out);
// The text formats need a tokenizer; chat and sharegpt also a chat template.
static inline bool dt_rec_format_needs_template(dt_rec_format f) { return f == DT_FMT_CHAT || f == DT_FMT_SHAREGPT; }

// Per-load state for encoding records; scratch buffers are reused from record to record.
typedef struct {
    const dt_tokenizer *tok;   // NULL only when every file is pre-tokenized
    dt_seg_encoder enc;        // valid when tok
    dt_chat_fmt tmpl;      // valid when have_tmpl
    bool have_tmpl;
    bool train_on_prompt;
    int32_t vocab;             // ids must be below this (0: unchecked, no tokenizer)
    bool vocab_of_model;       // vocab is the model's vocab_size (no tokenizer), for the message
    dt_segs segs;
    dt_message *msgs;
    size_t msgs_cap;
} dt_record_encoder;

int  dt_record_encoder_init(dt_ctx *ctx, dt_record_encoder *r, const dt_tokenizer *tok, bool train_on_prompt);
void dt_record_encoder_free(dt_record_encoder *r);
// Appends one record's ids and labels. Errors are DT_EINPUT naming the key and what was expected, without
// the file:line (the caller adds it).
int dt_record_encode(dt_ctx *ctx, dt_record_encoder *r, dt_rec_format f, const json_t *rec, dt_ids *ids,
                     dt_ids *labels);

#endif
