// A fine-tuning dataset: every example of a list of JSONL files (plain or .gz; formats in formats.h,
// chat templates in chat_template.h) tokenised into one flat buffer of ids and labels with per-example
// offsets. The buffers grow by doubling while loading; there is no allocation per example.
//
// Labels follow Hugging Face's convention: aligned with input_ids, -100 = not trained, and the loss at
// position t is scored against labels[t+1]. The first label of every example is set to -100, because
// when examples are packed into one row that label would make the previous example's last token predict
// this example's first token.
#ifndef DT_DATASET_H
#define DT_DATASET_H
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include "autograd/context.h"
#include "datasets/tokenizer.h"

typedef struct dt_dataset dt_dataset;

typedef struct dt_dataset_opts {
    const char *format;        // NULL or "auto": each file's format from its first record; or a format name
                               // (text, completion, alpaca, chat, sharegpt, tokens: formats.h)
    const char *chat_template; // NULL or "auto": chosen from the tokenizer's chat_template; a built-in name
                               // (chat_template.h); "none": conversations are an error
    bool train_on_prompt;      // train on every token, not only on answers
    bool skip_bad_lines;       // skip malformed lines (counted, one warning per file) instead of failing
    int64_t max_seq_len;       // longer examples are cut to this many tokens (counted); 0 = no limit
    int32_t model_vocab;       // without a tokenizer: token ids must be below this (the model's vocab_size),
                               // checked per line as the file loads; 0 = unchecked
} dt_dataset_opts;

typedef struct dt_dataset_stats {
    size_t n_examples;      // examples kept
    int64_t n_tokens;       // tokens kept (after truncation)
    int64_t n_trained;      // of which trained (label != -100)
    int64_t max_len;        // the longest example
    size_t n_truncated;     // examples cut to max_seq_len
    size_t n_bad_lines;     // lines skipped under skip_bad_lines
    size_t n_untrained;     // examples dropped because no token of theirs was trained
} dt_dataset_stats;

// tok may be NULL only when every file is pre-tokenized ("tokens" format). Failures name the file and
// line: "data/train.jsonl:17: key 'messages': expected an array of {role, content} objects". An empty
// file, an unknown format and a dataset with no usable example are DT_EINPUT.
int  dt_dataset_load(dt_ctx *ctx, const char *const *paths, size_t npaths, const dt_tokenizer *tok,
                     const dt_dataset_opts *opts, dt_dataset **out);
void dt_dataset_free(dt_dataset *ds);

size_t dt_dataset_size(const dt_dataset *ds);
const dt_dataset_stats *dt_dataset_get_stats(const dt_dataset *ds);
int64_t dt_dataset_max_seq_len(const dt_dataset *ds); // as loaded (0 = no limit)
// The id used for padding: the tokenizer's pad token, else its EOS, else 0.
int32_t dt_dataset_pad_id(const dt_dataset *ds);
// The chat template used ("chatml", ...), or NULL when no file held conversations.
const char *dt_dataset_chat_template(const dt_dataset *ds);
// Example i: its length, and its ids and labels (len each) inside the flat buffers.
int64_t dt_dataset_example(const dt_dataset *ds, size_t i, const int32_t **ids, const int32_t **labels);
// Example i's first label as encoded, before the blanking above (-100 when it was not trained): with
// prompt tuning the last virtual token predicts it, as PEFT's labels do (PeftModelForCausalLM puts the
// virtual tokens' -100 labels in front of the row's labels, so labels[0] is scored); without virtual
// tokens no position predicts it. Unpacked batches (packing.h) and `deltatune eval` put it back.
int32_t dt_dataset_first_label(const dt_dataset *ds, size_t i);
// The file example i came from; *line is its 1-based line and *truncated whether it was cut.
const char *dt_dataset_example_source(const dt_dataset *ds, size_t i, int64_t *line, bool *truncated);

// Splits the example indices into training and validation sets: round(val_frac * n) examples (at least
// one when val_frac > 0) drawn by seed go to validation. Both lists are ascending and malloc'd.
int dt_dataset_split(dt_ctx *ctx, const dt_dataset *ds, double val_frac, uint64_t seed, size_t **train,
                     size_t *n_train, size_t **val, size_t *n_val);

// Prints example i as the model sees it (`deltatune preview`): a summary line with its source and
// token counts, then the decoded text with the trained parts inside «…».
int dt_dataset_render_example(dt_ctx *ctx, const dt_dataset *ds, const dt_tokenizer *tok, size_t i, FILE *out);
// The same for a terminal when ansi is true: untrained text dim, trained text green, no «…».
int dt_dataset_render_example_styled(dt_ctx *ctx, const dt_dataset *ds, const dt_tokenizer *tok, size_t i,
                                     bool ansi, FILE *out);

#endif
