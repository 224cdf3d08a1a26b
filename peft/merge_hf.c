// The Hugging Face output of a merge: the input's shard files and index, config.json and the tokenizer
// files, written into a temporary folder beside the output that is renamed into place when complete.
// The tokenizer files come from --tokenizer when given, else from the model's folder; a GGUF base has no
// folder, so its tokenizer.ggml.* metadata is written as tokenizer.json, tokenizer_config.json and
// special_tokens_map.json (datasets/tokenizer_hf_write.c), with generation_config.json for its BOS/EOS
// and end-of-turn ids, so that the merged folder loads on its own like any model folder.
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "datasets/tokenizer.h"
#include "models/atomic_file.h"
#include "models/gguf.h"
#include "models/gguf_model.h"
#include "models/safetensors_write.h"
#include "autograd/quant.h"
#include "peft/merge_internal.h"

static int st_fill(dt_ctx *ctx, void *user, void *dst, size_t nbytes) {
    (void)ctx;
    tjob *j = user;
    const void *src;
    int rc = dt_mg_fetch(j->m->pf, j, dst, &src);
    if (!rc && src != dst) memcpy(dst, src, nbytes);
    return rc;
}

// The safetensors writer's layout order (see safetensors_write.h): dtypes F32, I32, BF16, F16, then names.
static int layout_rank(dt_dtype t) { return t == DT_F32 ? 3 : t == DT_I32 ? 2 : t == DT_BF16 ? 1 : 0; }
static int cmp_layout(const void *a, const void *b, void *jobs) {
    const tjob *x = (const tjob *)jobs + *(const size_t *)a, *y = (const tjob *)jobs + *(const size_t *)b;
    int rx = layout_rank(x->out), ry = layout_rank(y->out);
    return rx != ry ? ry - rx : strcmp(x->name, y->name);
}

static const char *torch_dtype_name(dt_dtype t) {
    return t == DT_BF16 ? "bfloat16" : t == DT_F16 ? "float16" : "float32";
}

static int read_file(dt_ctx *ctx, const char *path, char **out, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return dt_fail(ctx, DT_EINPUT, "%s: cannot read the file: %s", path, strerror(errno));
    char *buf = NULL;
    size_t cap = 0, len = 0;
    for (;;) {
        if (len + 65536 + 1 > cap) {
            char *p = realloc(buf, cap = (len + 65536 + 1) * 2);
            if (!p) { free(buf); fclose(f); return dt_fail(ctx, DT_ENOMEM, "%s: out of memory", path); }
            buf = p;
        }
        size_t got = fread(buf + len, 1, 65536, f);
        len += got;
        if (got < 65536) break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) { free(buf); return dt_fail(ctx, DT_EIO, "%s: read failed", path); }
    buf[len] = '\0';
    *out = buf;
    *n = len;
    return DT_OK;
}

// config.json with every "torch_dtype"/"dtype" string or null value replaced by `value` (or "torch_dtype" added
// at the top when there is none), edited as text so that everything else stays byte for byte.
static char *set_config_dtype(const char *text, const char *value) {
    size_t n = strlen(text), cap = n + 64;
    char *out = malloc(cap);
    if (!out) return NULL;
    size_t o = 0;
    bool found = false;
    for (size_t i = 0; i < n;) {
        const char *keys[] = {"\"torch_dtype\"", "\"dtype\""};
        size_t klen = 0;
        for (int k = 0; k < 2 && !klen; k++)
            if (!strncmp(text + i, keys[k], strlen(keys[k]))) klen = strlen(keys[k]);
        size_t p = i + klen;
        if (klen) {
            while (p < n && strchr(" \t\r\n", text[p])) p++;
            if (p < n && text[p] == ':') {
                p++;
                while (p < n && strchr(" \t\r\n", text[p])) p++;
            } else klen = 0;
        }
        const char *close = klen && p < n && text[p] == '"' ? strchr(text + p + 1, '"') : NULL;
        // A null value ("torch_dtype": null, as PretrainedConfig.to_dict() writes a config without one) is
        // set too: adding a second key would leave Python's json reading the last one, the null.
        const bool null_value = klen && !close && n - p >= 4 && !strncmp(text + p, "null", 4);
        if (null_value) {
            const size_t need = o + (p - i) + strlen(value) + 2 + (n - (p + 4)) + 1;
            if (need > cap) {
                char *q = realloc(out, cap = need + 64);
                if (!q) { free(out); return NULL; }
                out = q;
            }
            memcpy(out + o, text + i, p - i); // key and colon
            o += p - i;
            out[o++] = '"';
            memcpy(out + o, value, strlen(value));
            o += strlen(value);
            out[o++] = '"';
            i = p + 4;
            found = true;
        } else if (close) {
            size_t need = o + (p + 1 - i) + strlen(value) + 1 + (n - (size_t)(close + 1 - text)) + 1;
            if (need > cap) {
                char *q = realloc(out, cap = need + 64);
                if (!q) { free(out); return NULL; }
                out = q;
            }
            memcpy(out + o, text + i, p + 1 - i); // key, colon, opening quote
            o += p + 1 - i;
            memcpy(out + o, value, strlen(value));
            o += strlen(value);
            out[o++] = '"';
            i = (size_t)(close + 1 - text);
            found = true;
        } else {
            if (o + 2 > cap) {
                char *q = realloc(out, cap = cap * 2);
                if (!q) { free(out); return NULL; }
                out = q;
            }
            out[o++] = text[i++];
        }
    }
    out[o] = '\0';
    if (found) return out;
    const char *brace = strchr(out, '{');
    if (!brace) { free(out); return NULL; }
    size_t at = (size_t)(brace + 1 - out);
    char *r = malloc(o + strlen(value) + 32);
    if (r) sprintf(r, "%.*s\n  \"torch_dtype\": \"%s\",%s", (int)at, out, value, out + at);
    free(out);
    return r;
}

// config.json with the boolean `key` set to value (replaced where it is, else added at the top), edited as
// text like set_config_dtype. NULL when out of memory or not an object.
static char *set_config_bool(const char *text, const char *key, bool value) {
    char quoted[64];
    snprintf(quoted, sizeof quoted, "\"%s\"", key);
    const char *v = value ? "true" : "false";
    size_t n = strlen(text);
    for (const char *k = strstr(text, quoted); k; k = strstr(k + 1, quoted)) {
        const char *p = k + strlen(quoted);
        while (*p && strchr(" \t\r\n", *p)) p++;
        if (*p != ':') continue;
        p++;
        while (*p && strchr(" \t\r\n", *p)) p++;
        size_t old = !strncmp(p, "true", 4) ? 4 : !strncmp(p, "false", 5) ? 5 : !strncmp(p, "null", 4) ? 4 : 0;
        if (!old) continue;
        char *out = malloc(n + 8);
        if (out) sprintf(out, "%.*s%s%s", (int)(p - text), text, v, p + old);
        return out;
    }
    const char *brace = strchr(text, '{');
    if (!brace) return NULL;
    char *out = malloc(n + strlen(key) + 32);
    if (out) sprintf(out, "%.*s\n  \"%s\": %s,%s", (int)(brace + 1 - text), text, key, v, brace + 1);
    return out;
}

static int write_config(merger *m, const char *tmp) {
    dt_ctx *ctx = m->ctx;
    char dst[4096], srcp[4096];
    snprintf(dst, sizeof dst, "%s/config.json", tmp);
    if (!m->st) { // llama2.c or GGUF: the config comes from its header
        dt_model_config c = m->cfg;
        // Without --dtype (or with same) the tensors keep their types (write_shards): the config names the
        // base's storage type, its embedding's, as for a Hugging Face base (an f16/bf16 GGUF stays f16/bf16;
        // a quantized one is refused there; llama2.c is f32).
        const dt_st_tensor *embed = dt_mg_src_find(m, dt_tn_global(DT_GT_EMBED));
        const dt_dtype kept = embed && (embed->dtype == DT_F16 || embed->dtype == DT_BF16) ? embed->dtype : DT_F32;
        c.torch_dtype = m->o->dtype >= 0 ? (dt_dtype)m->o->dtype : kept;
        c.attention_bias |= m->attention_bias;
        c.tie_word_embeddings &= !m->untie;
        return dt_config_save(ctx, &c, dst);
    }
    snprintf(srcp, sizeof srcp, "%s/config.json", m->o->model);
    char *text;
    size_t n;
    int rc = read_file(ctx, srcp, &text, &n);
    if (rc) return rc;
    if (m->o->dtype >= 0) {
        char *edited = set_config_dtype(text, torch_dtype_name((dt_dtype)m->o->dtype));
        free(text);
        if (!edited) return dt_fail(ctx, DT_EINPUT, "%s: cannot set torch_dtype (not a JSON object?)", srcp);
        text = edited;
        n = strlen(text);
    }
    // What an adapter added (merge_internal.h): the attention biases, an untied LM head.
    const char *keys[2] = {"attention_bias", "tie_word_embeddings"};
    const bool on[2] = {m->attention_bias, m->untie}, val[2] = {true, false};
    for (int k = 0; k < 2; k++) {
        if (!on[k]) continue;
        char *edited = set_config_bool(text, keys[k], val[k]);
        free(text);
        if (!edited) return dt_fail(ctx, DT_EINPUT, "%s: cannot set %s (not a JSON object?)", srcp, keys[k]);
        text = edited;
        n = strlen(text);
    }
    rc = dt_atomic_write(ctx, dst, text, n);
    free(text);
    return rc;
}

// Files a Hugging Face folder carries besides the weights, copied as they are when present: the first
// from the model's folder, the tokenizer's from --tokenizer when given.
static const char *const COPIED[] = {"generation_config.json", "tokenizer.json", "tokenizer_config.json",
                                     "special_tokens_map.json", "tokenizer.model", "chat_template.jinja"};

static int copy_extras(merger *m, const char *tmp) {
    for (size_t i = 0; i < sizeof COPIED / sizeof COPIED[0]; i++) {
        const char *dir = i && m->o->tokenizer ? m->o->tokenizer : m->o->model;
        if (!m->st && (!i || !m->o->tokenizer)) continue; // a GGUF or llama2.c base: no folder to copy from
        char src[4096], dst[4096];
        snprintf(src, sizeof src, "%s/%s", dir, COPIED[i]);
        if (access(src, F_OK)) continue;
        snprintf(dst, sizeof dst, "%s/%s", tmp, COPIED[i]);
        char *data;
        size_t n;
        int rc = read_file(m->ctx, src, &data, &n);
        if (!rc) rc = dt_atomic_write(m->ctx, dst, data, n);
        if (!rc) free(data);
        if (rc) return rc;
    }
    return DT_OK;
}

// The input's index with total_size updated to the output's bytes (the weight map is unchanged).
static int write_index(merger *m, const char *tmp, uint64_t total) {
    char src[4096], dst[4096];
    snprintf(src, sizeof src, "%s/model.safetensors.index.json", m->o->model);
    snprintf(dst, sizeof dst, "%s/model.safetensors.index.json", tmp);
    json_error_t err;
    json_t *idx = json_load_file(src, 0, &err);
    if (!idx) return dt_fail(m->ctx, DT_EINPUT, "%s:%d:%d: %s", src, err.line, err.column, err.text);
    json_t *meta = json_object_get(idx, "metadata");
    if (!json_is_object(meta)) json_object_set_new(idx, "metadata", meta = json_object());
    json_object_set_new(meta, "total_size", json_integer((json_int_t)total));
    json_t *map = json_object_get(idx, "weight_map");
    for (size_t i = 0; json_is_object(map) && i < m->n_extra; i++) { // the added tensors, in their shard
        char shard[512];
        dt_mg_base_name(dt_st_shard_path(m->st, m->extra[i].shard), shard, sizeof shard);
        json_object_set_new(map, m->extra[i].name, json_string(shard));
    }
    // As transformers writes it: json.dumps(index, indent=2, sort_keys=True) + "\n".
    char *text = json_dumps(idx, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
    json_decref(idx);
    if (!text) return dt_fail(m->ctx, DT_ENOMEM, "out of memory");
    size_t len = strlen(text);
    char *t2 = realloc(text, len + 2);
    if (!t2) { free(text); return dt_fail(m->ctx, DT_ENOMEM, "out of memory"); }
    t2[len] = '\n';
    int rc = dt_atomic_write(m->ctx, dst, t2, len + 1);
    free(t2);
    return rc;
}

// Writes the shard files into tmp: for each input shard, its tensors under the same name.
static int write_shards(merger *m, const char *tmp, uint64_t *total) {
    dt_ctx *ctx = m->ctx;
    const size_t n_src = dt_mg_src_count(m), n = n_src + m->n_extra; // the source's tensors, then the added ones
    tjob *jobs = calloc(n ? n : 1, sizeof *jobs);
    if (!jobs) return dt_fail(ctx, DT_ENOMEM, "out of memory");
    int rc = DT_OK;
    *total = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        const dt_st_tensor *t = i < n_src ? dt_mg_src_at(m, i) : &m->extra[i - n_src];
        if (i < n_src && dt_mg_shadowed(m, t)) continue; // written as the added tensor (jobs[i].src stays NULL)
        dt_mg_job_init(m, &jobs[i], t);
        if (t->st_dtype == DT_ST_I64 || t->st_dtype == DT_ST_U8)
            rc = dt_fail(ctx, DT_EUNSUPPORTED, "%s: tensor '%s': %s tensors cannot be written", dt_mg_src_file(m, t), t->name,
                         dt_st_dtype_name(t->st_dtype));
        jobs[i].out = t->dtype == DT_I32 || m->o->dtype < 0 ? t->dtype : (dt_dtype)m->o->dtype;
        if (!rc && dt_is_quant(jobs[i].out))
            rc = dt_fail(ctx, DT_EINPUT, "%s: tensor '%s' is %s, which a Hugging Face folder cannot hold; merge with "
                         "--dtype f32, f16 or bf16, or write --format gguf", dt_mg_src_file(m, t), t->name,
                         dt_dtype_name(t->dtype));
        *total += dt_mg_job_bytes(&jobs[i]);
    }
    if (!rc) rc = dt_mg_alloc_scratch(m, jobs, n);
    const int n_shards = m->st ? dt_st_shard_count(m->st) : 1;
    size_t *order = malloc((n ? n : 1) * sizeof *order);
    if (!order && !rc) rc = dt_fail(ctx, DT_ENOMEM, "out of memory");
    for (int s = 0; s < n_shards && !rc; s++) {
        dt_st_writer *w;
        if ((rc = dt_st_writer_init(ctx, &w))) break;
        rc = dt_st_writer_set_metadata(ctx, w, "format", "pt");
        size_t k = 0;
        for (size_t i = 0; i < n && !rc; i++) {
            const dt_st_tensor *t = jobs[i].src;
            if (!t || (m->st && t->shard != s)) continue;
            order[k++] = i;
            // Unchanged tensors are written straight from the mapping; the others through st_fill.
            rc = t->dtype == DT_I32 || dt_mg_is_plain(&jobs[i])
                     ? dt_st_writer_add(ctx, w, t->name, t->dtype, t->ndim, t->shape, t->data)
                     : dt_st_writer_add_fn(ctx, w, t->name, jobs[i].out, t->ndim, t->shape, st_fill, &jobs[i]);
        }
        char name[512], path[4096];
        if (m->st) dt_mg_base_name(dt_st_shard_path(m->st, s), name, sizeof name);
        else snprintf(name, sizeof name, "model.safetensors");
        snprintf(path, sizeof path, "%s/%s", tmp, name);
        if (!rc) {
            prefetch pf;
            qsort_r(order, k, sizeof *order, cmp_layout, jobs);
            dt_mg_prefetch_start(&pf, m, jobs, order, k);
            m->pf = &pf;
            rc = dt_st_writer_write(ctx, w, path);
            m->pf = NULL;
            dt_mg_prefetch_free(&pf);
            for (size_t i = 0; i < k; i++) dt_mg_release(m, jobs[order[i]].src); // the mapped pages of this shard
        }
        dt_st_writer_free(w);
    }
    free(order);
    free(jobs);
    return rc;
}

// The tokenizer files of a GGUF base (none given with --tokenizer), made before anything is written so
// that a tokenizer that cannot be converted stops the merge first. A file that carries no tokenizer at
// all gives none, with a warning: its weights still merge.
static int gguf_tokenizer_files(merger *m, dt_tokenizer_hf *hf, char **gen_config) {
    dt_ctx *ctx = m->ctx;
    const struct dt_gguf_model *gm = dt_weights_gguf(m->w);
    if (!gm || m->o->tokenizer) return DT_OK;
    const dt_gguf_file *f = dt_gguf_model_file(gm);
    if (dt_gguf_find_key(f, "tokenizer.ggml.model") < 0) {
        dt_warn(ctx, "%s: the file carries no tokenizer (no tokenizer.ggml.model); the merged folder has none: give "
                "--tokenizer DIR to add one", m->o->model);
        return DT_OK;
    }
    dt_tokenizer *tok;
    int rc = dt_tokenizer_load_gguf(ctx, f, &tok);
    if (rc) return rc;
    rc = dt_tokenizer_hf_json(ctx, tok, hf);
    // generation_config.json: the ids generation stops at, as Llama 3 Instruct lists <|eot_id|> beside EOS.
    int32_t bos = dt_tokenizer_bos_id(tok), eos = dt_tokenizer_eos_id(tok), eot = dt_tokenizer_eot_id(tok);
    json_t *g = json_object();
    if (g && bos >= 0) json_object_set_new(g, "bos_token_id", json_integer(bos));
    if (g && eos >= 0)
        json_object_set_new(g, "eos_token_id", eot >= 0 && eot != eos ? json_pack("[i, i]", eos, eot) : json_integer(eos));
    char *text = g && !rc ? json_dumps(g, JSON_INDENT(2)) : NULL;
    if (text && (*gen_config = malloc(strlen(text) + 2))) sprintf(*gen_config, "%s\n", text); // a final newline, as HF writes
    free(text);
    if (!rc && !*gen_config) rc = dt_fail(ctx, DT_ENOMEM, "out of memory");
    json_decref(g);
    dt_tokenizer_free(tok);
    return rc;
}

static int write_gguf_tokenizer(merger *m, const char *tmp, const dt_tokenizer_hf *hf, const char *gen_config) {
    if (!hf->text[0]) return DT_OK;
    char path[4096];
    snprintf(path, sizeof path, "%s/generation_config.json", tmp);
    int rc = dt_tokenizer_hf_write(m->ctx, hf, tmp);
    if (!rc) rc = dt_atomic_write(m->ctx, path, gen_config, strlen(gen_config));
    return rc;
}

static void remove_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char p[4096];
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
                snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
                unlink(p);
            }
        closedir(d);
    }
    rmdir(dir);
}

int dt_mg_write_hf(merger *m) {
    dt_ctx *ctx = m->ctx;
    const char *out = m->o->out;
    if (!access(out, F_OK)) return dt_fail(ctx, DT_EINPUT, "%s: already exists; choose a new output folder", out);
    char tj[4096];
    snprintf(tj, sizeof tj, "%s/tokenizer.json", m->o->tokenizer ? m->o->tokenizer : "");
    if (m->o->tokenizer && access(tj, F_OK))
        return dt_fail(ctx, DT_EINPUT, "%s: no tokenizer.json there (--tokenizer names a Hugging Face tokenizer folder)", m->o->tokenizer);
    dt_tokenizer_hf hf = {0};
    char *gen_config = NULL;
    int rc = gguf_tokenizer_files(m, &hf, &gen_config);
    if (rc) return rc;
    size_t n = strlen(out);
    while (n > 1 && out[n - 1] == '/') n--;
    char *tmp = malloc(n + sizeof ".tmp.XXXXXX");
    if (!tmp) {
        dt_tokenizer_hf_free(&hf);
        free(gen_config);
        return dt_fail(ctx, DT_ENOMEM, "out of memory");
    }
    memcpy(tmp, out, n);
    memcpy(tmp + n, ".tmp.XXXXXX", sizeof ".tmp.XXXXXX");
    if (!mkdtemp(tmp)) {
        int e = errno;
        free(tmp);
        dt_tokenizer_hf_free(&hf);
        free(gen_config);
        return dt_fail(ctx, e == ENOENT || e == ENOTDIR || e == EACCES ? DT_EINPUT : DT_EIO,
                       "%s: cannot create a temporary folder beside it: %s", out, strerror(e));
    }
    chmod(tmp, 0755); // mkdtemp makes it 0700; the output is meant to be shared like any model folder
    uint64_t total = 0;
    rc = write_shards(m, tmp, &total);
    char idx[4096];
    snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", m->o->model);
    if (!rc && m->st && !access(idx, F_OK)) rc = write_index(m, tmp, total);
    if (!rc) rc = write_config(m, tmp);
    if (!rc) rc = copy_extras(m, tmp);
    if (!rc) rc = write_gguf_tokenizer(m, tmp, &hf, gen_config);
    dt_tokenizer_hf_free(&hf);
    free(gen_config);
    if (!rc) rc = dt_atomic_commit_dir(ctx, tmp, out);
    if (rc) remove_tree(tmp);
    free(tmp);
    return rc;
}

