// Internal: the one table of recipe keys. Loading, defaults, checks, suggestions and emitting all walk
// this table, so a key is added in one place (plus its field in dt_recipe and a line in the README).
#ifndef DT_RECIPE_SCHEMA_H
#define DT_RECIPE_SCHEMA_H
#include <stdbool.h>
#include <stddef.h>

typedef enum {
    DT_RK_SECTION,   // a mapping of further keys
    DT_RK_STRING,    // any scalar, as text
    DT_RK_PATH,      // a file or folder, made absolute
    DT_RK_PATHS,     // one path or a list of paths (dt_strlist)
    DT_RK_INT,       // int
    DT_RK_I64,       // int64_t
    DT_RK_FLOAT,     // double
    DT_RK_FLOAT2,    // [a, b] into double[2]
    DT_RK_BOOL,      // bool
    DT_RK_ENUM,      // one of `names`, stored as an int-sized enum
    DT_RK_MODULES,   // a list of module names, or the string all-linear
    DT_RK_INTLIST,   // a list of ints, or null for "all" (dt_intlist)
    DT_RK_RESUME,    // false | true | a checkpoint path
} dt_rkind;

enum {
    DT_RF_NULLABLE = 1 << 0,  // null is a valid value (stored as `nullv`, NULL or the empty list)
    DT_RF_REQUIRED = 1 << 1,  // no default
    DT_RF_RULE     = 1 << 2,  // the default depends on other keys (recipe_rules.c)
    DT_RF_LORA     = 1 << 3,  // only with method.name: lora
    DT_RF_PT       = 1 << 4,  // only with method.name: prompt_tuning
    DT_RF_ADAMW    = 1 << 5,  // only with train.optimizer.name: adamw
    DT_RF_SGD      = 1 << 6,  // only with train.optimizer.name: sgd
    DT_RF_LO_OPEN  = 1 << 7,  // the range excludes lo
    DT_RF_HI_OPEN  = 1 << 8,  // the range excludes hi
    DT_RF_IA3      = 1 << 9,  // only with method.name: ia3
    DT_RF_BN       = 1 << 10, // only with method.name: bottleneck
    DT_RF_PREFIX   = 1 << 11, // only with method.name: prefix_tuning
    DT_RF_BITFIT   = 1 << 12, // only with method.name: bitfit
    // A key with some of these belongs to those methods only; one with none is shared by all.
    DT_RF_METHODS  = DT_RF_LORA | DT_RF_PT | DT_RF_IA3 | DT_RF_BN | DT_RF_PREFIX | DT_RF_BITFIT,
};

typedef struct { const char *name; int value; } dt_renum;
struct dt_rkey;
// Whether key k is used with this method (a dt_method_kind): shared keys always are.
bool dt_rkey_for_method(const struct dt_rkey *k, int method);

typedef struct dt_rkey {
    const char *path;        // dotted path from the top, e.g. "train.optimizer.lr"
    dt_rkind kind;
    size_t off;              // offsetof(dt_recipe, field)
    unsigned flags;
    double lo, hi;           // numbers and list items: the allowed range
    double nullv;            // DT_RF_NULLABLE numbers: the stored value that means null
    const dt_renum *names;   // DT_RK_ENUM: the spellings, ending with {NULL, 0}
    const char *def;         // default as YAML text; NULL with DT_RF_REQUIRED or DT_RF_RULE
} dt_rkey;

#define DT_RECIPE_NKEYS 65
extern const dt_rkey dt_recipe_keys[DT_RECIPE_NKEYS];

// Index of the key with this dotted path, or -1.
int dt_rkey_find(const char *path);
// The last component of a dotted path ("lr" for "train.optimizer.lr").
const char *dt_rkey_leaf(const char *path);
// Whether `path` is directly inside the section `parent` ("" = the top level).
int dt_rkey_in_section(const char *path, const char *parent);
// The spelling of an enum value, or "?".
const char *dt_renum_name(const dt_renum *names, int value);

#endif
