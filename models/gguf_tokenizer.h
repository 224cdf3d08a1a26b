// llama.cpp tokenizer metadata (tokenizer.ggml.*) from a Hugging Face tokenizer folder, written the way
// llama.cpp's convert_hf_to_gguf.py writes it, so that llama.cpp tokenizes like the original.
//
// Two kinds of tokenizer.json are handled (both "model": {"type": "BPE"}):
//  - byte-level BPE (Llama 3, Qwen, GPT-2, SmolLM): tokenizer.ggml.model "gpt2", with merges;
//  - SentencePiece-style BPE over U+2581 with byte fallback (Llama 2, Mistral, TinyLlama):
//    tokenizer.ggml.model "llama", tokenizer.ggml.pre "default", with scores and no merges.
// tokenizer.ggml.pre: the converter identifies a byte-level pre-tokenizer by hashing the token ids of a
// test string; that hash depends on the split regex, on whether a BOS token is added, and on the
// vocabulary. We match the split regex instead (checked against the converter's hash table with the
// Llama 3 and Qwen3 tokenizers):
//   Llama 3 regex (digits in groups of 1-3): "llama-bpe"
//   Qwen2 regex (single digits):             "qwen2"
//   Digits(individual) + ByteLevel(regex):   "smollm"
//   plain ByteLevel(regex):                  "gpt-2"
// Anything else is DT_EUNSUPPORTED unless opts->pre names the pre-tokenizer.
// llama.cpp adds a BOS for "llama-bpe" unless told otherwise, so when the tokenizer.json adds none (as
// the Llama 3 fixture's does not) we write tokenizer.ggml.add_bos_token = false. (The converter would
// call such a tokenizer "smaug-bpe", whose hash it matches: same regex in llama.cpp, but without the
// ignore_merges that the Llama 3 tokenizer.json asks for.)
// Scores (SentencePiece kind): the converter writes -1000 for every token when it only has a
// tokenizer.json, which makes llama.cpp merge left to right. We write instead -(rank of the first merge
// that produces the token), so llama.cpp's highest-score-first merging follows the merge order; tokens no
// merge produces get -(n_merges + id), bytes 0, added tokens -1000.
#ifndef DT_GGUF_TOKENIZER_H
#define DT_GGUF_TOKENIZER_H
#include <stdint.h>
#include "autograd/context.h"
#include "models/gguf_write.h"

// The split regexes of the byte-level pre-tokenizers named "llama-bpe" and "qwen2", as they appear in
// tokenizer.json (datasets/tokenizer_gguf.c builds these pre-tokenizers back from the names).
#define DT_GGUF_PRE_LLAMA3_REGEX \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define DT_GGUF_PRE_QWEN2_REGEX \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

typedef struct dt_gguf_tok_opts {
    int64_t n_vocab;  // rows of the model's token embedding; 0: config.json's vocab_size, else the tokenizer's
    const char *pre;  // tokenizer.ggml.pre to write instead of detecting it; NULL to detect
} dt_gguf_tok_opts;

// Reads DIR/tokenizer.json (required), and when present DIR/tokenizer_config.json (special tokens,
// add_bos/add_eos, chat template), DIR/config.json (vocab_size, *_token_id) and DIR/chat_template.jinja,
// and sets the tokenizer.* keys on w. opts may be NULL.
int dt_gguf_add_tokenizer(dt_ctx *ctx, dt_gguf_writer *w, const char *dir, const dt_gguf_tok_opts *opts);

#endif
