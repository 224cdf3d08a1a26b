#include "datasets/dataset.h"
#include <stdlib.h>
#include <string.h>
#include "autograd/rng.h"
#include "datasets/formats.h"
#include "datasets/jsonl.h"

typedef struct {
    int64_t line;
    uint32_t file;
    bool truncated;
    int32_t first_label; // labels[0] before it was blanked (see dt_dataset_first_label)
} ex_src;

struct dt_dataset {
    int32_t *ids, *labels; // (n_tok) each, all examples back to back
    size_t n_tok, cap_tok;
    size_t *off;           // (n + 1): example i is [off[i], off[i+1])
    ex_src *src;           // (n)
    size_t n, cap_ex;
    char **files;
    size_t nfiles;
    dt_dataset_stats stats;
    int64_t max_seq_len;
    int32_t pad_id;
    const char *tmpl_name;
};

void dt_dataset_free(dt_dataset *ds) {
    if (!ds) return;
    free(ds->ids);
    free(ds->labels);
    free(ds->off);
    free(ds->src);
    for (size_t i = 0; i < ds->nfiles; i++) free(ds->files[i]);
    free(ds->files);
    free(ds);
}

static int grow_tokens(dt_ctx *ctx, dt_dataset *ds, size_t extra) {
    if (ds->n_tok + extra <= ds->cap_tok) return DT_OK;
    size_t cap = ds->cap_tok ? ds->cap_tok : 4096;
    while (cap < ds->n_tok + extra) cap *= 2;
    int32_t *a = realloc(ds->ids, cap * sizeof *a);
    if (a) ds->ids = a;
    int32_t *b = a ? realloc(ds->labels, cap * sizeof *b) : NULL;
    if (b) ds->labels = b;
    if (!a || !b) return dt_fail(ctx, DT_ENOMEM, "out of memory for %zu dataset tokens", cap);
    ds->cap_tok = cap;
    return DT_OK;
}

static int grow_examples(dt_ctx *ctx, dt_dataset *ds) {
    if (ds->n + 1 < ds->cap_ex) return DT_OK;
    size_t cap = ds->cap_ex ? ds->cap_ex * 2 : 1024;
    size_t *o = realloc(ds->off, (cap + 1) * sizeof *o);
    if (o) ds->off = o;
    ex_src *s = o ? realloc(ds->src, cap * sizeof *s) : NULL;
    if (s) ds->src = s;
    if (!o || !s) return dt_fail(ctx, DT_ENOMEM, "out of memory for %zu examples", cap);
    ds->cap_ex = cap;
    return DT_OK;
}

// Adds one encoded record: truncates it, blanks its first label and drops it when nothing is trained.
static int add_example(dt_ctx *ctx, dt_dataset *ds, dt_ids *ids, dt_ids *labels, uint32_t file, int64_t line) {
    size_t n = ids->n;
    bool cut = ds->max_seq_len > 0 && n > (size_t)ds->max_seq_len;
    if (cut) n = (size_t)ds->max_seq_len;
    const int32_t first = n ? labels->v[0] : -100;
    if (n) labels->v[0] = -100;
    int64_t trained = 0;
    for (size_t t = 0; t < n; t++) trained += labels->v[t] != -100;
    if (!trained) {
        ds->stats.n_untrained++;
        return DT_OK;
    }
    int st = grow_tokens(ctx, ds, n);
    if (!st) st = grow_examples(ctx, ds);
    if (st) return st;
    memcpy(ds->ids + ds->n_tok, ids->v, n * sizeof(int32_t));
    memcpy(ds->labels + ds->n_tok, labels->v, n * sizeof(int32_t));
    ds->src[ds->n] = (ex_src){line, file, cut, first};
    ds->off[ds->n] = ds->n_tok;
    ds->n_tok += n;
    ds->n++;
    ds->off[ds->n] = ds->n_tok;
    ds->stats.n_tokens += (int64_t)n;
    ds->stats.n_trained += trained;
    ds->stats.n_truncated += cut;
    if ((int64_t)n > ds->stats.max_len) ds->stats.max_len = (int64_t)n;
    return DT_OK;
}

// Chooses the chat template the first time a file holds conversations.
static int resolve_template(dt_ctx *ctx, dt_record_encoder *r, bool none, const char *path, int64_t line) {
    if (none)
        return dt_fail(ctx, DT_EINPUT, "%s:%lld: conversations need a chat template, but data.chat_template is none",
                       path, (long long)line);
    if (!r->tok)
        return dt_fail(ctx, DT_EINPUT, "%s:%lld: conversations need a tokenizer", path, (long long)line);
    const char *j = dt_tokenizer_chat_template(r->tok);
    if (!j)
        return dt_fail(ctx, DT_EINPUT, "%s:%lld: the tokenizer %s has no chat template (%s); set "
                       "data.chat_template to " DT_CHAT_TEMPLATE_NAMES,
                       path, (long long)line, dt_tokenizer_path(r->tok), dt_tokenizer_chat_template_origin(r->tok));
    char where[4200];
    snprintf(where, sizeof where, "%s: %s", dt_tokenizer_path(r->tok), dt_tokenizer_chat_template_origin(r->tok));
    int st = dt_chat_tmpl_detect_in(ctx, j, where, &r->tmpl);
    if (st) return st;
    r->have_tmpl = true;
    return DT_OK;
}

typedef struct {
    dt_record_encoder rec;
    dt_rec_format fixed; // DT_FMT_AUTO: detect per file
    bool tmpl_none;       // chat_template "none": conversations are an error
    dt_ids ids, labels;   // one record, reused
} loader;

static int load_file(dt_ctx *ctx, dt_dataset *ds, loader *L, const dt_dataset_opts *o, uint32_t fi) {
    const char *path = ds->files[fi];
    dt_jsonl *jr;
    int st = dt_jsonl_open(ctx, path, &jr);
    if (st) return st;
    dt_rec_format fmt = L->fixed;
    size_t lines = 0, bad = 0;
    int64_t first_bad_line = 0;
    char first_bad[512] = "";
    for (;;) {
        const char *s;
        size_t len;
        int64_t ln;
        if ((st = dt_jsonl_next(ctx, jr, &s, &len, &ln))) break;
        if (!s) break;
        lines++;
        json_error_t jerr;
        // \u0000 is valid JSON and the text path carries NUL bytes (lengths, not strlen), as `deltatune
        // tokenize` and Hugging Face do; jansson refuses it unless asked.
        json_t *rec = json_loadb(s, len, JSON_ALLOW_NUL, &jerr);
        if (!rec) {
            st = dt_fail(ctx, DT_EINPUT, "invalid JSON at column %d: %s", jerr.column, jerr.text);
        } else if (!json_is_object(rec)) {
            st = dt_fail(ctx, DT_EINPUT, "expected a JSON object per line, got %s",
                         json_is_array(rec) ? "an array" : "another JSON value");
        } else {
            // The first well-formed record decides an auto file's format; a record that fits no format
            // there is an error even under skip_bad_lines, since the whole file would be skipped.
            if (fmt == DT_FMT_AUTO && (st = dt_rec_format_detect(ctx, rec, &fmt))) {
                json_decref(rec);
                st = dt_prefix(ctx, st, "%s:%lld: ", path, (long long)ln);
                break;
            }
            if (fmt != DT_FMT_TOKENS && !L->rec.tok) {
                json_decref(rec);
                st = dt_fail(ctx, DT_EINPUT, "%s:%lld: format %s needs a tokenizer", path, (long long)ln,
                             dt_rec_format_name(fmt));
                break;
            }
            if (dt_rec_format_needs_template(fmt) && !L->rec.have_tmpl && (st = resolve_template(ctx, &L->rec, L->tmpl_none, path, ln))) {
                json_decref(rec);
                break;
            }
            if (!ds->tmpl_name && dt_rec_format_needs_template(fmt)) ds->tmpl_name = dt_chat_tmpl_name(L->rec.tmpl.kind);
            dt_ids_clear(&L->ids);
            dt_ids_clear(&L->labels);
            st = dt_record_encode(ctx, &L->rec, fmt, rec, &L->ids, &L->labels);
        }
        json_decref(rec);
        if (st == DT_EINPUT && o->skip_bad_lines) {
            if (!bad++) {
                first_bad_line = ln;
                size_t k = strnlen(ctx->msg, sizeof first_bad - 1);
                memcpy(first_bad, ctx->msg, k);
                first_bad[k] = 0;
            }
            st = DT_OK;
            continue;
        }
        if (st) {
            st = dt_prefix(ctx, st, "%s:%lld: ", path, (long long)ln);
            break;
        }
        if ((st = add_example(ctx, ds, &L->ids, &L->labels, fi, ln))) break;
    }
    dt_jsonl_close(jr);
    if (st) return st;
    if (!lines) return dt_fail(ctx, DT_EINPUT, "%s: empty file (no JSON lines)", path);
    if (bad) {
        ds->stats.n_bad_lines += bad;
        dt_warn(ctx, "%s: skipped %zu bad line%s of %zu (first, line %lld: %s)", path, bad, bad > 1 ? "s" : "", lines,
                (long long)first_bad_line, first_bad);
    }
    return DT_OK;
}

int dt_dataset_load(dt_ctx *ctx, const char *const *paths, size_t npaths, const dt_tokenizer *tok,
                    const dt_dataset_opts *o, dt_dataset **out) {
    *out = NULL;
    if (!npaths) return dt_fail(ctx, DT_EINPUT, "no data files given");
    if (o->max_seq_len < 0) return dt_fail(ctx, DT_EINPUT, "max_seq_len must be >= 0, got %lld", (long long)o->max_seq_len);
    loader L = {0};
    int st = DT_OK;
    if (o->format && (st = dt_rec_format_parse(ctx, o->format, &L.fixed))) return st;
    dt_dataset *ds = calloc(1, sizeof *ds);
    if (!ds) return dt_fail(ctx, DT_ENOMEM, "out of memory");
    ds->max_seq_len = o->max_seq_len;
    ds->files = calloc(npaths, sizeof *ds->files);
    if (!ds->files) st = dt_fail(ctx, DT_ENOMEM, "out of memory");
    for (size_t i = 0; !st && i < npaths; i++) {
        ds->files[i] = strdup(paths[i]);
        ds->nfiles++;
        if (!ds->files[i]) st = dt_fail(ctx, DT_ENOMEM, "out of memory");
    }
    if (!st) st = dt_record_encoder_init(ctx, &L.rec, tok, o->train_on_prompt);
    // Token-id data read without a tokenizer is checked against the model instead, here where the file and
    // line are known, rather than by the forward pass at the step that reads the example.
    if (!st && !tok && o->model_vocab > 0) {
        L.rec.vocab = o->model_vocab;
        L.rec.vocab_of_model = true;
    }
    L.tmpl_none = o->chat_template && !strcmp(o->chat_template, "none");
    if (!st && o->chat_template && strcmp(o->chat_template, "auto") && !L.tmpl_none) {
        st = dt_chat_tmpl_parse(ctx, o->chat_template, &L.rec.tmpl);
        L.rec.have_tmpl = !st;
    }
    for (size_t i = 0; !st && i < npaths; i++) st = load_file(ctx, ds, &L, o, (uint32_t)i);
    dt_record_encoder_free(&L.rec);
    dt_ids_free(&L.ids);
    dt_ids_free(&L.labels);
    if (!st && !ds->n)
        st = dt_fail(ctx, DT_EINPUT, "%s%s: no usable examples (%zu bad lines skipped, %zu without any trained token)",
                     paths[0], npaths > 1 ? " and the other files" : "", ds->stats.n_bad_lines, ds->stats.n_untrained);
    if (st) {
        dt_dataset_free(ds);
        return st;
    }
    ds->stats.n_examples = ds->n;
    if (ds->stats.n_truncated)
        dt_warn(ctx, "%zu of %zu examples %s longer than max_seq_len (%lld tokens) and truncated", ds->stats.n_truncated,
                ds->n, ds->stats.n_truncated > 1 ? "were" : "was", (long long)ds->max_seq_len);
    if (ds->stats.n_untrained)
        dt_warn(ctx, "%zu example%s had no trained token (no answer%s) and %s dropped", ds->stats.n_untrained,
                ds->stats.n_untrained > 1 ? "s" : "", ds->max_seq_len ? ", or the answer was cut off by max_seq_len" : "",
                ds->stats.n_untrained > 1 ? "were" : "was");
    int32_t pad = tok ? dt_tokenizer_pad_id(tok) : -1, eos = tok ? dt_tokenizer_eos_id(tok) : -1;
    ds->pad_id = pad >= 0 ? pad : eos >= 0 ? eos : 0;
    *out = ds;
    return DT_OK;
}

size_t dt_dataset_size(const dt_dataset *ds) { return ds->n; }
const dt_dataset_stats *dt_dataset_get_stats(const dt_dataset *ds) { return &ds->stats; }
int64_t dt_dataset_max_seq_len(const dt_dataset *ds) { return ds->max_seq_len; }
int32_t dt_dataset_pad_id(const dt_dataset *ds) { return ds->pad_id; }
const char *dt_dataset_chat_template(const dt_dataset *ds) { return ds->tmpl_name; }

int64_t dt_dataset_example(const dt_dataset *ds, size_t i, const int32_t **ids, const int32_t **labels) {
    if (ids) *ids = ds->ids + ds->off[i];
    if (labels) *labels = ds->labels + ds->off[i];
    return (int64_t)(ds->off[i + 1] - ds->off[i]);
}

int32_t dt_dataset_first_label(const dt_dataset *ds, size_t i) { return ds->src[i].first_label; }

const char *dt_dataset_example_source(const dt_dataset *ds, size_t i, int64_t *line, bool *truncated) {
    if (line) *line = ds->src[i].line;
    if (truncated) *truncated = ds->src[i].truncated;
    return ds->files[ds->src[i].file];
}

static int cmp_size(const void *a, const void *b) {
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

int dt_dataset_split(dt_ctx *ctx, const dt_dataset *ds, double val_frac, uint64_t seed, size_t **train,
                     size_t *n_train, size_t **val, size_t *n_val) {
    *train = *val = NULL;
    *n_train = *n_val = 0;
    if (!(val_frac >= 0 && val_frac < 1)) return dt_fail(ctx, DT_EINPUT, "val_split must be in [0, 1), got %g", val_frac);
    size_t n = ds->n, k = (size_t)(val_frac * (double)n + 0.5);
    if (val_frac > 0 && k == 0) k = 1;
    if (k >= n)
        return dt_fail(ctx, DT_EINPUT, "val_split %g leaves no training examples out of %zu", val_frac, n);
    size_t *perm = malloc(n * sizeof *perm);
    if (!perm) return dt_fail(ctx, DT_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) perm[i] = i;
    dt_rng rng = {seed};
    for (size_t i = n - 1; i > 0; i--) { // Fisher-Yates
        size_t j = (size_t)dt_rng_below(&rng, i + 1), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    size_t *v = malloc((k ? k : 1) * sizeof *v), *t = malloc((n - k) * sizeof *t);
    if (!v || !t) {
        free(perm), free(v), free(t);
        return dt_fail(ctx, DT_ENOMEM, "out of memory");
    }
    memcpy(v, perm, k * sizeof *v);
    memcpy(t, perm + k, (n - k) * sizeof *t);
    free(perm);
    qsort(v, k, sizeof *v, cmp_size);
    qsort(t, n - k, sizeof *t, cmp_size);
    *train = t, *n_train = n - k, *val = v, *n_val = k;
    return DT_OK;
}
