// Tokenizer entry points: loading (which format), the encode pipeline, decoding, lookups.
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "datasets/tokenizer_impl.h"
#include "models/gguf.h"

void dt_ids_free(dt_ids *ids) {
    free(ids->v);
    ids->v = NULL;
    ids->n = ids->cap = 0;
}

int dt_ids_reserve(dt_ctx *ctx, dt_ids *ids, size_t extra) {
    return tk_grow(ctx, (void **)&ids->v, &ids->cap, ids->n + extra, sizeof *ids->v);
}

int dt_ids_push(dt_ctx *ctx, dt_ids *ids, int32_t id) {
    if (ids->n == ids->cap) {
        int rc = dt_ids_reserve(ctx, ids, 1);
        if (rc) return rc;
    }
    ids->v[ids->n++] = id;
    return DT_OK;
}

int dt_ids_append(dt_ctx *ctx, dt_ids *ids, const int32_t *src, size_t n) {
    int rc = dt_ids_reserve(ctx, ids, n);
    if (rc) return rc;
    if (n) memcpy(ids->v + ids->n, src, n * sizeof *src);
    ids->n += n;
    return DT_OK;
}

// ---- loading

static bool is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static char *join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (p) {
        memcpy(p, dir, a);
        p[a] = '/';
        memcpy(p + a + 1, name, b + 1);
    }
    return p;
}

// A tokenizer.json starts with '{', a GGUF file with "GGUF"; a llama2.c tokenizer.bin starts with an int32.
static int sniff(dt_ctx *ctx, const char *path, bool *json, bool *gguf) {
    FILE *f = fopen(path, "rb");
    if (!f) return dt_fail(ctx, DT_EINPUT, "%s: cannot open", path);
    char magic[4] = {0};
    *gguf = fread(magic, 1, 4, f) == 4 && !memcmp(magic, DT_GGUF_MAGIC, 4);
    rewind(f);
    int c;
    while ((c = fgetc(f)) == ' ' || c == '\n' || c == '\r' || c == '\t') {}
    fclose(f);
    *json = c == '{';
    return DT_OK;
}

static int load_gguf_path(dt_ctx *ctx, dt_tokenizer *tok, const char *path) {
    dt_gguf_file *f;
    int rc = dt_gguf_open(ctx, path, &f);
    if (rc) return rc;
    rc = tk_load_gguf(ctx, tok, f);
    dt_gguf_close(f);
    return rc;
}

static int load_path(dt_ctx *ctx, dt_tokenizer *tok, const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) return dt_fail(ctx, DT_EINPUT, "%s: no such tokenizer file or folder", path);
    char *json = NULL, *config = NULL, *bin = NULL;
    int rc = DT_OK;
    if (S_ISDIR(st.st_mode)) {
        json = join(path, "tokenizer.json");
        config = join(path, "tokenizer_config.json");
        bin = join(path, "tokenizer.bin");
        if (!json || !config || !bin) rc = dt_fail(ctx, DT_ENOMEM, "%s: out of memory", path);
        else if (is_file(json)) rc = tk_load_hf(ctx, tok, json, is_file(config) ? config : NULL);
        else if (is_file(bin)) rc = tk_load_llama2c(ctx, tok, bin);
        else rc = dt_fail(ctx, DT_EINPUT, "%s: the folder has no tokenizer.json or tokenizer.bin", path);
    } else {
        bool is_json = false, is_gguf = false;
        rc = sniff(ctx, path, &is_json, &is_gguf);
        if (!rc && is_gguf) {
            rc = load_gguf_path(ctx, tok, path);
        } else if (!rc && is_json) {
            // Beside a file named tokenizer.json, tokenizer_config.json belongs to the same model.
            const char *slash = strrchr(path, '/');
            const char *base = slash ? slash + 1 : path;
            if (!strcmp(base, "tokenizer.json")) {
                size_t dl = slash ? (size_t)(slash - path) : 1;
                char *dir = strndup(slash ? path : ".", dl);
                config = dir ? join(dir, "tokenizer_config.json") : NULL;
                free(dir);
                if (!config) rc = dt_fail(ctx, DT_ENOMEM, "%s: out of memory", path);
            }
            if (!rc) rc = tk_load_hf(ctx, tok, path, config && is_file(config) ? config : NULL);
        } else if (!rc) {
            rc = tk_load_llama2c(ctx, tok, path);
        }
    }
    free(json);
    free(config);
    free(bin);
    return rc;
}

static dt_tokenizer *tok_new(const char *path) {
    dt_tokenizer *tok = calloc(1, sizeof *tok);
    if (!tok) return NULL;
    tok->unk_id = tok->bos = tok->eos = tok->pad = tok->eot = tok->space_id = -1;
    for (int b = 0; b < 256; b++) tok->byte_id[b] = tok->fallback_id[b] = -1;
    if (!(tok->path = strdup(path))) {
        free(tok);
        return NULL;
    }
    return tok;
}

// Finishes a load that returned rc: the word cache on success, everything freed on failure.
static int tok_done(dt_ctx *ctx, dt_tokenizer *tok, int rc, dt_tokenizer **out) {
    if (!rc) rc = tk_cache_init(ctx, &tok->cache);
    if (rc) {
        dt_tokenizer_free(tok);
        return rc;
    }
    *out = tok;
    return DT_OK;
}

int dt_tokenizer_load(dt_ctx *ctx, const char *path, dt_tokenizer **out) {
    *out = NULL;
    dt_tokenizer *tok = tok_new(path);
    if (!tok) return dt_fail(ctx, DT_ENOMEM, "%s: out of memory", path);
    return tok_done(ctx, tok, load_path(ctx, tok, path), out);
}

int dt_tokenizer_load_gguf(dt_ctx *ctx, const dt_gguf_file *f, dt_tokenizer **out) {
    *out = NULL;
    dt_tokenizer *tok = tok_new(f->path);
    if (!tok) return dt_fail(ctx, DT_ENOMEM, "%s: out of memory", f->path);
    return tok_done(ctx, tok, tk_load_gguf(ctx, tok, f), out);
}

int tk_finish_ids(dt_ctx *ctx, dt_tokenizer *tok) {
    int32_t top = -1;
    const tk_strmap *v = &tok->vocab;
    for (size_t i = 0; i <= v->mask; i++)
        if (v->slot[i].hash && v->slot[i].id > top) top = v->slot[i].id;
    for (size_t a = 0; a < tok->n_added; a++)
        if (tok->added[a].id > top) top = tok->added[a].id;
    // The id tables are dense (one entry per id up to the largest), so a file naming id 2^30 would
    // allocate gigabytes before anything else is checked (found by fuzz_tokenizer). The largest real
    // vocabularies have about 260,000 ids; 2^24 leaves room for any of them.
    if (top >= TK_MAX_IDS)
        return dt_fail(ctx, DT_EINPUT, "%s: token id %d is too large (ids must be below %d; real vocabularies have at most a few hundred thousand)",
                       tok->path, (int)top, TK_MAX_IDS);
    tok->n_ids = top + 1;
    tok->id_str = calloc((size_t)tok->n_ids + 1, sizeof *tok->id_str);
    tok->special = calloc((size_t)tok->n_ids + 1, 1);
    if (!tok->id_str || !tok->special) return dt_fail(ctx, DT_ENOMEM, "%s: out of memory", tok->path);
    // Added tokens override vocabulary strings, as in HF's id_to_token. When two strings share an id (HF
    // picks either), the one stored first names it, so the choice is the same on every load.
    for (size_t i = 0; i <= v->mask; i++) {
        const tk_slot *x = &v->slot[i];
        if (x->hash && (!tok->id_str[x->id] || x->off < (uint32_t)(tok->id_str[x->id] - v->arena)))
            tok->id_str[x->id] = tk_strmap_key(v, x);
    }
    for (size_t a = 0; a < tok->n_added; a++) {
        tok->id_str[tok->added[a].id] = tok->added[a].content;
        tok->special[tok->added[a].id] = tok->added[a].special;
    }
    return DT_OK;
}

void dt_tokenizer_free(dt_tokenizer *tok) {
    if (!tok) return;
    for (int i = 0; i < 3; i++) json_decref(tok->gguf_desc[i]);
    free(tok->path);
    tk_strmap_free(&tok->vocab);
    free(tok->id_str);
    free(tok->special);
    tk_pairmap_free(&tok->merges);
    free(tok->scores);
    tk_buf_free(&tok->pieces);
    for (size_t a = 0; a < tok->n_added; a++) free(tok->added[a].content);
    free(tok->added);
    tk_strmap_free(&tok->added_map);
    tk_trie_free(&tok->raw);
    tk_trie_free(&tok->norm);
    tk_norms_free(tok->norms, tok->n_norms);
    tk_pres_free(tok->pres, tok->n_pres);
    tk_decs_free(tok->decs, tok->n_decs);
    free(tok->dec_unsupported);
    free(tok->prefix);
    free(tok->suffix);
    free(tok->chat_template);
    tk_cache_free(&tok->cache);
    free(tok);
}

// ---- encoding

// Cuts s before each run of '▁' that follows another character (allowed when tok->split_meta).
static int encode_meta_words(dt_ctx *ctx, const dt_tokenizer *tok, tk_work *w, const char *s, size_t n,
                             dt_ids *ids) {
    static const char META[3] = {'\xE2', '\x96', '\x81'};
    size_t start = 0;
    int rc = DT_OK;
    for (size_t i = 1; i + 3 <= n && !rc; i++) {
        if (memcmp(s + i, META, 3) || (i >= 3 && !memcmp(s + i - 3, META, 3))) continue;
        rc = tk_bpe_piece(ctx, tok, w, s + start, i - start, ids);
        start = i;
    }
    return rc ? rc : tk_bpe_piece(ctx, tok, w, s + start, n - start, ids);
}

// Pre-tokenizes normalized text and runs the model on each piece.
static int encode_text(dt_ctx *ctx, const dt_tokenizer *tok, tk_work *w, const char *s, size_t n, bool first,
                       dt_ids *ids) {
    if (tok->split_meta) return encode_meta_words(ctx, tok, w, s, n, ids);
    const tk_piece *pc;
    size_t np;
    int rc = tk_pretokenize(ctx, tok, w, s, n, first, &pc, &np);
    for (size_t i = 0; i < np && !rc; i++) rc = tk_bpe_piece(ctx, tok, w, pc[i].p, pc[i].n, ids);
    return rc;
}

// One section between raw-matched added tokens: normalize, then match the normalized added tokens.
static int encode_section(dt_ctx *ctx, const dt_tokenizer *tok, tk_work *w, const char *s, size_t n, bool first,
                          dt_ids *ids) {
    const char *ns;
    size_t nn;
    int rc = tk_normalize(ctx, tok, w, s, n, &ns, &nn);
    if (rc || !tok->norm.n) return rc ? rc : encode_text(ctx, tok, w, ns, nn, first, ids);
    size_t k;
    if ((rc = tk_split_added(ctx, tok, &tok->norm, w, 1, ns, nn, &k))) return rc;
    for (size_t i = 0; i < k && !rc; i++) {
        const tk_seg *g = &w->seg[1][i];
        rc = g->id >= 0 ? dt_ids_push(ctx, ids, g->id)
                        : encode_text(ctx, tok, w, ns + g->off, g->len, first && g->off == 0, ids);
    }
    return rc;
}

static int encode_hf(dt_ctx *ctx, const dt_tokenizer *tok, tk_work *w, const char *text, size_t len, dt_ids *ids) {
    w->md = pcre2_match_data_create(1, NULL);
    if (!w->md) return dt_fail(ctx, DT_ENOMEM, "tokenizer: out of memory");
    size_t k;
    int rc = tk_split_added(ctx, tok, &tok->raw, w, 0, text, len, &k);
    for (size_t i = 0; i < k && !rc; i++) {
        const tk_seg *g = &w->seg[0][i];
        rc = g->id >= 0 ? dt_ids_push(ctx, ids, g->id)
                        : encode_section(ctx, tok, w, text + g->off, g->len, g->off == 0, ids);
    }
    return rc;
}

int dt_tokenizer_encode(dt_ctx *ctx, const dt_tokenizer *tok, const char *text, size_t len, bool add_special,
                        dt_ids *ids) {
    size_t valid = tk_utf8_valid_prefix(text, len);
    if (valid != len) return dt_fail(ctx, DT_EINPUT, "text to tokenize: invalid UTF-8 at byte %zu", valid);
    size_t n0 = ids->n;
    // Text averages 3-5 bytes per id; reserving that avoids most regrowing in the loop.
    int rc = dt_ids_reserve(ctx, ids, len / 4 + tok->n_prefix + tok->n_suffix + 16);
    if (!rc && add_special) rc = dt_ids_append(ctx, ids, tok->prefix, tok->n_prefix);
    tk_work w = {0};
    if (!rc) rc = tok->model == TK_MODEL_LLAMA2C ? tk_llama2c_encode(ctx, tok, &w, text, len, ids)
                                                 : encode_hf(ctx, tok, &w, text, len, ids);
    tk_work_free(&w);
    if (!rc && add_special) rc = dt_ids_append(ctx, ids, tok->suffix, tok->n_suffix);
    if (rc) ids->n = n0;
    return rc;
}

// ---- decoding and lookups

int dt_tokenizer_decode(dt_ctx *ctx, const dt_tokenizer *tok, const int32_t *ids, size_t n, bool skip_special,
                        char **out, size_t *out_len) {
    *out = NULL;
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= tok->n_ids || !tok->id_str[ids[i]])
            return dt_fail(ctx, DT_EINPUT, "decode: id %d at position %zu is not in the vocabulary (size %d)",
                           ids[i], i, tok->n_ids);
    tk_buf b = {0};
    int rc = tk_buf_reserve(ctx, &b, 16);
    if (!rc) rc = tok->model == TK_MODEL_LLAMA2C ? tk_llama2c_decode(ctx, tok, ids, n, skip_special, &b)
                                                 : tk_decode_hf(ctx, tok, ids, n, skip_special, &b);
    if (rc) {
        tk_buf_free(&b);
        return rc;
    }
    b.p[b.n] = 0;
    *out = b.p;
    if (out_len) *out_len = b.n;
    return DT_OK;
}

int32_t dt_tokenizer_token_to_id(const dt_tokenizer *tok, const char *token) {
    size_t n = strlen(token);
    int32_t id = tk_strmap_get(&tok->added_map, token, n);
    return id >= 0 ? id : tk_strmap_get(&tok->vocab, token, n);
}

const char *dt_tokenizer_id_to_token(const dt_tokenizer *tok, int32_t id) {
    return id >= 0 && id < tok->n_ids ? tok->id_str[id] : NULL;
}

int32_t dt_tokenizer_bos_id(const dt_tokenizer *tok) { return tok->bos; }
int32_t dt_tokenizer_eos_id(const dt_tokenizer *tok) { return tok->eos; }
int32_t dt_tokenizer_pad_id(const dt_tokenizer *tok) { return tok->pad; }
int32_t dt_tokenizer_vocab_size(const dt_tokenizer *tok) { return tok->n_ids; }
int32_t dt_tokenizer_eot_id(const dt_tokenizer *tok) { return tok->eot; }
const char *dt_tokenizer_chat_template(const dt_tokenizer *tok) { return tok->chat_template; }
const char *dt_tokenizer_chat_template_origin(const dt_tokenizer *tok) {
    return tok->from_gguf ? "tokenizer.chat_template" : "tokenizer_config.json: chat_template";
}
const char *dt_tokenizer_path(const dt_tokenizer *tok) { return tok->path; }
bool dt_tokenizer_from_gguf(const dt_tokenizer *tok) { return tok->from_gguf; }

bool dt_tokenizer_is_special(const dt_tokenizer *tok, int32_t id) {
    return id >= 0 && id < tok->n_ids && tok->special[id];
}
