// Built-in chat templates, rendered exactly as the models' Jinja chat templates render a conversation
// (add_generation_prompt false), split into trained and untrained segments:
//
//   chatml   <|im_start|>{role}\n{content}<|im_end|>\n per message; when the template has a default system
//            prompt (Qwen2/2.5 "You are Qwen, created by Alibaba Cloud...", SmolLM2) it is read from the
//            Jinja source and rendered first for conversations that do not start with a system message;
//            when the template writes {{bos_token}} (Nous Hermes 2, LFM2) the tokenizer's BOS leads.
//   qwen3    ChatML as Qwen3's template: an assistant message after the last user message renders its
//            reasoning as "<think>\n{reasoning}\n</think>\n\n" before the answer when it is the last
//            message or has reasoning (an empty "<think>\n\n</think>\n\n" block when it has none);
//            reasoning ("<think>..</think>" in the content) of earlier assistant messages is dropped.
//   llama3   BOS, then <|start_header_id|>{role}<|end_header_id|>\n\n{content|trim}<|eot_id|> per message.
//   llama3.1 Llama 3.1/3.2: BOS, then always a system header "Cutting Knowledge Date: December 2023\nToday
//            Date: 26 Jul 2024\n\n" + the system message (trimmed, or empty), then as llama3. The date is the
//            template's own fallback; Hugging Face passes today's date instead, which would make the
//            training data change from day to day.
//   llama2   optional system folded into the first user message as "<<SYS>>\n{s}\n<</SYS>>\n\n", then
//            per pair: BOS "[INST] {user.strip()} [/INST]" and " {answer.strip()} " EOS.
//   mistral  BOS, then "[INST] {user} [/INST]" and "{answer}" EOS (Mistral 7B Instruct v0.1: no system).
//   mistral-v0.2  Mistral 7B Instruct v0.2 / Mixtral 8x7B Instruct (their 2024 template): BOS, then
//            " [INST] {user} [/INST]" and " {answer}" EOS; the system message goes into the first user
//            message as "{system}\n\n{user}".
//   mistral-v0.3  Mistral 7B Instruct v0.3 (also Mistral Large 2407): BOS, then "[INST] {user}[/INST]" and
//            " {answer|trim}" EOS.
//   mistral-nemo  Mistral Nemo Instruct 2407: BOS, then "[INST]{user}[/INST]" and "{answer}" EOS.
//            v0.3's and Nemo's templates write the system message ("{system}\n\n{user}") only into a user
//            message that is the conversation's last; before an answer they drop it without a word, so a
//            conversation with a system message that ends with an answer is refused (DT_EINPUT) rather than
//            trained without it. Their tool messages and tool calls are not supported (deltatune has no tool
//            role).
//   zephyr   <|{role}|>\n{content}EOS\n per message, BOS when the tokenizer adds one.
//   alpaca   the Stanford Alpaca prompt carried over to several turns: BOS when the tokenizer adds one,
//            the system message or "Below is an instruction that describes a task. Write a response that
//            appropriately completes the request.", then "\n\n### Instruction:\n{user}" and
//            "\n\n### Response:\n{answer}" EOS (one turn gives exactly the single-turn Alpaca prompt).
//
// What is trained (the rest is label -100): each assistant message's content plus the token that ends
// the turn: <|im_end|> for chatml/qwen3 (Qwen's EOS, so no extra EOS is added), <|eot_id|> for llama3(.1),
// EOS for the others; for llama2 also the spaces the template puts around the answer (and for
// mistral-v0.2/v0.3 the space before it: with SentencePiece it is the "▁" of the answer's first token), for
// qwen3 the <think> block. Role headers ("<|im_start|>assistant\n") and the newline after a turn's end are not
// trained: they are prompt that the inference-time template supplies.
#ifndef DT_CHAT_TEMPLATE_H
#define DT_CHAT_TEMPLATE_H
#include <stdbool.h>
#include <stddef.h>
#include "autograd/context.h"
#include "datasets/segments.h"

typedef enum { DT_ROLE_SYSTEM, DT_ROLE_USER, DT_ROLE_ASSISTANT } dt_role;

typedef struct {
    dt_role role;
    const char *text; // UTF-8, len bytes, not necessarily NUL-terminated
    size_t len;
} dt_message;

typedef enum {
    DT_TMPL_CHATML, DT_TMPL_QWEN3, DT_TMPL_LLAMA3, DT_TMPL_LLAMA31, DT_TMPL_LLAMA2, DT_TMPL_MISTRAL, DT_TMPL_ZEPHYR,
    DT_TMPL_ALPACA, DT_TMPL_MISTRAL_V02, DT_TMPL_MISTRAL_V03, DT_TMPL_MISTRAL_NEMO, DT_TMPL_COUNT
} dt_chat_tmpl;

#define DT_CHAT_TEMPLATE_NAMES \
    "chatml, qwen3, llama3, llama3.1, llama2, mistral, mistral-v0.2, mistral-v0.3, mistral-nemo, zephyr or alpaca"

// A template and what it takes from the model's Jinja source.
typedef struct {
    dt_chat_tmpl kind;
    char default_system[1024]; // chatml: the system prompt used when a conversation has none; "" = none
    bool bos;                  // chatml: the template writes bos_token (Hermes 2, LFM2): BOS comes first
} dt_chat_fmt;

const char *dt_chat_tmpl_name(dt_chat_tmpl t);
// A built-in template by name (no default system prompt); an unknown name is DT_EINPUT listing the names.
int dt_chat_tmpl_parse(dt_ctx *ctx, const char *name, dt_chat_fmt *out);
// Chooses the template from the Jinja source in tokenizer_config.json by its markers: <|im_start|> is
// chatml (qwen3 when it also has <think>; one with <think> but without Qwen3's reasoning rule, e.g. QwQ's,
// is DT_EINPUT), <|start_header_id|> llama3 (llama3.1 with "Cutting Knowledge
// Date"), [INST] llama2 with <<SYS>> and mistral without when it has Mistral v0.1's spacing (' [/INST]' and
// no space before the answer), else mistral-v0.2, mistral-v0.3 or mistral-nemo when it holds that template's
// exact user, system and answer expressions (any other [INST] template, e.g. Mixtral 8x22B's, is
// DT_EINPUT), <|user|> with an EOS (eos_token or
// </s>) and no <|end|> zephyr, "### Instruction" alpaca.
int dt_chat_tmpl_detect(dt_ctx *ctx, const char *jinja, dt_chat_fmt *out);
// The same, with `where` naming the template's source in messages ("tokenizer_config.json: chat_template"
// for dt_chat_tmpl_detect, "model.gguf: tokenizer.chat_template" for a GGUF's).
int dt_chat_tmpl_detect_in(dt_ctx *ctx, const char *jinja, const char *where, dt_chat_fmt *out);
// Renders a conversation into segments (appended to out). Fails with DT_EINPUT (no file/line prefix)
// where the model's template would raise, e.g. roles that do not alternate for llama2/mistral.
int dt_chat_render(dt_ctx *ctx, const dt_chat_fmt *f, const dt_message *m, size_t n, const dt_seg_encoder *e,
                   dt_segs *out);

#endif
