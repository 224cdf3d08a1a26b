// The training recipe: one YAML file that selects the model, the PEFT method, the data, the training
// loop and the hardware. recipes/README.md documents every key (type, default, meaning).
//
// dt_recipe_load reads the file, applies command-line overrides ("train.optimizer.lr=3e-4"), checks
// every key's type and range and the rules between keys, fills in defaults and turns every path into
// an absolute one. dt_recipe_emit prints the resolved recipe as YAML that loads back to the same recipe.
#ifndef DT_RECIPE_H
#define DT_RECIPE_H
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include "autograd/context.h"
#include "autograd/dtype_choice.h"
#include "autograd/tensor.h"

typedef enum {
    DT_METHOD_LORA, DT_METHOD_PROMPT_TUNING, DT_METHOD_IA3, DT_METHOD_BOTTLENECK, DT_METHOD_PREFIX_TUNING, DT_METHOD_BITFIT
} dt_method_kind;
typedef enum { DT_BN_TYPE_HOULSBY, DT_BN_TYPE_PFEIFFER } dt_bn_type;
typedef enum { DT_PT_INIT_RANDOM, DT_PT_INIT_VOCAB, DT_PT_INIT_TEXT } dt_pt_init;
typedef enum {
    DT_FORMAT_AUTO, DT_FORMAT_TEXT, DT_FORMAT_COMPLETION, DT_FORMAT_ALPACA, DT_FORMAT_CHAT, DT_FORMAT_TOKENS,
    DT_FORMAT_SHAREGPT
} dt_data_format;
typedef enum {
    DT_TEMPLATE_AUTO, DT_TEMPLATE_CHATML, DT_TEMPLATE_LLAMA3, DT_TEMPLATE_LLAMA2, DT_TEMPLATE_MISTRAL,
    DT_TEMPLATE_ALPACA, DT_TEMPLATE_ZEPHYR, DT_TEMPLATE_NONE, DT_TEMPLATE_QWEN3, DT_TEMPLATE_LLAMA31,
    DT_TEMPLATE_MISTRAL_V02, DT_TEMPLATE_MISTRAL_V03, DT_TEMPLATE_MISTRAL_NEMO
} dt_chat_template;
typedef enum { DT_OPTIM_ADAMW, DT_OPTIM_SGD } dt_optim_kind;
typedef enum { DT_SCHED_CONSTANT, DT_SCHED_LINEAR, DT_SCHED_COSINE } dt_sched_kind;
typedef enum { DT_RESUME_NO, DT_RESUME_LATEST, DT_RESUME_PATH } dt_resume_mode;

// malloc'd lists; n == 0 with items == NULL is the empty list.
typedef struct { char **items; int n; } dt_strlist;
typedef struct { int *items; int n; } dt_intlist;

// Every string is malloc'd (or NULL where the key is null) and every path is absolute.
// "unset" values of keys that may be null are stated beside each field.
typedef struct dt_recipe {
    char *recipe_path;                 // absolute path of the recipe file that was loaded
    struct {
        char *path;                    // Hugging Face model folder, or a llama2.c .bin / .gguf / .safetensors file
        char *tokenizer;               // tokenizer folder or file (default: the model folder)
        dt_dtype quantize;             // linear weights quantized at load: DT_NF4, DT_Q8_0, DT_Q4_0; DT_F32: no
        bool double_quant;             // nf4: the block scales quantized too (bitsandbytes' double quantization)
        char *name_or_path;            // adapter_config.json's base_model_name_or_path (NULL: path), e.g. a Hub id
    } model;
    struct {
        dt_method_kind name;
        // LoRA (target_modules: IA3 and BitFit too)
        int r;
        double alpha;
        double dropout;
        bool target_all_linear;        // target_modules: all-linear (then target_modules is empty)
        dt_strlist target_modules;     // e.g. q_proj, v_proj
        dt_intlist layers_to_transform;// empty = every layer
        bool use_rslora;               // scale by alpha/sqrt(r) instead of alpha/r
        bool use_dora;                 // DoRA: a learned magnitude per output row (peft/dora.c)
        char *init_from;               // PEFT adapter folder to start from, or NULL
        // prompt tuning (num_virtual_tokens: prefix tuning too)
        int num_virtual_tokens;
        dt_pt_init init;
        char *init_text;               // NULL unless init is DT_PT_INIT_TEXT
        // IA3
        dt_strlist feedforward_modules; // target modules scaled on their input, e.g. down_proj
        // bottleneck adapters
        dt_bn_type bottleneck_type;    // houlsby: after attention and the MLP; pfeiffer: after the MLP
        int bottleneck_size;
        // prefix tuning
        bool prefix_projection;        // PEFT's MLP reparameterisation: not implemented, true is refused
    } method;
    struct {
        dt_strlist train;              // at least one .jsonl / .jsonl.gz
        dt_strlist val;                // may be empty
        double val_split;              // fraction of train held out; 0 = none
        dt_data_format format;
        int max_seq_len;
        bool packing;
        bool train_on_prompt;
        dt_chat_template chat_template;
        bool shuffle;
        bool skip_bad_lines;
    } data;
    struct {
        int epochs;                    // 0 when max_steps is set
        int64_t max_steps;             // 0 when epochs is set
        int batch_size;
        int gradient_accumulation_steps;
        struct {
            dt_optim_kind name;
            double lr;
            double betas[2];           // adamw
            double eps;                // adamw
            double weight_decay;
            double momentum;           // sgd
            double loraplus_lr_ratio;  // LoRA+: the lora_B matrices train at lr * this; 0 = unset (null)
        } optimizer;
        struct {
            dt_sched_kind name;
            int64_t warmup_steps;      // -1 when warmup_ratio is set
            double warmup_ratio;       // -1 when warmup_steps is set
            double min_lr_ratio;       // the schedule ends at lr * min_lr_ratio
        } lr_scheduler;
        double clip_grad_norm;         // 0 = no clipping
        bool activation_checkpointing;
        int64_t seed;
        int log_every_n_steps;
        int eval_every_n_steps;        // 0 = only at the end of training
        int save_every_n_steps;        // 0 = only at the end of training
        int keep_last_n_checkpoints;   // 0 = keep all
    } train;
    struct {
        dt_device device;
        int threads;                   // 0 = all cores
        dt_dtype dtype;                // frozen weights: DT_DTYPE_AUTO (autograd/dtype_choice.h), DT_F32, DT_BF16 or DT_F16
    } hardware;
    char *output_dir;
    dt_resume_mode resume;
    char *resume_path;                 // DT_RESUME_PATH only
} dt_recipe;

// Loads the recipe at `path`, then applies `overrides` in order ("dotted.key=yaml value"; a later one
// wins). Relative paths in the file are relative to the file's folder; relative paths in overrides are
// relative to the current directory. Bad input returns DT_EINPUT with a message naming the place
// (file:line:column or the override), the key and what was expected. On failure *out is zeroed.
int dt_recipe_load(dt_ctx *ctx, const char *path, const char *const *overrides, int n_overrides,
                   dt_recipe *out);
void dt_recipe_free(dt_recipe *r);

// Writes the resolved recipe as YAML: every key with its value or default. Loading the output gives
// the same recipe, and emitting that again gives the same text.
int dt_recipe_emit(dt_ctx *ctx, const dt_recipe *r, FILE *f);
// The same into a malloc'd, NUL-terminated buffer (*len excludes the NUL).
int dt_recipe_emit_string(dt_ctx *ctx, const dt_recipe *r, char **out, size_t *len);
// The same into a file, atomically (a temporary file beside it, fsync, rename).
int dt_recipe_write(dt_ctx *ctx, const dt_recipe *r, const char *path);

// The YAML spelling of each enum value ("lora", "chatml", "cosine", ...).
const char *dt_method_kind_name(dt_method_kind v);
const char *dt_pt_init_name(dt_pt_init v);
const char *dt_recipe_format_name(dt_data_format v);
const char *dt_recipe_template_name(dt_chat_template v);
const char *dt_optim_kind_name(dt_optim_kind v);
const char *dt_sched_kind_name(dt_sched_kind v);

#endif
