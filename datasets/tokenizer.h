// Tokenizers: Hugging Face tokenizer.json (byte-level BPE as in Qwen/Llama 3/GPT-2, SentencePiece-style
// BPE with byte fallback as in Llama 2/Mistral) and llama2.c's tokenizer.bin.
// A loaded tokenizer is read-only except for an internal, lock-protected word cache, so one tokenizer
// may encode and decode from several threads at once.
#ifndef DT_TOKENIZER_H
#define DT_TOKENIZER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "autograd/context.h"

typedef struct dt_tokenizer dt_tokenizer;
typedef struct dt_gguf_file dt_gguf_file; // models/gguf.h

// Growable id array; start from {0} and free with dt_ids_free.
typedef struct { int32_t *v; size_t n, cap; } dt_ids;
void dt_ids_free(dt_ids *ids);
int  dt_ids_push(dt_ctx *ctx, dt_ids *ids, int32_t id);
// Makes room for at least `extra` more ids without changing n.
int  dt_ids_reserve(dt_ctx *ctx, dt_ids *ids, size_t extra);
// Appends n ids.
int  dt_ids_append(dt_ctx *ctx, dt_ids *ids, const int32_t *src, size_t n);
// Empties the array but keeps its memory.
static inline void dt_ids_clear(dt_ids *ids) { ids->n = 0; }

// path: a folder with tokenizer.json (+ optional tokenizer_config.json), a tokenizer.json file (a
// tokenizer_config.json beside a file named tokenizer.json is read too), a llama2.c tokenizer.bin
// (or a folder holding one and no tokenizer.json), or a GGUF file, whose tokenizer.ggml.* metadata is
// read (see dt_tokenizer_load_gguf).
int  dt_tokenizer_load(dt_ctx *ctx, const char *path, dt_tokenizer **out);
// The tokenizer of a GGUF file's tokenizer.ggml.* metadata, as llama.cpp reads it (datasets/tokenizer_gguf.c):
// tokenizer.ggml.model "gpt2" (byte-level BPE; tokenizer.ggml.pre llama-bpe, llama3, qwen2, smollm or
// gpt-2) or "llama" (SentencePiece-style BPE by token score, byte fallback), control and user-defined
// tokens as added tokens, bos/eos/pad/unk/eot ids, add_bos_token/add_eos_token, tokenizer.chat_template.
// A file without tokenizer.ggml.model, bad metadata or another model/pre is DT_EINPUT/DT_EUNSUPPORTED
// naming file and key. The file may be closed afterwards.
int  dt_tokenizer_load_gguf(dt_ctx *ctx, const dt_gguf_file *f, dt_tokenizer **out);
void dt_tokenizer_free(dt_tokenizer *tok);
// Appends the ids of text (UTF-8, len bytes, NUL bytes allowed) to ids. add_special: add BOS/EOS as the
// post-processor/tokenizer_config says. Special/added tokens spelled in the text are always matched (as
// HF does with add_special_tokens either way); llama2.c tokenizers have none. Invalid UTF-8 is DT_EINPUT.
int  dt_tokenizer_encode(dt_ctx *ctx, const dt_tokenizer *tok, const char *text, size_t len, bool add_special,
                         dt_ids *ids);
// *out is malloc'd and NUL-terminated; *out_len (may be NULL) excludes the NUL. An id outside the
// vocabulary is DT_EINPUT.
int  dt_tokenizer_decode(dt_ctx *ctx, const dt_tokenizer *tok, const int32_t *ids, size_t n, bool skip_special,
                         char **out, size_t *out_len);
int32_t dt_tokenizer_token_to_id(const dt_tokenizer *tok, const char *token); // -1 when absent
const char *dt_tokenizer_id_to_token(const dt_tokenizer *tok, int32_t id);    // NULL when out of range
int32_t dt_tokenizer_bos_id(const dt_tokenizer *tok); // -1 when none
int32_t dt_tokenizer_eos_id(const dt_tokenizer *tok); // -1 when none
int32_t dt_tokenizer_pad_id(const dt_tokenizer *tok); // -1 when none
int32_t dt_tokenizer_vocab_size(const dt_tokenizer *tok); // including added tokens: 1 + the largest id
int32_t dt_tokenizer_eot_id(const dt_tokenizer *tok); // a GGUF's end-of-turn token (eot_token_id), else -1
const char *dt_tokenizer_chat_template(const dt_tokenizer *tok); // tokenizer_config.json's chat_template or NULL
// Where the chat template is read, for messages: "tokenizer_config.json: chat_template", or
// "tokenizer.chat_template" (a GGUF's key).
const char *dt_tokenizer_chat_template_origin(const dt_tokenizer *tok);
const char *dt_tokenizer_path(const dt_tokenizer *tok); // the path it was loaded from
bool dt_tokenizer_from_gguf(const dt_tokenizer *tok);   // read from a GGUF's tokenizer.ggml.* metadata
bool dt_tokenizer_is_special(const dt_tokenizer *tok, int32_t id);

// A tokenizer read from a GGUF file (dt_tokenizer_from_gguf) as the Hugging Face files of a model folder
// (datasets/tokenizer_hf_write.c): text[i] is the file DT_TOKENIZER_HF_NAMES[i] (tokenizer.json,
// tokenizer_config.json with bos/eos/pad/unk, add_bos_token/add_eos_token and the chat template,
// special_tokens_map.json), malloc'd, len[i] bytes. Loading the files back gives the same ids.
#define DT_TOKENIZER_HF_N 3
extern const char *const DT_TOKENIZER_HF_NAMES[DT_TOKENIZER_HF_N];
typedef struct { char *text[DT_TOKENIZER_HF_N]; size_t len[DT_TOKENIZER_HF_N]; } dt_tokenizer_hf;
// DT_EINPUT for a tokenizer not read from a GGUF file.
int  dt_tokenizer_hf_json(dt_ctx *ctx, const dt_tokenizer *tok, dt_tokenizer_hf *out);
// Writes the files into the folder dir, each atomically (models/atomic_file.h).
int  dt_tokenizer_hf_write(dt_ctx *ctx, const dt_tokenizer_hf *hf, const char *dir);
void dt_tokenizer_hf_free(dt_tokenizer_hf *hf);

#endif
