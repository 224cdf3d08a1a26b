// The tokenizer read back from a GGUF's tokenizer.ggml.* metadata (datasets/tokenizer_gguf.c): each
// tokenizer folder is written into a vocabulary-only GGUF by our writer (models/gguf_tokenizer.c), read
// back, and must encode every corpus line (tests/data/tokenizer/corpus.jsonl, plus texts with special
// tokens and chat-rendered conversations) to the ids of the tokenizer loaded from the folder itself — which
// test_tokenizer checks against the reference ids of tokenize_ref.js — with and without BOS/EOS, and decode
// them to the same text; the GGUF tokenizer written back as tokenizer.json + tokenizer_config.json
// (dt_tokenizer_hf_json, what merge writes for a GGUF base) must do the same. Then hostile metadata: each broken key is refused with a message naming it.
#include <jansson.h>
#include <math.h>
#include <sys/stat.h>
#include "autograd/context.h"
#include "datasets/dataset.h"
#include "datasets/tokenizer.h"
#include "models/gguf.h"
#include "models/gguf_tokenizer.h"
#include "models/gguf_write.h"
#include "tests/corpus_lines.h"
#include "tests/file_util.h"
#include "tests/test_util.h"

#define CORPUS "tests/data/tokenizer/corpus.jsonl"

static char g_dir[256];

// Writes the tokenizer keys of folder dir into a vocabulary-only GGUF at out.
static int write_vocab_gguf(dt_ctx *ctx, const char *dir, int64_t n_vocab, const char *out) {
    dt_gguf_writer *w;
    dt_gguf_tok_opts o = {.n_vocab = n_vocab};
    int st = dt_gguf_writer_new(ctx, out, &w);
    st = st ? st : dt_gguf_set_str(ctx, w, "general.architecture", "llama");
    st = st ? st : dt_gguf_add_tokenizer(ctx, w, dir, &o);
    st = st ? st : dt_gguf_writer_finish(ctx, w);
    dt_gguf_writer_free(w);
    return st;
}

static void ids_str(const dt_ids *ids, char *buf, size_t cap) {
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (size_t i = 0; i < ids->n && k + 16 < cap; i++) k += (size_t)snprintf(buf + k, cap - k, i ? ",%d" : "%d", ids->v[i]);
    snprintf(buf + k, cap - k, "]");
}

// Encodes every text with both tokenizers (add_special false and true) and decodes the ids with both
// (skip_special false and true); counts the texts where anything differs.
static size_t compare_texts(const char *name, const dt_tokenizer *hf, const dt_tokenizer *gg, const lines *t,
                            bool compare_decode, size_t *n_special) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_ids a = {0}, b = {0};
    size_t bad = 0;
    *n_special = 0;
    for (size_t i = 0; i < t->n; i++) {
        bool differs = false;
        for (int add = 0; add < 2 && !differs; add++) {
            a.n = b.n = 0;
            int ra = dt_tokenizer_encode(&ctx, hf, t->s[i], t->len[i], add, &a);
            int rb = dt_tokenizer_encode(&ctx, gg, t->s[i], t->len[i], add, &b);
            differs = ra != rb || a.n != b.n || (a.n && memcmp(a.v, b.v, a.n * sizeof *a.v));
            if (differs && bad < 3) {
                char x[400], y[400];
                ids_str(&a, x, sizeof x);
                ids_str(&b, y, sizeof y);
                printf("  %s line %zu (add_special %d): tokenizer.json %s, GGUF %s\n", name, i + 1, add, x, y);
            }
            for (size_t k = 0; k < a.n && !add; k++) *n_special += dt_tokenizer_is_special(hf, a.v[k]);
            // Skipping special tokens drops different ones where the converter made an added token a
            // control token that tokenizer.json does not call special (see same_lookups).
            bool flags_agree = true;
            for (size_t k = 0; k < a.n && !differs; k++)
                flags_agree &= dt_tokenizer_is_special(hf, a.v[k]) == dt_tokenizer_is_special(gg, a.v[k]);
            for (int skip = 0; skip < (flags_agree ? 2 : 1) && !differs && compare_decode; skip++) {
                char *da = NULL, *db = NULL;
                size_t la = 0, lb = 0;
                ra = dt_tokenizer_decode(&ctx, hf, a.v, a.n, skip, &da, &la);
                rb = dt_tokenizer_decode(&ctx, gg, b.v, b.n, skip, &db, &lb);
                differs = ra != rb || la != lb || (la && memcmp(da, db, la));
                if (differs && bad < 3)
                    printf("  %s line %zu: decode (skip_special %d): tokenizer.json \"%s\", GGUF \"%s\"\n", name, i + 1, skip,
                           da ? da : "", db ? db : "");
                free(da);
                free(db);
            }
        }
        bad += differs;
    }
    dt_ids_free(&a);
    dt_ids_free(&b);
    return bad;
}

// decode(encode(x)) == x with the GGUF tokenizer on every line where it holds with the folder's (it does
// not for text that normalization changes, e.g. NFC, or that holds a literal U+2581 for SentencePiece).
static size_t round_trips(const dt_tokenizer *hf, const dt_tokenizer *gg, const lines *t, size_t *checked) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_ids ids = {0};
    size_t bad = 0;
    *checked = 0;
    for (size_t i = 0; i < t->n; i++) {
        bool back[2] = {false, false};
        char *out = NULL;
        size_t n = 0;
        for (int k = 0; k < 2; k++) {
            ids.n = 0;
            const dt_tokenizer *tok = k ? gg : hf;
            if (!dt_tokenizer_encode(&ctx, tok, t->s[i], t->len[i], false, &ids) &&
                !dt_tokenizer_decode(&ctx, tok, ids.v, ids.n, false, &out, &n))
                back[k] = n == t->len[i] && !memcmp(out, t->s[i], n);
            if (k == 1 && back[0] && !back[1] && bad++ < 3)
                printf("  round trip line %zu: got \"%s\" want \"%s\"\n", i + 1, out ? out : ctx.msg, t->s[i]);
            free(out);
            out = NULL;
        }
        *checked += back[0];
    }
    dt_ids_free(&ids);
    return bad;
}

// Conversations rendered with each tokenizer's own chat template: the examples' ids and labels must agree.
static void compare_chat(const char *name, const dt_tokenizer *hf, const dt_tokenizer *gg, const char *tmpl) {
    char data[300], label[128];
    snprintf(data, sizeof data, "%s/chat.jsonl", g_dir);
    snprintf(label, sizeof label, "gguf_tok_%s_chat_dataset", name);
    FILE *f = fopen(data, "w");
    // No system message: the Mistral template has none.
    fputs("{\"messages\": [{\"role\": \"user\", \"content\": \"What is 2 + 2?\"}, "
          "{\"role\": \"assistant\", \"content\": \"4, of course \\u00e9t\\u00e9 \\u4f60\\u597d!\"}]}\n"
          "{\"messages\": [{\"role\": \"user\", \"content\": \"  Spaces\\n\\nand   tabs\\t?\"}, {\"role\": \"assistant\", \"content\": \"Yes.\"}, "
          "{\"role\": \"user\", \"content\": \"Again: 12345 67\"}, {\"role\": \"assistant\", \"content\": \"No \\ud83d\\ude00\"}]}\n", f);
    fclose(f);
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_dataset *da = NULL, *db = NULL;
    dt_dataset_opts o = {"chat", tmpl, false, false, 0};
    int ra = dt_dataset_load(&ctx, (const char *const[]){data}, 1, hf, &o, &da);
    char msg_a[sizeof ctx.msg];
    snprintf(msg_a, sizeof msg_a, "%s", ctx.msg);
    int rb = dt_dataset_load(&ctx, (const char *const[]){data}, 1, gg, &o, &db);
    bool same = !ra && !rb && dt_dataset_size(da) == dt_dataset_size(db) && dt_dataset_size(da) == 2;
    int64_t total = 0;
    for (size_t i = 0; same && i < dt_dataset_size(da); i++) {
        const int32_t *ia, *la, *ib, *lb;
        int64_t na = dt_dataset_example(da, i, &ia, &la), nb = dt_dataset_example(db, i, &ib, &lb);
        same = na == nb && !memcmp(ia, ib, (size_t)na * sizeof *ia) && !memcmp(la, lb, (size_t)na * sizeof *la);
        total += na;
    }
    TEST_CHECK(label, same && total > 20, "tokenizer.json: %s; GGUF: %s; %s", ra ? msg_a : "ok", rb ? ctx.msg : "ok",
               same ? "too few tokens" : "ids or labels differ");
    dt_dataset_free(da);
    dt_dataset_free(db);
}

// Texts beyond the corpus: each tokenizer's special and added tokens inside text, and a chat rendering.
static void add_specials(lines *t) {
    static const char *const TEXTS[] = {
        "<|im_start|>user\nHello there<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nHi!<|im_end|>\n",
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWhat is 12345?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
        "<s>[INST] Hello  world [/INST] Answer</s>", "a<s>b</s>c<unk>d", " <s> leading", "<|endoftext|><|endoftext|>x",
        "<tool_call>\n{\"name\": \"f\"}\n</tool_call>", "<tool> ab <|im_end|>\n", "\xE2\x96\x81<s>\xE2\x96\x81",
        "<|im_start|", "<|reserved_special_token_5|>tail", "",
    };
    for (size_t i = 0; i < sizeof TEXTS / sizeof TEXTS[0]; i++) add_line(t, TEXTS[i], strlen(TEXTS[i]));
}

// Lookups that must agree: sizes, BOS/EOS/PAD, chat template, every id's string and special flag.
static bool same_lookups(const dt_tokenizer *hf, const dt_tokenizer *gg, bool pad, char *why, size_t cap) {
    int32_t n = dt_tokenizer_vocab_size(hf);
    const char *ta = dt_tokenizer_chat_template(hf), *tb = dt_tokenizer_chat_template(gg);
    if (n != dt_tokenizer_vocab_size(gg)) return snprintf(why, cap, "vocab size %d vs %d", n, dt_tokenizer_vocab_size(gg)), false;
    if (dt_tokenizer_bos_id(hf) != dt_tokenizer_bos_id(gg) || dt_tokenizer_eos_id(hf) != dt_tokenizer_eos_id(gg) ||
        (pad && dt_tokenizer_pad_id(hf) != dt_tokenizer_pad_id(gg)))
        return snprintf(why, cap, "bos/eos/pad %d/%d/%d vs %d/%d/%d", dt_tokenizer_bos_id(hf), dt_tokenizer_eos_id(hf),
                        dt_tokenizer_pad_id(hf), dt_tokenizer_bos_id(gg), dt_tokenizer_eos_id(gg), dt_tokenizer_pad_id(gg)), false;
    if ((ta == NULL) != (tb == NULL) || (ta && strcmp(ta, tb))) return snprintf(why, cap, "chat templates differ"), false;
    for (int32_t i = 0; i < n; i++) {
        const char *a = dt_tokenizer_id_to_token(hf, i), *b = dt_tokenizer_id_to_token(gg, i);
        // The converter (and so our writer) makes an added token that looks special (<|...|>) a control
        // token even where tokenizer.json does not call it special (Qwen3's <|fim_prefix|>, say).
        size_t len = a ? strlen(a) : 0;
        bool looks = len >= 4 && !strncmp(a, "<|", 2) && !strcmp(a + len - 2, "|>");
        bool flag_ok = dt_tokenizer_is_special(hf, i) == dt_tokenizer_is_special(gg, i) ||
                       (looks && dt_tokenizer_is_special(gg, i) && dt_tokenizer_token_to_id(hf, a) == i);
        if ((a == NULL) != (b == NULL) || (a && strcmp(a, b)) || !flag_ok)
            return snprintf(why, cap, "id %d: '%s'%s vs '%s'%s", i, a ? a : "(none)", dt_tokenizer_is_special(hf, i) ? " (special)" : "",
                            b ? b : "(none)", dt_tokenizer_is_special(gg, i) ? " (special)" : ""), false;
        if (a && dt_tokenizer_token_to_id(gg, b) != dt_tokenizer_token_to_id(hf, a))
            return snprintf(why, cap, "token_to_id('%s'): %d vs %d", a, dt_tokenizer_token_to_id(hf, a), dt_tokenizer_token_to_id(gg, b)), false;
    }
    return true;
}

// A copy of j without the fields that only shape offsets or that a decoder ignores (trim_offsets
// anywhere; everything but "type" in a ByteLevel decoder), for comparing pipelines with a fixture's.
static json_t *without_offsets(const json_t *j, bool decoder) {
    json_t *c = json_deep_copy(j);
    if (json_is_object(c)) {
        json_object_del(c, "trim_offsets");
        const char *type = json_string_value(json_object_get(c, "type"));
        if (decoder && type && !strcmp(type, "ByteLevel")) {
            json_object_del(c, "add_prefix_space");
            json_object_del(c, "use_regex");
        }
        const char *k;
        json_t *v;
        void *tmp;
        json_object_foreach_safe(c, tmp, k, v) if (json_is_array(v) || json_is_object(v))
            json_object_set_new(c, k, without_offsets(v, decoder));
    } else if (json_is_array(c)) {
        for (size_t i = 0; i < json_array_size(c); i++) json_array_set_new(c, i, without_offsets(json_array_get(c, i), decoder));
    }
    return c;
}

// The written tokenizer.json has the fixture's shape: the same top-level members in the same order, the
// fixture's model members (in order) and added-token fields, and the same normalizer, pre-tokenizer and
// decoder up to offset-only fields. Returns false with the first difference in why.
static bool same_shape(const char *written, const char *fixture, char *why, size_t cap) {
    json_t *a = json_load_file(written, 0, NULL), *b = json_load_file(fixture, 0, NULL);
    bool ok = a && b;
    if (!ok) snprintf(why, cap, "cannot parse %.300s", a ? fixture : written);
    const char *ka, *kb;
    json_t *va, *vb;
    void *ia = ok ? json_object_iter(a) : NULL, *ib = ok ? json_object_iter(b) : NULL;
    for (; ok && (ia || ib); ia = json_object_iter_next(a, ia), ib = json_object_iter_next(b, ib))
        if (!ia || !ib || strcmp(json_object_iter_key(ia), json_object_iter_key(ib)))
            ok = false, snprintf(why, cap, "top-level member '%s' where the fixture has '%s'", ia ? json_object_iter_key(ia) : "(end)",
                                 ib ? json_object_iter_key(ib) : "(end)");
    json_t *ma = ok ? json_object_get(a, "model") : NULL, *mb = ok ? json_object_get(b, "model") : NULL;
    ia = json_object_iter(ma);
    json_object_foreach(mb, kb, vb) {
        if (!ok) break;
        while (ia && strcmp(json_object_iter_key(ia), kb)) ia = json_object_iter_next(ma, ia);
        if (!ia) ok = false, snprintf(why, cap, "model.%s missing or out of order", kb);
    }
    json_t *ta = json_array_get(json_object_get(a, "added_tokens"), 0), *tb = json_array_get(json_object_get(b, "added_tokens"), 0);
    json_object_foreach(tb, kb, vb) if (ok && !json_object_get(ta, kb)) ok = false, snprintf(why, cap, "added_tokens[0].%s missing", kb);
    json_object_foreach(ta, ka, va) if (ok && !json_object_get(tb, ka)) ok = false, snprintf(why, cap, "added_tokens[0].%s not in the fixture", ka);
    // HF's tokenizers numbers an added token missing from model.vocab after the vocabulary, whatever its id.
    size_t i_added;
    json_t *at;
    json_array_foreach(json_object_get(a, "added_tokens"), i_added, at) {
        json_t *id = json_object_get(json_object_get(ma, "vocab"), json_string_value(json_object_get(at, "content")));
        if (ok && !json_equal(id, json_object_get(at, "id")))
            ok = false, snprintf(why, cap, "added token '%s' is not in model.vocab under its id", json_string_value(json_object_get(at, "content")));
    }
    const char *parts[] = {"normalizer", "pre_tokenizer", "decoder"};
    for (int i = 0; i < 3 && ok; i++) {
        json_t *x = without_offsets(json_object_get(a, parts[i]), i == 2), *y = without_offsets(json_object_get(b, parts[i]), i == 2);
        if (!json_equal(x, y)) {
            char *sx = json_dumps(x, JSON_ENCODE_ANY), *sy = json_dumps(y, JSON_ENCODE_ANY);
            snprintf(why, cap, "%s: %.200s vs the fixture's %.200s", parts[i], sx ? sx : "?", sy ? sy : "?");
            free(sx);
            free(sy);
            ok = false;
        }
        json_decref(x);
        json_decref(y);
    }
    json_decref(a);
    json_decref(b);
    return ok;
}

// The GGUF tokenizer written back as Hugging Face files (dt_tokenizer_hf_json) and loaded with the normal
// loader must be the same tokenizer: the lookups, ids and decodings of the folder's tokenizer and of the
// GGUF one, the same chat datasets, and tokenizer_config.json's chat_template equal to the GGUF's
// tokenizer.chat_template. shape_of: a fixture tokenizer.json whose shape the written one must have.
static void check_written(const char *name, const dt_tokenizer *hf, const dt_tokenizer *gg, const lines *t, const lines *corpus,
                          bool hf_decode, bool pad, const char *tmpl, const char *shape_of) {
    char dir[600], label[128], why[512] = "";
    snprintf(dir, sizeof dir, "%s/%s_hf", g_dir, name);
    mkdir(dir, 0755);
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_tokenizer_hf files;
    dt_tokenizer *back = NULL;
    int rc = dt_tokenizer_hf_json(&ctx, gg, &files);
    if (!rc) {
        rc = dt_tokenizer_hf_write(&ctx, &files, dir);
        dt_tokenizer_hf_free(&files);
    }
    if (!rc) rc = dt_tokenizer_load(&ctx, dir, &back);
    snprintf(label, sizeof label, "gguf_tok_%s_hf_written_loads", name);
    TEST_CHECK(label, !rc && !dt_tokenizer_from_gguf(back), "%s", rc ? ctx.msg : "loaded as a GGUF tokenizer");
    if (rc) return;
    snprintf(label, sizeof label, "gguf_tok_%s_hf_lookups", name);
    TEST_CHECK(label, same_lookups(hf, back, pad, why, sizeof why) && same_lookups(gg, back, true, why, sizeof why), "%s", why);
    size_t n_special;
    size_t bad_hf = compare_texts(name, hf, back, t, hf_decode, &n_special);
    size_t bad_gg = compare_texts(name, gg, back, t, true, &n_special);
    snprintf(label, sizeof label, "gguf_tok_%s_hf_same_ids_%zu_texts", name, t->n);
    TEST_CHECK(label, bad_hf == 0 && bad_gg == 0 && n_special >= 3, "%zu texts differ from the folder's tokenizer, %zu from the "
               "GGUF's; %zu special ids seen", bad_hf, bad_gg, n_special);
    if (hf_decode) {
        size_t checked;
        size_t bad = round_trips(hf, back, corpus, &checked);
        snprintf(label, sizeof label, "gguf_tok_%s_hf_round_trip", name);
        TEST_CHECK(label, bad == 0 && checked > corpus->n / 2, "%zu of %zu lines do not decode to themselves", bad, checked);
    }
    char tmpl_label[64];
    snprintf(tmpl_label, sizeof tmpl_label, "%s_hf", name);
    if (tmpl) compare_chat(tmpl_label, hf, back, tmpl);
    // The chat template as written, against the GGUF's key (read through the GGUF tokenizer).
    char cfg[700];
    snprintf(cfg, sizeof cfg, "%s/tokenizer_config.json", dir);
    json_t *c = json_load_file(cfg, 0, NULL);
    const char *want = dt_tokenizer_chat_template(gg), *got = json_string_value(json_object_get(c, "chat_template"));
    snprintf(label, sizeof label, "gguf_tok_%s_hf_config", name);
    TEST_CHECK(label, c && (want ? got && !strcmp(want, got) : !json_object_get(c, "chat_template")) &&
               json_is_boolean(json_object_get(c, "add_bos_token")) && json_is_boolean(json_object_get(c, "add_eos_token")),
               "chat_template %s, add_bos_token/add_eos_token present: %d", !want ? "(none in the GGUF)" : got ? "differs" : "missing",
               json_is_boolean(json_object_get(c, "add_bos_token")));
    json_decref(c);
    if (shape_of) {
        char tj[700];
        snprintf(tj, sizeof tj, "%s/tokenizer.json", dir);
        snprintf(label, sizeof label, "gguf_tok_%s_hf_shape_as_fixture", name);
        TEST_CHECK(label, same_shape(tj, shape_of, why, sizeof why), "%s", why);
    }
    dt_tokenizer_free(back);
}

// One tokenizer folder through a GGUF and back. n_vocab: embedding rows (0: the tokenizer's size).
// hf_decode: compare decoding with the folder's decoder (false where the folder's decoder differs from
// llama.cpp's, e.g. a hand-made SentencePiece one without the leading-space Strip); tmpl: the chat
// template for the dataset check ("auto", a name, or NULL to skip it).
static void check_folder(const char *name, const char *dir, int64_t n_vocab, const lines *corpus, bool hf_decode,
                         bool pad, const char *tmpl) {
    char gguf[4200], label[128], why[512];
    snprintf(gguf, sizeof gguf, "%s/%s.gguf", g_dir, name);
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_tokenizer *hf = NULL, *gg = NULL;
    int rc = write_vocab_gguf(&ctx, dir, n_vocab, gguf);
    if (!rc) rc = dt_tokenizer_load(&ctx, dir, &hf);
    if (!rc) rc = dt_tokenizer_load(&ctx, gguf, &gg);
    snprintf(label, sizeof label, "gguf_tok_%s_load", name);
    TEST_CHECK(label, !rc && dt_tokenizer_from_gguf(gg) && !dt_tokenizer_from_gguf(hf), "%s", rc ? ctx.msg : "from_gguf flags wrong");
    if (rc) goto done;
    snprintf(label, sizeof label, "gguf_tok_%s_lookups", name);
    why[0] = 0;
    TEST_CHECK(label, same_lookups(hf, gg, pad, why, sizeof why), "%s", why);
    lines t = {0};
    for (size_t i = 0; i < corpus->n; i++) add_line(&t, corpus->s[i], corpus->len[i]);
    add_specials(&t);
    size_t n_special;
    size_t bad = compare_texts(name, hf, gg, &t, hf_decode, &n_special);
    snprintf(label, sizeof label, "gguf_tok_%s_same_ids_%zu_texts", name, t.n);
    // n_special: the added texts really hit special tokens (so the check covers them).
    TEST_CHECK(label, bad == 0 && n_special >= 3, "%zu of %zu texts differ; %zu special ids seen", bad, t.n, n_special);
    size_t checked;
    if (hf_decode) { // (a hand-made vocabulary of a dozen tokens gives most lines back as <unk>)
        bad = round_trips(hf, gg, corpus, &checked);
        snprintf(label, sizeof label, "gguf_tok_%s_round_trip", name);
        TEST_CHECK(label, bad == 0 && checked > corpus->n / 2, "%zu of %zu lines do not decode to themselves", bad, checked);
    }
    if (tmpl) compare_chat(name, hf, gg, tmpl);
    char shape[700];
    snprintf(shape, sizeof shape, "%s/tokenizer.json", dir);
    // (tok_spm's folder is hand-made and spells its steps differently from llama.cpp's reading)
    check_written(name, hf, gg, &t, corpus, hf_decode, pad, tmpl, strcmp(name, "tok_spm") ? shape : NULL);
    free_lines(&t);
done:
    dt_tokenizer_free(hf);
    dt_tokenizer_free(gg);
}

// The demo tokenizer's vocabulary with SmolLM's pre-tokenizer (single digits, then GPT-2's ByteLevel).
static int write_smollm_folder(const char *dir) {
    json_error_t err;
    json_t *j = json_load_file("demo/tokenizer/tokenizer.json", 0, &err);
    if (!j) return -1;
    json_t *pre = json_pack("{s:s, s:[{s:s, s:b}, {s:s, s:b, s:b, s:b}]}", "type", "Sequence", "pretokenizers", "type",
                            "Digits", "individual_digits", 1, "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 1,
                            "use_regex", 1);
    json_object_set_new(j, "pre_tokenizer", pre);
    mkdir(dir, 0755);
    char p[1300];
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    int rc = json_dump_file(j, p, 0);
    json_decref(j);
    snprintf(p, sizeof p, "cp demo/tokenizer/tokenizer_config.json %s/", dir);
    return rc || system(p) ? -1 : 0;
}

// ---- hostile metadata

typedef struct { const char *key; int kind; const void *v; size_t n; } kv_spec; // kind: 's' str, 'S' str array,
                                                                               // 'i' i32 array, 'f' f32 array,
                                                                               // 'u' u32, 'b' bool, 'x' delete
// A small valid "gpt2" tokenizer; each case replaces or deletes one key (or adds one).
static const char *const TOKS[] = {"a", "b", "ab", "\xC4\xA0", "\xC4\xA0" "a", "<|end|>", "[PAD6]"};
static const int32_t TYPES[] = {1, 1, 1, 1, 1, 3, 5};
static const char *const MERGES[] = {"a b", "\xC4\xA0 a"};

static int write_case(dt_ctx *ctx, const char *path, const kv_spec *override, size_t n_over) {
    kv_spec base[] = {
        {"tokenizer.ggml.model", 's', "gpt2", 0},
        {"tokenizer.ggml.pre", 's', "gpt-2", 0},
        {"tokenizer.ggml.tokens", 'S', TOKS, 7},
        {"tokenizer.ggml.token_type", 'i', TYPES, 7},
        {"tokenizer.ggml.merges", 'S', MERGES, 2},
        {"tokenizer.ggml.eos_token_id", 'u', (const uint32_t[]){5}, 1},
        {"tokenizer.chat_template", 's', "{{ '<|im_start|>' }}", 0},
    };
    dt_gguf_writer *w;
    int st = dt_gguf_writer_new(ctx, path, &w);
    st = st ? st : dt_gguf_set_str(ctx, w, "general.architecture", "llama");
    for (size_t i = 0; i < sizeof base / sizeof base[0] + n_over && !st; i++) {
        kv_spec k = i < sizeof base / sizeof base[0] ? base[i] : override[i - sizeof base / sizeof base[0]];
        bool replaced = false;
        for (size_t j = 0; j < n_over && i < sizeof base / sizeof base[0]; j++)
            if (!strcmp(override[j].key, k.key)) replaced = true;
        if (replaced) continue; // written from the override list instead
        if (i >= sizeof base / sizeof base[0] && dt_gguf_has_key(w, k.key)) continue;
        switch (k.kind) {
        case 's': st = dt_gguf_set_str(ctx, w, k.key, k.v); break;
        case 'S': st = dt_gguf_set_arr_str(ctx, w, k.key, k.v, NULL, k.n); break;
        case 'i': st = dt_gguf_set_arr(ctx, w, k.key, DT_GGUF_I32, k.v, k.n); break;
        case 'f': st = dt_gguf_set_arr(ctx, w, k.key, DT_GGUF_F32, k.v, k.n); break;
        case 'u': st = dt_gguf_set_u32(ctx, w, k.key, *(const uint32_t *)k.v); break;
        case 'b': st = dt_gguf_set_bool(ctx, w, k.key, *(const bool *)k.v); break;
        default: break; // 'x': left out
        }
    }
    st = st ? st : dt_gguf_writer_finish(ctx, w);
    dt_gguf_writer_free(w);
    return st;
}

static void expect_refused(const char *label, const kv_spec *over, size_t n_over, int want, const char *must1, const char *must2) {
    char path[512];
    snprintf(path, sizeof path, "%s/bad.gguf", g_dir);
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_tokenizer *tok = NULL;
    int rc = write_case(&ctx, path, over, n_over);
    if (rc) { TEST_FAIL(label, "writing the case failed: %s", ctx.msg); return; }
    rc = dt_tokenizer_load(&ctx, path, &tok);
    TEST_CHECK(label, rc == want && !tok && strstr(ctx.msg, "bad.gguf") && strstr(ctx.msg, must1) && (!must2 || strstr(ctx.msg, must2)),
               "status %d (want %d): %s", rc, want, ctx.msg);
    dt_tokenizer_free(tok);
}

static void test_hostile(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/bad.gguf", g_dir);
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_tokenizer *tok = NULL;
    // The base case itself loads, encodes and decodes: the cases below fail for their one change.
    int rc = write_case(&ctx, path, NULL, 0);
    if (!rc) rc = dt_tokenizer_load(&ctx, path, &tok);
    dt_ids ids = {0};
    char *out = NULL;
    if (!rc) rc = dt_tokenizer_encode(&ctx, tok, " ab<|end|>", 10, true, &ids);
    if (!rc) rc = dt_tokenizer_decode(&ctx, tok, ids.v, ids.n, false, &out, NULL);
    // " ab": GPT-2's regex keeps it one piece; Ġ a b merges a+b (rank 0) and then nothing: Ġ, ab.
    TEST_CHECK("gguf_tok_hostile_base_case_loads", !rc && ids.n == 3 && ids.v[0] == 3 && ids.v[1] == 2 && ids.v[2] == 5 &&
               !strcmp(out, " ab<|end|>") && dt_tokenizer_vocab_size(tok) == 6 && dt_tokenizer_eos_id(tok) == 5,
               "%s (%zu ids)", rc ? ctx.msg : out, ids.n);
    dt_ids_free(&ids);
    free(out);
    dt_tokenizer_free(tok);

    const float five[] = {0, 0, 0, 0, 0};
    const float nan7[] = {0, 0, NAN, 0, 0, 0, 0};
    const int32_t bad_type[] = {1, 1, 1, 9, 1, 3, 5};
    const char *const bad_merge[] = {"a b", "\xC4\xA0 zz"}, *const no_space[] = {"ab"};
    const char *const bad_utf8[] = {"a", "b", "ab", "\xC4\xA0", "\xC4\xA0" "a", "<|end|>", "\xff\xfe"};
    const uint32_t big = 7, unused = 6;
    const bool yes = true;
    expect_refused("gguf_tok_refuses_tokens_not_array", (kv_spec[]){{"tokenizer.ggml.tokens", 's', "a", 0}}, 1, DT_EINPUT,
                   "tokenizer.ggml.tokens", "array of strings");
    expect_refused("gguf_tok_refuses_missing_tokens", (kv_spec[]){{"tokenizer.ggml.tokens", 'x', NULL, 0}}, 1, DT_EINPUT,
                   "tokenizer.ggml.tokens", "missing");
    expect_refused("gguf_tok_refuses_type_count", (kv_spec[]){{"tokenizer.ggml.token_type", 'i', TYPES, 5}}, 1, DT_EINPUT,
                   "tokenizer.ggml.token_type", "5 entries");
    expect_refused("gguf_tok_refuses_types_as_floats", (kv_spec[]){{"tokenizer.ggml.token_type", 'f', five, 5}}, 1, DT_EINPUT,
                   "tokenizer.ggml.token_type", "integers");
    expect_refused("gguf_tok_refuses_score_count", (kv_spec[]){{"tokenizer.ggml.scores", 'f', five, 5}}, 1, DT_EINPUT,
                   "tokenizer.ggml.scores", "5 entries");
    expect_refused("gguf_tok_refuses_scores_as_strings", (kv_spec[]){{"tokenizer.ggml.scores", 'S', TOKS, 7}}, 1, DT_EINPUT,
                   "tokenizer.ggml.scores", "f32");
    expect_refused("gguf_tok_refuses_nan_score",
                   (kv_spec[]){{"tokenizer.ggml.model", 's', "llama", 0}, {"tokenizer.ggml.scores", 'f', nan7, 7}}, 2, DT_EINPUT,
                   "tokenizer.ggml.scores[2]", "finite");
    expect_refused("gguf_tok_refuses_bad_token_type", (kv_spec[]){{"tokenizer.ggml.token_type", 'i', bad_type, 7}}, 1, DT_EINPUT,
                   "tokenizer.ggml.token_type[3]", "is 9");
    expect_refused("gguf_tok_refuses_merge_unknown_token", (kv_spec[]){{"tokenizer.ggml.merges", 'S', bad_merge, 2}}, 1, DT_EINPUT,
                   "tokenizer.ggml.merges[1]", "not a token");
    expect_refused("gguf_tok_refuses_merge_without_space", (kv_spec[]){{"tokenizer.ggml.merges", 'S', no_space, 1}}, 1, DT_EINPUT,
                   "tokenizer.ggml.merges[0]", "separated by a space");
    expect_refused("gguf_tok_refuses_missing_merges", (kv_spec[]){{"tokenizer.ggml.merges", 'x', NULL, 0}}, 1, DT_EINPUT,
                   "tokenizer.ggml.merges", "missing");
    expect_refused("gguf_tok_refuses_unknown_model", (kv_spec[]){{"tokenizer.ggml.model", 's', "bert", 0}}, 1, DT_EUNSUPPORTED,
                   "tokenizer.ggml.model", "'bert'");
    expect_refused("gguf_tok_refuses_unknown_pre", (kv_spec[]){{"tokenizer.ggml.pre", 's', "deepseek-llm", 0}}, 1, DT_EUNSUPPORTED,
                   "tokenizer.ggml.pre", "'deepseek-llm'");
    expect_refused("gguf_tok_refuses_missing_pre", (kv_spec[]){{"tokenizer.ggml.pre", 'x', NULL, 0}}, 1, DT_EINPUT,
                   "tokenizer.ggml.pre", "missing");
    expect_refused("gguf_tok_refuses_model_not_string", (kv_spec[]){{"tokenizer.ggml.model", 'u', &big, 0}}, 1, DT_EINPUT,
                   "tokenizer.ggml.model", NULL);
    expect_refused("gguf_tok_refuses_no_tokenizer", (kv_spec[]){{"tokenizer.ggml.model", 'x', NULL, 0}}, 1, DT_EINPUT,
                   "no tokenizer.ggml.model", "model.tokenizer");
    expect_refused("gguf_tok_refuses_eos_out_of_range", (kv_spec[]){{"tokenizer.ggml.eos_token_id", 'u', &big, 0}}, 1, DT_EINPUT,
                   "tokenizer.ggml.eos_token_id", "is 7");
    expect_refused("gguf_tok_refuses_eos_unused", (kv_spec[]){{"tokenizer.ggml.eos_token_id", 'u', &unused, 0}}, 1, DT_EINPUT,
                   "tokenizer.ggml.eos_token_id", "unused");
    expect_refused("gguf_tok_refuses_eos_as_string", (kv_spec[]){{"tokenizer.ggml.eos_token_id", 's', "5", 0}}, 1, DT_EINPUT,
                   "tokenizer.ggml.eos_token_id", NULL);
    expect_refused("gguf_tok_refuses_add_bos_not_bool", (kv_spec[]){{"tokenizer.ggml.add_bos_token", 'u', &big, 0}}, 1, DT_EINPUT,
                   "tokenizer.ggml.add_bos_token", NULL);
    expect_refused("gguf_tok_refuses_template_not_string", (kv_spec[]){{"tokenizer.chat_template", 'b', &yes, 0}}, 1, DT_EINPUT,
                   "tokenizer.chat_template", "expected a string");
    expect_refused("gguf_tok_refuses_invalid_utf8", (kv_spec[]){{"tokenizer.ggml.tokens", 'S', bad_utf8, 7}}, 1, DT_EINPUT,
                   "tokenizer.ggml.tokens[6]", "UTF-8");
}

// The derived SentencePiece merge order: llama.cpp merges the adjacent pair whose token scores highest,
// the leftmost on ties. "abc" becomes ▁ a b c (the space prefix). Tie: ab and bc score alike, ab is
// leftmost; then neither ▁ab nor abc is a token: ▁, ab, c. With bc above ab: b+c first, then ▁+a
// (scoring -9, the only pair left that is a token): ▁a, bc.
static void test_spm_order(void) {
    // bc has the lower id, so an order that broke score ties by id rather than by position would take it.
    const char *toks[] = {"<unk>", "<s>", "</s>", "\xE2\x96\x81", "a", "b", "c", "bc", "ab", "\xE2\x96\x81" "a"};
    const int32_t types[] = {2, 3, 3, 1, 1, 1, 1, 1, 1, 1};
    float tie[] = {0, 0, 0, -1, -1, -1, -1, -5, -5, -9}, bc_first[] = {0, 0, 0, -1, -1, -1, -1, -4, -5, -9};
    char path[512];
    snprintf(path, sizeof path, "%s/spm.gguf", g_dir);
    const float *scores[] = {tie, bc_first};
    const int32_t want[2][4] = {{1, 3, 8, 6}, {1, 9, 7, -1}}; // BOS first (llama.cpp's default for "llama")
    const size_t n_want[2] = {4, 3};
    for (int c = 0; c < 2; c++) {
        dt_ctx ctx;
        dt_ctx_init(&ctx);
        dt_gguf_writer *w;
        int st = dt_gguf_writer_new(&ctx, path, &w);
        st = st ? st : dt_gguf_set_str(&ctx, w, "tokenizer.ggml.model", "llama");
        st = st ? st : dt_gguf_set_arr_str(&ctx, w, "tokenizer.ggml.tokens", toks, NULL, 10);
        st = st ? st : dt_gguf_set_arr(&ctx, w, "tokenizer.ggml.scores", DT_GGUF_F32, scores[c], 10);
        st = st ? st : dt_gguf_set_arr(&ctx, w, "tokenizer.ggml.token_type", DT_GGUF_I32, types, 10);
        st = st ? st : dt_gguf_set_u32(&ctx, w, "tokenizer.ggml.bos_token_id", 1);
        st = st ? st : dt_gguf_writer_finish(&ctx, w);
        dt_gguf_writer_free(w);
        dt_tokenizer *tok = NULL;
        dt_ids ids = {0};
        char *out = NULL;
        st = st ? st : dt_tokenizer_load(&ctx, path, &tok);
        st = st ? st : dt_tokenizer_encode(&ctx, tok, "abc", 3, true, &ids);
        st = st ? st : dt_tokenizer_decode(&ctx, tok, ids.v, ids.n, true, &out, NULL);
        bool ok = !st && ids.n == n_want[c] && !memcmp(ids.v, want[c], n_want[c] * sizeof *ids.v) && !strcmp(out, "abc");
        TEST_CHECK(c ? "gguf_tok_spm_higher_score_first" : "gguf_tok_spm_ties_leftmost", ok, "%s (%zu ids: %d %d %d %d)",
                   st ? ctx.msg : out, ids.n, ids.n > 0 ? ids.v[0] : -1, ids.n > 1 ? ids.v[1] : -1, ids.n > 2 ? ids.v[2] : -1,
                   ids.n > 3 ? ids.v[3] : -1);
        dt_ids_free(&ids);
        free(out);
        dt_tokenizer_free(tok);
    }
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/dt_gguf_tok_read.XXXXXX");
    if (!mkdtemp(g_dir)) { TEST_FAIL("tmpdir", "mkdtemp"); TEST_EXIT(); }
    lines corpus = {0};
    if (read_corpus(CORPUS, &corpus) || corpus.n < 300) {
        TEST_FAIL("corpus", "cannot read %s (or under 300 lines)", CORPUS);
        TEST_EXIT();
    }
    test_spm_order();
    test_hostile();
    // Small tokenizers of the repository: GPT-2's pre-tokenizer (demo), SmolLM's, a hand-made SentencePiece one.
    check_folder("demo_gpt2", "demo/tokenizer", 0, &corpus, true, true, "auto");
    char smol[300];
    snprintf(smol, sizeof smol, "%s/smollm", g_dir);
    if (write_smollm_folder(smol)) TEST_FAIL("gguf_tok_smollm_setup", "cannot write %s", smol);
    else check_folder("smollm", smol, 0, &corpus, true, true, "chatml");
    check_folder("tok_spm", "tests/data/gguf/tok_spm", 0, &corpus, false, false, NULL);
    const char *fx = dt_test_fixtures();
    if (!fx) {
        TEST_SKIP("gguf_tok_fixtures", "../shared/fixtures is absent");
    } else {
        static const struct { const char *name; int64_t rows; const char *tmpl; } F[] = {
            {"qwen3", 151936, "auto"}, {"llama3", 0, "auto"}, {"mistral", 0, "mistral"}};
        for (size_t i = 0; i < 3; i++) {
            char dir[600];
            snprintf(dir, sizeof dir, "%s/tokenizers/%s", fx, F[i].name);
            check_folder(F[i].name, dir, F[i].rows, &corpus, true, true, F[i].tmpl);
        }
    }
    free_lines(&corpus);
    if (!getenv("DT_KEEP")) tf_rm_tree(g_dir);
    TEST_EXIT();
}
