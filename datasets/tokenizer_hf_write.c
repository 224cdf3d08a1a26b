// A tokenizer read from a GGUF file's tokenizer.ggml.* metadata (tokenizer_gguf.c), written back as the
// Hugging Face files a model folder carries: tokenizer.json, tokenizer_config.json and
// special_tokens_map.json, spelled as the Llama 3, Qwen3 and Mistral files spell them, so that both our
// loader and HF's `tokenizers` take them.
//   - normalizer, pre_tokenizer, decoder: the reader's own description of its steps (tok->gguf_desc),
//     which is what it runs, so the two cannot drift apart.
//   - model: BPE with the vocabulary (every id's text, added tokens included; the unused rows are holes)
//     and the merges in rank order. For "llama" GGUFs the merges are derived
//     from the scores, where equal scores share a rank; tokenizer.json ranks by position, so ties are
//     listed as HF's SentencePiece converter lists them: by the merged token's id, then by the left and
//     right ids. (BPE then breaks a tie between two placements of one pair by position either way; only
//     two different pairs of equal score competing in one word could come out differently.)
//   - added_tokens: control (special) and user-defined tokens, matched in the raw text (normalized false).
//   - post_processor: TemplateProcessing with the BOS/EOS the GGUF adds (add_bos_token / add_eos_token),
//     behind a ByteLevel step for byte-level models as Llama 3's file has it; null when nothing is added
//     to a SentencePiece-style model.
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "datasets/tokenizer_impl.h"
#include "models/atomic_file.h"

const char *const DT_TOKENIZER_HF_NAMES[DT_TOKENIZER_HF_N] = {"tokenizer.json", "tokenizer_config.json",
                                                             "special_tokens_map.json"};

// An added token as tokenizer.json lists it (tokenizer_config.json's added_tokens_decoder has the same
// fields except the id).
static json_t *added_json(const tk_added *a, bool with_id) {
    json_t *o = with_id ? json_pack("{s:i}", "id", (json_int_t)a->id) : json_object();
    if (!o) return NULL;
    json_object_set_new(o, "content", json_stringn(a->content, a->len));
    json_object_set_new(o, "single_word", json_false());
    json_object_set_new(o, "lstrip", json_false());
    json_object_set_new(o, "rstrip", json_false());
    json_object_set_new(o, "normalized", json_false());
    json_object_set_new(o, "special", json_boolean(a->special));
    return o;
}

// The model's vocabulary in id order: every id whose text maps back to it (a text spelled twice keeps
// its last id, as the reader does), and the added tokens too, as Mistral's file has them. HF's
// tokenizers gives an added token that is not in the vocabulary the next id after the vocabulary's size,
// whatever id the file says, which is right only for a run of added tokens at the end with no hole
// before it (Llama 3, Qwen3); in the vocabulary every added token keeps its id (and the unknown token,
// which HF's BPE looks up there, is found).
static json_t *vocab_json(const dt_tokenizer *tok) {
    uint8_t *added = calloc((size_t)tok->n_ids + 1, 1);
    json_t *v = added ? json_object() : NULL;
    for (size_t i = 0; added && i < tok->n_added; i++) added[tok->added[i].id] = 1;
    for (int32_t i = 0; v && i < tok->n_ids; i++) {
        const char *s = tok->id_str[i];
        int32_t in_vocab = s ? tk_strmap_get(&tok->vocab, s, strlen(s)) : -1;
        // (an added token spelled like a vocabulary token leaves that token its entry: a JSON object has
        // one per text)
        if (!s || (in_vocab != i && (in_vocab >= 0 || !added[i]))) continue;
        if (json_object_set_new(v, s, json_integer(i))) {
            json_decref(v);
            v = NULL;
        }
    }
    free(added);
    return v;
}

typedef struct { int32_t rank, id, a, b; } merge_row;

static int by_rank(const void *x, const void *y) {
    const merge_row *p = x, *q = y;
    if (p->rank != q->rank) return p->rank < q->rank ? -1 : 1;
    if (p->id != q->id) return p->id < q->id ? -1 : 1;
    if (p->a != q->a) return p->a < q->a ? -1 : 1;
    return (p->b > q->b) - (p->b < q->b);
}

// The merges in rank order: "left right" strings, as tokenizers before 0.20 (transformers 4.40's) read
// them, unless a token holds a space; then ["left", "right"] pairs, which only 0.20 and later read.
static json_t *merges_json(const dt_tokenizer *tok) {
    const tk_pairmap *m = &tok->merges;
    size_t n = 0;
    for (size_t i = 0; m->slot && i <= m->mask; i++) n += m->slot[i].key != UINT64_MAX;
    merge_row *r = malloc((n ? n : 1) * sizeof *r);
    if (!r) return NULL;
    size_t k = 0;
    bool spaces = false;
    for (size_t i = 0; m->slot && i <= m->mask; i++) {
        const tk_pair *p = &m->slot[i];
        if (p->key == UINT64_MAX) continue;
        r[k] = (merge_row){p->rank, p->id, (int32_t)(p->key >> 32), (int32_t)(uint32_t)p->key};
        spaces |= strchr(tok->id_str[r[k].a], ' ') || strchr(tok->id_str[r[k].b], ' ');
        k++;
    }
    qsort(r, n, sizeof *r, by_rank);
    json_t *out = json_array();
    tk_buf b = {0};
    dt_ctx scratch; // tk_buf's messages are not wanted: a failure here is out of memory
    dt_ctx_init(&scratch);
    for (size_t i = 0; out && i < n; i++) {
        const char *x = tok->id_str[r[i].a], *y = tok->id_str[r[i].b];
        json_t *e;
        if (spaces) {
            e = json_pack("[s, s]", x, y);
        } else {
            b.n = 0;
            if (tk_buf_put(&scratch, &b, x, strlen(x)) || tk_buf_put(&scratch, &b, " ", 1) ||
                tk_buf_put(&scratch, &b, y, strlen(y)))
                e = NULL;
            else
                e = json_stringn(b.p, b.n);
        }
        if (!e || json_array_append_new(out, e)) {
            json_decref(out);
            out = NULL;
        }
    }
    tk_buf_free(&b);
    free(r);
    return out;
}

// A TemplateProcessing "single" or "pair" list: prefix, the sequence(s), suffix, as Llama 3's and
// Mistral's files put BOS before each sequence of a pair.
static json_t *template_items(const dt_tokenizer *tok, bool pair) {
    json_t *l = json_array();
    for (int s = 0; l && s < (pair ? 2 : 1); s++) {
        for (size_t i = 0; i < tok->n_prefix; i++)
            json_array_append_new(l, json_pack("{s:{s:s, s:i}}", "SpecialToken", "id", tok->id_str[tok->prefix[i]], "type_id", s));
        json_array_append_new(l, json_pack("{s:{s:s, s:i}}", "Sequence", "id", s ? "B" : "A", "type_id", s));
        for (size_t i = 0; i < tok->n_suffix; i++)
            json_array_append_new(l, json_pack("{s:{s:s, s:i}}", "SpecialToken", "id", tok->id_str[tok->suffix[i]], "type_id", s));
    }
    return l;
}

static json_t *post_processor_json(const dt_tokenizer *tok) {
    json_t *tmpl = NULL;
    if (tok->n_prefix || tok->n_suffix) {
        json_t *specials = json_object();
        for (size_t i = 0; specials && i < tok->n_prefix + tok->n_suffix; i++) {
            int32_t id = i < tok->n_prefix ? tok->prefix[i] : tok->suffix[i - tok->n_prefix];
            const char *s = tok->id_str[id];
            json_object_set_new(specials, s, json_pack("{s:s, s:[i], s:[s]}", "id", s, "ids", (json_int_t)id, "tokens", s));
        }
        tmpl = json_pack("{s:s, s:o, s:o, s:o}", "type", "TemplateProcessing", "single", template_items(tok, false), "pair",
                         template_items(tok, true), "special_tokens", specials);
        if (!tmpl) return NULL;
    }
    if (!tok->byte_level) return tmpl ? tmpl : json_null();
    // Offsets only (trim_offsets false: it changes nothing), as Qwen's file has it.
    json_t *bl = json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 0, "use_regex", 0);
    return tmpl ? json_pack("{s:s, s:[o, o]}", "type", "Sequence", "processors", bl, tmpl) : bl;
}

static json_t *desc(const dt_tokenizer *tok, int i) {
    return tok->gguf_desc[i] ? json_deep_copy(tok->gguf_desc[i]) : json_null();
}

static json_t *tokenizer_json(const dt_tokenizer *tok) {
    json_t *added = json_array();
    for (size_t i = 0; added && i < tok->n_added; i++)
        if (json_array_append_new(added, added_json(&tok->added[i], true))) {
            json_decref(added);
            added = NULL;
        }
    json_t *vocab = vocab_json(tok), *merges = vocab ? merges_json(tok) : NULL;
    if (!added || !vocab || !merges) {
        json_decref(added);
        json_decref(vocab);
        json_decref(merges);
        return NULL;
    }
    json_t *unk = tok->unk_id >= 0 && tok->id_str[tok->unk_id] ? json_string(tok->id_str[tok->unk_id]) : json_null();
    json_t *model = json_pack("{s:s, s:n, s:o, s:n, s:n, s:b, s:b, s:b, s:o, s:o}", "type", "BPE", "dropout", "unk_token", unk,
                              "continuing_subword_prefix", "end_of_word_suffix", "fuse_unk", tok->fuse_unk, "byte_fallback",
                              tok->byte_fallback, "ignore_merges", tok->ignore_merges, "vocab", vocab, "merges", merges);
    // (json_pack's "o" takes its reference even when it fails, so nothing leaks on a NULL.)
    return json_pack("{s:s, s:n, s:n, s:o, s:o, s:o, s:o, s:o, s:o}", "version", "1.0", "truncation", "padding", "added_tokens",
                     added, "normalizer", desc(tok, 0), "pre_tokenizer", desc(tok, 1), "post_processor",
                     post_processor_json(tok), "decoder", desc(tok, 2), "model", model);
}

static json_t *token_text(const dt_tokenizer *tok, int32_t id) {
    return id >= 0 && id < tok->n_ids && tok->id_str[id] ? json_string(tok->id_str[id]) : json_null();
}

static json_t *config_json(const dt_tokenizer *tok) {
    json_t *dec = json_object();
    for (size_t i = 0; dec && i < tok->n_added; i++) {
        char key[16];
        snprintf(key, sizeof key, "%d", tok->added[i].id);
        json_object_set_new(dec, key, added_json(&tok->added[i], false));
    }
    // The template decides what encode adds; these flags say the same to transformers' Llama tokenizers,
    // which rebuild the post-processor from them.
    bool add_bos = tok->n_prefix && tok->prefix[0] == tok->bos, add_eos = tok->n_suffix && tok->suffix[tok->n_suffix - 1] == tok->eos;
    json_t *c = json_pack("{s:b, s:b, s:o, s:o, s:b, s:o, s:o, s:s, s:o}", "add_bos_token", add_bos, "add_eos_token", add_eos,
                          "added_tokens_decoder", dec, "bos_token", token_text(tok, tok->bos), "clean_up_tokenization_spaces", 0,
                          "eos_token", token_text(tok, tok->eos), "pad_token", token_text(tok, tok->pad), "tokenizer_class",
                          "PreTrainedTokenizerFast", "unk_token", token_text(tok, tok->unk_id));
    if (c && tok->chat_template && json_object_set_new(c, "chat_template", json_string(tok->chat_template))) {
        json_decref(c);
        c = NULL;
    }
    return c;
}

static json_t *special_map_json(const dt_tokenizer *tok) {
    json_t *m = json_object();
    const char *names[] = {"bos_token", "eos_token", "pad_token", "unk_token"};
    const int32_t ids[] = {tok->bos, tok->eos, tok->pad, tok->unk_id};
    for (int i = 0; m && i < 4; i++) {
        if (ids[i] < 0 || ids[i] >= tok->n_ids || !tok->id_str[ids[i]]) continue;
        json_object_set_new(m, names[i], json_pack("{s:s, s:b, s:b, s:b, s:b}", "content", tok->id_str[ids[i]], "lstrip", 0,
                                                   "normalized", 0, "rstrip", 0, "single_word", 0));
    }
    return m;
}

void dt_tokenizer_hf_free(dt_tokenizer_hf *hf) {
    for (int i = 0; i < DT_TOKENIZER_HF_N; i++) free(hf->text[i]);
    memset(hf, 0, sizeof *hf);
}

int dt_tokenizer_hf_json(dt_ctx *ctx, const dt_tokenizer *tok, dt_tokenizer_hf *out) {
    memset(out, 0, sizeof *out);
    if (!tok->from_gguf || tok->model != TK_MODEL_BPE)
        return dt_fail(ctx, DT_EINPUT, "%s: only a tokenizer read from a GGUF file's metadata can be written as tokenizer.json",
                       tok->path);
    json_t *j[DT_TOKENIZER_HF_N] = {tokenizer_json(tok), config_json(tok), special_map_json(tok)};
    int rc = DT_OK;
    for (int i = 0; i < DT_TOKENIZER_HF_N; i++) {
        // Indented as transformers writes these files; a newline at the end as it does.
        char *s = j[i] && !rc ? json_dumps(j[i], JSON_INDENT(2)) : NULL;
        size_t n = s ? strlen(s) : 0;
        char *t = s ? realloc(s, n + 2) : NULL;
        if (!t) {
            free(s);
            if (!rc) rc = dt_fail(ctx, DT_ENOMEM, "%s: out of memory writing %s", tok->path, DT_TOKENIZER_HF_NAMES[i]);
        } else {
            t[n] = '\n';
            t[n + 1] = 0;
            out->text[i] = t;
            out->len[i] = n + 1;
        }
        json_decref(j[i]);
    }
    if (rc) dt_tokenizer_hf_free(out);
    return rc;
}

int dt_tokenizer_hf_write(dt_ctx *ctx, const dt_tokenizer_hf *hf, const char *dir) {
    for (int i = 0; i < DT_TOKENIZER_HF_N; i++) {
        char path[4096];
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, DT_TOKENIZER_HF_NAMES[i]) >= sizeof path)
            return dt_fail(ctx, DT_EINPUT, "%s: path too long", dir);
        int rc = dt_atomic_write(ctx, path, hf->text[i], hf->len[i]);
        if (rc) return rc;
    }
    return DT_OK;
}
