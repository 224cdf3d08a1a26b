// The table of recipe keys, in the order the resolved recipe is printed. Ranges and defaults here are
// the ones recipes/README.md documents.
#include "recipes/recipe_schema.h"
#include <math.h>
#include <stdint.h>
#include <string.h>
#include "recipes/recipe.h"

// Enum keys are written through an int pointer, so every enum they use must be int-sized.
_Static_assert(sizeof(dt_method_kind) == sizeof(int) && sizeof(dt_pt_init) == sizeof(int) && sizeof(dt_bn_type) == sizeof(int) &&
               sizeof(dt_data_format) == sizeof(int) && sizeof(dt_chat_template) == sizeof(int) &&
               sizeof(dt_optim_kind) == sizeof(int) && sizeof(dt_sched_kind) == sizeof(int) &&
               sizeof(dt_device) == sizeof(int) && sizeof(dt_dtype) == sizeof(int),
               "recipe enums must be int-sized");

static const dt_renum METHODS[] = {
    {"lora", DT_METHOD_LORA}, {"prompt_tuning", DT_METHOD_PROMPT_TUNING}, {"ia3", DT_METHOD_IA3},
    {"bottleneck", DT_METHOD_BOTTLENECK}, {"prefix_tuning", DT_METHOD_PREFIX_TUNING}, {"bitfit", DT_METHOD_BITFIT}, {0, 0}};
static const dt_renum BN_TYPES[] = {{"houlsby", DT_BN_TYPE_HOULSBY}, {"pfeiffer", DT_BN_TYPE_PFEIFFER}, {0, 0}};
static const dt_renum PT_INITS[] = {
    {"random", DT_PT_INIT_RANDOM}, {"vocab", DT_PT_INIT_VOCAB}, {"text", DT_PT_INIT_TEXT}, {0, 0}};
static const dt_renum FORMATS[] = {
    {"auto", DT_FORMAT_AUTO}, {"text", DT_FORMAT_TEXT}, {"completion", DT_FORMAT_COMPLETION},
    {"alpaca", DT_FORMAT_ALPACA}, {"chat", DT_FORMAT_CHAT}, {"sharegpt", DT_FORMAT_SHAREGPT},
    {"tokens", DT_FORMAT_TOKENS}, {0, 0}};
static const dt_renum TEMPLATES[] = {
    {"auto", DT_TEMPLATE_AUTO}, {"chatml", DT_TEMPLATE_CHATML}, {"qwen3", DT_TEMPLATE_QWEN3},
    {"llama3", DT_TEMPLATE_LLAMA3}, {"llama3.1", DT_TEMPLATE_LLAMA31}, {"llama2", DT_TEMPLATE_LLAMA2}, {"mistral", DT_TEMPLATE_MISTRAL},
    {"mistral-v0.2", DT_TEMPLATE_MISTRAL_V02}, {"mistral-v0.3", DT_TEMPLATE_MISTRAL_V03},
    {"mistral-nemo", DT_TEMPLATE_MISTRAL_NEMO}, {"alpaca", DT_TEMPLATE_ALPACA},
    {"zephyr", DT_TEMPLATE_ZEPHYR}, {"none", DT_TEMPLATE_NONE}, {0, 0}};
static const dt_renum OPTIMIZERS[] = {{"adamw", DT_OPTIM_ADAMW}, {"sgd", DT_OPTIM_SGD}, {0, 0}};
static const dt_renum SCHEDULERS[] = {
    {"constant", DT_SCHED_CONSTANT}, {"linear", DT_SCHED_LINEAR}, {"cosine", DT_SCHED_COSINE}, {0, 0}};
static const dt_renum DEVICES[] = {{"cpu", DT_DEV_CPU}, {"cuda", DT_DEV_CUDA}, {0, 0}};
// auto: resolved when training starts (autograd/dtype_choice.h), from what the device runs fast.
static const dt_renum DTYPES[] = {{"auto", DT_DTYPE_AUTO}, {"stored", DT_DTYPE_STORED}, {"f32", DT_F32}, {"bf16", DT_BF16}, {"f16", DT_F16}, {0, 0}};
// model.quantize: "null" (the default) keeps the weights as they are loaded.
static const dt_renum QUANTIZE[] = {{"null", DT_F32}, {"nf4", DT_NF4}, {"q8_0", DT_Q8_0}, {"q4_0", DT_Q4_0}, {0, 0}};

#define OFF(field) offsetof(dt_recipe, field)
#define INF HUGE_VAL
#define NUL DT_RF_NULLABLE
#define REQ DT_RF_REQUIRED
#define LORA DT_RF_LORA
#define PT DT_RF_PT
#define IA3 DT_RF_IA3
#define PREFIX DT_RF_PREFIX
#define LO_OPEN DT_RF_LO_OPEN
#define HI_OPEN DT_RF_HI_OPEN

const dt_rkey dt_recipe_keys[] = {
    // path                                kind             field                              flags            lo    hi      nullv names       default
    {"model",                              DT_RK_SECTION,   0,                                 0,               0, 0, 0, NULL, NULL},
    {"model.path",                         DT_RK_PATH,      OFF(model.path),                   REQ,             0, 0, 0, NULL, NULL},
    {"model.tokenizer",                    DT_RK_PATH,      OFF(model.tokenizer),              NUL|DT_RF_RULE,  0, 0, 0, NULL, NULL},
    {"model.quantize",                     DT_RK_ENUM,      OFF(model.quantize),               0,               0, 0, 0, QUANTIZE, "null"},
    {"model.double_quant",                 DT_RK_BOOL,      OFF(model.double_quant),           0,               0, 0, 0, NULL, "false"},
    {"model.name_or_path",                 DT_RK_STRING,    OFF(model.name_or_path),           NUL,             0, 0, 0, NULL, "null"},
    {"method",                             DT_RK_SECTION,   0,                                 0,               0, 0, 0, NULL, NULL},
    {"method.name",                        DT_RK_ENUM,      OFF(method.name),                  0,               0, 0, 0, METHODS, "lora"},
    {"method.r",                           DT_RK_INT,       OFF(method.r),                     LORA,            1, 65536, 0, NULL, "8"},
    {"method.alpha",                       DT_RK_FLOAT,     OFF(method.alpha),                 LORA|LO_OPEN,    0, INF, 0, NULL, "16"},
    {"method.dropout",                     DT_RK_FLOAT,     OFF(method.dropout),               LORA|HI_OPEN,    0, 1, 0, NULL, "0.05"},
    {"method.target_modules",              DT_RK_MODULES,   OFF(method.target_modules),        LORA|IA3|DT_RF_BITFIT|DT_RF_RULE, 0, 0, 0, NULL, NULL},
    {"method.layers_to_transform",         DT_RK_INTLIST,   OFF(method.layers_to_transform),   LORA|NUL,        0, 65535, 0, NULL, "null"},
    {"method.use_rslora",                  DT_RK_BOOL,      OFF(method.use_rslora),            LORA,            0, 0, 0, NULL, "false"},
    {"method.use_dora",                    DT_RK_BOOL,      OFF(method.use_dora),              LORA,            0, 0, 0, NULL, "false"},
    {"method.init_from",                   DT_RK_PATH,      OFF(method.init_from),             LORA|NUL,        0, 0, 0, NULL, "null"},
    {"method.num_virtual_tokens",          DT_RK_INT,       OFF(method.num_virtual_tokens),    PT|PREFIX,       1, 65536, 0, NULL, "20"},
    {"method.init",                        DT_RK_ENUM,      OFF(method.init),                  PT,              0, 0, 0, PT_INITS, "random"},
    {"method.init_text",                   DT_RK_STRING,    OFF(method.init_text),             PT|NUL,          0, 0, 0, NULL, "null"},
    {"method.feedforward_modules",         DT_RK_MODULES,   OFF(method.feedforward_modules),   IA3|DT_RF_RULE,  0, 0, 0, NULL, NULL},
    {"method.bottleneck_type",             DT_RK_ENUM,      OFF(method.bottleneck_type),       DT_RF_BN,        0, 0, 0, BN_TYPES, "pfeiffer"},
    {"method.bottleneck_size",             DT_RK_INT,       OFF(method.bottleneck_size),       DT_RF_BN,        1, 65536, 0, NULL, "16"},
    {"method.prefix_projection",           DT_RK_BOOL,      OFF(method.prefix_projection),     PREFIX,          0, 0, 0, NULL, "false"},
    {"data",                               DT_RK_SECTION,   0,                                 0,               0, 0, 0, NULL, NULL},
    {"data.train",                         DT_RK_PATHS,     OFF(data.train),                   REQ,             0, 0, 0, NULL, NULL},
    {"data.val",                           DT_RK_PATHS,     OFF(data.val),                     NUL,             0, 0, 0, NULL, "null"},
    {"data.val_split",                     DT_RK_FLOAT,     OFF(data.val_split),               NUL|LO_OPEN|HI_OPEN, 0, 1, 0, NULL, "null"},
    {"data.format",                        DT_RK_ENUM,      OFF(data.format),                  0,               0, 0, 0, FORMATS, "auto"},
    {"data.max_seq_len",                   DT_RK_INT,       OFF(data.max_seq_len),             0,               2, 1048576, 0, NULL, "2048"},
    {"data.packing",                       DT_RK_BOOL,      OFF(data.packing),                 0,               0, 0, 0, NULL, "false"},
    {"data.train_on_prompt",               DT_RK_BOOL,      OFF(data.train_on_prompt),         0,               0, 0, 0, NULL, "false"},
    {"data.chat_template",                 DT_RK_ENUM,      OFF(data.chat_template),           0,               0, 0, 0, TEMPLATES, "auto"},
    {"data.shuffle",                       DT_RK_BOOL,      OFF(data.shuffle),                 0,               0, 0, 0, NULL, "true"},
    {"data.skip_bad_lines",                DT_RK_BOOL,      OFF(data.skip_bad_lines),          0,               0, 0, 0, NULL, "false"},
    {"train",                              DT_RK_SECTION,   0,                                 0,               0, 0, 0, NULL, NULL},
    {"train.epochs",                       DT_RK_INT,       OFF(train.epochs),                 NUL,             1, 1000000, 0, NULL, "null"},
    {"train.max_steps",                    DT_RK_I64,       OFF(train.max_steps),              NUL,             1, 1e12, 0, NULL, "null"},
    {"train.batch_size",                   DT_RK_INT,       OFF(train.batch_size),             0,               1, 65536, 0, NULL, "1"},
    {"train.gradient_accumulation_steps",  DT_RK_INT,       OFF(train.gradient_accumulation_steps), 0,          1, 65536, 0, NULL, "1"},
    {"train.optimizer",                    DT_RK_SECTION,   0,                                 0,               0, 0, 0, NULL, NULL},
    {"train.optimizer.name",               DT_RK_ENUM,      OFF(train.optimizer.name),         0,               0, 0, 0, OPTIMIZERS, "adamw"},
    {"train.optimizer.lr",                 DT_RK_FLOAT,     OFF(train.optimizer.lr),           LO_OPEN,         0, INF, 0, NULL, "2e-4"},
    {"train.optimizer.betas",              DT_RK_FLOAT2,    OFF(train.optimizer.betas),        DT_RF_ADAMW|HI_OPEN, 0, 1, 0, NULL, "[0.9, 0.999]"},
    {"train.optimizer.eps",                DT_RK_FLOAT,     OFF(train.optimizer.eps),          DT_RF_ADAMW|LO_OPEN, 0, INF, 0, NULL, "1e-8"},
    {"train.optimizer.weight_decay",       DT_RK_FLOAT,     OFF(train.optimizer.weight_decay), 0,               0, INF, 0, NULL, "0.0"},
    {"train.optimizer.momentum",           DT_RK_FLOAT,     OFF(train.optimizer.momentum),     DT_RF_SGD|HI_OPEN, 0, 1, 0, NULL, "0.0"},
    {"train.optimizer.loraplus_lr_ratio",  DT_RK_FLOAT,     OFF(train.optimizer.loraplus_lr_ratio), LORA|NUL|LO_OPEN, 0, INF, 0, NULL, "null"},
    {"train.lr_scheduler",                 DT_RK_SECTION,   0,                                 0,               0, 0, 0, NULL, NULL},
    {"train.lr_scheduler.name",            DT_RK_ENUM,      OFF(train.lr_scheduler.name),      0,               0, 0, 0, SCHEDULERS, "constant"},
    {"train.lr_scheduler.warmup_steps",    DT_RK_I64,       OFF(train.lr_scheduler.warmup_steps), NUL,          0, 1e12, -1, NULL, "null"},
    {"train.lr_scheduler.warmup_ratio",    DT_RK_FLOAT,     OFF(train.lr_scheduler.warmup_ratio), NUL|HI_OPEN,  0, 1, -1, NULL, "null"},
    {"train.lr_scheduler.min_lr_ratio",    DT_RK_FLOAT,     OFF(train.lr_scheduler.min_lr_ratio), 0,            0, 1, 0, NULL, "0.0"},
    {"train.clip_grad_norm",               DT_RK_FLOAT,     OFF(train.clip_grad_norm),         NUL|LO_OPEN,     0, INF, 0, NULL, "1.0"},
    {"train.activation_checkpointing",     DT_RK_BOOL,      OFF(train.activation_checkpointing), 0,             0, 0, 0, NULL, "false"},
    {"train.seed",                         DT_RK_I64,       OFF(train.seed),                   0,               0, (double)INT64_MAX, 0, NULL, "42"},
    {"train.log_every_n_steps",            DT_RK_INT,       OFF(train.log_every_n_steps),      0,               1, 1e9, 0, NULL, "10"},
    {"train.eval_every_n_steps",           DT_RK_INT,       OFF(train.eval_every_n_steps),     0,               0, 1e9, 0, NULL, "100"},
    {"train.save_every_n_steps",           DT_RK_INT,       OFF(train.save_every_n_steps),     0,               0, 1e9, 0, NULL, "0"},
    {"train.keep_last_n_checkpoints",      DT_RK_INT,       OFF(train.keep_last_n_checkpoints), 0,              0, 1e6, 0, NULL, "0"},
    {"hardware",                           DT_RK_SECTION,   0,                                 0,               0, 0, 0, NULL, NULL},
    {"hardware.device",                    DT_RK_ENUM,      OFF(hardware.device),              0,               0, 0, 0, DEVICES, "cpu"},
    {"hardware.threads",                   DT_RK_INT,       OFF(hardware.threads),             0,               0, 4096, 0, NULL, "0"},
    {"hardware.dtype",                     DT_RK_ENUM,      OFF(hardware.dtype),               DT_RF_RULE,      0, 0, 0, DTYPES, NULL},
    {"output_dir",                         DT_RK_PATH,      OFF(output_dir),                   REQ,             0, 0, 0, NULL, NULL},
    {"resume",                             DT_RK_RESUME,    OFF(resume),                       0,               0, 0, 0, NULL, "false"},
};
_Static_assert(sizeof dt_recipe_keys / sizeof dt_recipe_keys[0] == DT_RECIPE_NKEYS,
               "DT_RECIPE_NKEYS must match the table");

int dt_rkey_find(const char *path) {
    for (int i = 0; i < DT_RECIPE_NKEYS; i++)
        if (!strcmp(dt_recipe_keys[i].path, path)) return i;
    return -1;
}

const char *dt_rkey_leaf(const char *path) {
    const char *dot = strrchr(path, '.');
    return dot ? dot + 1 : path;
}

int dt_rkey_in_section(const char *path, const char *parent) {
    size_t n = strlen(parent);
    if (!n) return strchr(path, '.') == NULL;
    return !strncmp(path, parent, n) && path[n] == '.' && !strchr(path + n + 1, '.');
}

const char *dt_renum_name(const dt_renum *names, int value) {
    for (; names->name; names++)
        if (names->value == value) return names->name;
    return "?";
}

bool dt_rkey_for_method(const dt_rkey *k, int method) {
    const unsigned own[] = {[DT_METHOD_LORA] = DT_RF_LORA, [DT_METHOD_PROMPT_TUNING] = DT_RF_PT, [DT_METHOD_IA3] = DT_RF_IA3,
                            [DT_METHOD_BOTTLENECK] = DT_RF_BN, [DT_METHOD_PREFIX_TUNING] = DT_RF_PREFIX,
                            [DT_METHOD_BITFIT] = DT_RF_BITFIT};
    return !(k->flags & DT_RF_METHODS) || (k->flags & own[method]);
}

const char *dt_method_kind_name(dt_method_kind v) { return dt_renum_name(METHODS, v); }
const char *dt_pt_init_name(dt_pt_init v) { return dt_renum_name(PT_INITS, v); }
const char *dt_recipe_format_name(dt_data_format v) { return dt_renum_name(FORMATS, v); }
const char *dt_recipe_template_name(dt_chat_template v) { return dt_renum_name(TEMPLATES, v); }
const char *dt_optim_kind_name(dt_optim_kind v) { return dt_renum_name(OPTIMIZERS, v); }
const char *dt_sched_kind_name(dt_sched_kind v) { return dt_renum_name(SCHEDULERS, v); }
