// llama2.c legacy checkpoints: a synthetic file checks layout, names and the q/k row permutation; the
// stories260K fixture must equal its Hugging Face conversion tensor for tensor; bad files are refused.
#include <ftw.h>
#include <math.h>
#include <sys/stat.h>
#include "autograd/context.h"
#include "models/llama2c.h"
#include "models/tensor_names.h"
#include "models/weights.h"
#include "tests/test_util.h"

static char g_dir[64];

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}

// dim 8, hidden 12, 2 layers, 2 heads (head size 4), 1 kv head, vocab 10, seq 4; every float is its own
// index in the float section, so a value tells where it came from.
enum { DIM = 8, HID = 12, NL = 2, NH = 2, NKV = 1, VOCAB = 10, SEQ = 4, HS = DIM / NH, KV = HS * NKV };

static size_t synth_floats(bool untied) {
    return (size_t)VOCAB * DIM + NL * DIM * 2 + NL * DIM * DIM * 2 + NL * KV * DIM * 2 + NL * HID * DIM * 3 + DIM +
           SEQ * HS + (untied ? VOCAB * DIM : 0);
}

static void write_synth(const char *path, bool untied, long trim) {
    int32_t h[7] = {DIM, HID, NL, NH, NKV, untied ? -VOCAB : VOCAB, SEQ};
    size_t n = synth_floats(untied);
    FILE *f = fopen(path, "wb");
    fwrite(h, 4, 7, f);
    for (size_t i = 0; i < n - (size_t)trim; i++) {
        float v = (float)i;
        fwrite(&v, 4, 1, f);
    }
    fclose(f);
}

static void test_synthetic(void) {
    char path[128];
    snprintf(path, sizeof path, "%s/synth.bin", g_dir);
    write_synth(path, true, 0);
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_model_config c;
    dt_llama2c *m;
    int rc = dt_llama2c_load(&ctx, path, &c, &m);
    TEST_CHECK("synthetic: load", rc == DT_OK, "%s", ctx.msg);
    if (rc) return;
    TEST_CHECK("synthetic: config", c.arch == DT_ARCH_LLAMA && c.hidden_size == DIM && c.intermediate_size == HID &&
               c.num_layers == NL && c.num_heads == NH && c.num_kv_heads == NKV && c.head_dim == HS &&
               c.vocab_size == VOCAB && c.max_position_embeddings == SEQ && !c.tie_word_embeddings &&
               c.rms_norm_eps == 1e-5f && c.rope_theta == 10000.0f && !c.rope_interleaved && c.torch_dtype == DT_F32,
               "config differs");
    TEST_CHECK("synthetic: 1 + 9 per layer + norm + lm_head tensors", dt_llama2c_count(m) == 1 + 9 * NL + 2,
               "%zu", dt_llama2c_count(m));

    // Offsets (in floats) of the pieces, in run.c's order.
    size_t o_emb = 0, o_rms = o_emb + VOCAB * DIM, o_wq = o_rms + NL * DIM, o_wk = o_wq + NL * DIM * DIM,
           o_wv = o_wk + NL * KV * DIM, o_wo = o_wv + NL * KV * DIM, o_ffn = o_wo + NL * DIM * DIM,
           o_w1 = o_ffn + NL * DIM, o_w2 = o_w1 + NL * HID * DIM, o_w3 = o_w2 + NL * DIM * HID,
           o_fin = o_w3 + NL * HID * DIM, o_cls = o_fin + DIM + SEQ * HS;
    char name[256];
    bool ok = true;
    const struct { int t; size_t off, n, rows; } plain[] = {
        {DT_LT_ATTN_NORM, o_rms, DIM, DIM}, {DT_LT_V, o_wv, KV * DIM, KV}, {DT_LT_O, o_wo, DIM * DIM, DIM},
        {DT_LT_FFN_NORM, o_ffn, DIM, DIM}, {DT_LT_GATE, o_w1, HID * DIM, HID}, {DT_LT_DOWN, o_w2, DIM * HID, DIM},
        {DT_LT_UP, o_w3, HID * DIM, HID},
    };
    for (int l = 0; l < NL && ok; l++)
        for (size_t k = 0; k < sizeof plain / sizeof plain[0] && ok; k++) {
            dt_tn_layer(name, sizeof name, l, (dt_layer_tensor)plain[k].t);
            const dt_st_tensor *t = dt_llama2c_find(m, name);
            const float *d = t ? t->data : NULL;
            ok = t && t->shape[0] == (int64_t)plain[k].rows && t->nbytes == plain[k].n * 4 &&
                 d[0] == (float)(plain[k].off + l * plain[k].n) && d[plain[k].n - 1] == (float)(plain[k].off + (l + 1) * plain[k].n - 1);
        }
    TEST_CHECK("synthetic: w1=gate, w2=down, w3=up and the norms at run.c's offsets", ok, "at %s", name);
    const dt_st_tensor *emb = dt_llama2c_find(m, "model.embed_tokens.weight"), *fin = dt_llama2c_find(m, "model.norm.weight"),
                       *cls = dt_llama2c_find(m, "lm_head.weight");
    TEST_CHECK("synthetic: embedding, final norm, separate classifier after freq_cis",
               emb && fin && cls && ((const float *)emb->data)[5] == 5.0f && ((const float *)fin->data)[0] == (float)o_fin &&
               ((const float *)cls->data)[0] == (float)o_cls && cls->shape[0] == VOCAB && cls->shape[1] == DIM, "mismatch");

    // q rows: HF row h*HS + j (j < HS/2) is llama2.c row h*HS + 2j, HF row h*HS + HS/2 + j is row h*HS + 2j + 1.
    ok = true;
    for (int l = 0; l < NL && ok; l++) {
        dt_tn_layer(name, sizeof name, l, DT_LT_Q);
        const dt_st_tensor *q = dt_llama2c_find(m, name);
        dt_tn_layer(name, sizeof name, l, DT_LT_K);
        const dt_st_tensor *k = dt_llama2c_find(m, name);
        ok = q && k && q->shape[0] == DIM && q->shape[1] == DIM && k->shape[0] == KV && k->shape[1] == DIM;
        for (int h = 0; h < NH && ok; h++)
            for (int r = 0; r < HS && ok; r++) {
                int src = h * HS + (r < HS / 2 ? 2 * r : 2 * (r - HS / 2) + 1);
                for (int col = 0; col < DIM && ok; col++) {
                    ok = ((const float *)q->data)[(h * HS + r) * DIM + col] == (float)(o_wq + (size_t)l * DIM * DIM + src * DIM + col);
                    if (h < NKV)
                        ok = ok && ((const float *)k->data)[(h * HS + r) * DIM + col] ==
                                       (float)(o_wk + (size_t)l * KV * DIM + src * DIM + col);
                }
            }
    }
    TEST_CHECK("synthetic: q and k rows permuted into rotate-half order", ok, "mismatch");
    float buf[DIM * DIM];
    rc = dt_llama2c_read_f32(&ctx, m, "model.layers.1.self_attn.o_proj.weight", buf, 2, (int64_t[]){DIM, DIM});
    TEST_CHECK("synthetic: read_f32", rc == DT_OK && buf[0] == (float)(o_wo + DIM * DIM), "%s", ctx.msg);
    rc = dt_llama2c_read_f32(&ctx, m, "model.layers.1.self_attn.o_proj.weight", buf, 2, (int64_t[]){DIM, HID});
    TEST_CHECK("synthetic: shape mismatch named", rc == DT_EINPUT && strstr(ctx.msg, "synth.bin") &&
               strstr(ctx.msg, "o_proj") && strstr(ctx.msg, "expected [8, 12]"), "%s", ctx.msg);
    dt_llama2c_free(m);

    write_synth(path, false, 0);
    rc = dt_llama2c_load(&ctx, path, &c, &m);
    TEST_CHECK("synthetic: shared classifier means tied and no lm_head", rc == DT_OK && c.tie_word_embeddings &&
               !dt_llama2c_find(m, "lm_head.weight"), "%s", ctx.msg);
    if (!rc) dt_llama2c_free(m);
}

static void test_bad_files(void) {
    char path[128];
    snprintf(path, sizeof path, "%s/bad.bin", g_dir);
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_model_config c;
    dt_llama2c *m = (dt_llama2c *)&ctx;
    write_synth(path, true, 1);
    size_t want = 28 + 4 * synth_floats(true);
    char expect[256];
    snprintf(expect, sizeof expect, "bad.bin: expected %zu bytes for dim=8, hidden_dim=12, n_layers=2, n_heads=2, "
             "n_kv_heads=1, vocab_size=-10, seq_len=4 (separate classifier), got %zu", want, want - 4);
    int rc = dt_llama2c_load(&ctx, path, &c, &m);
    TEST_CHECK("bad: one float short", rc == DT_EINPUT && m == NULL && strstr(ctx.msg, expect), "%s", ctx.msg);
    write_synth(path, false, 0); // tied header but the untied size: too long by the classifier
    FILE *f = fopen(path, "r+b");
    fwrite((int32_t[]){DIM, HID, NL, NH, NKV, -VOCAB}, 4, 6, f);
    fclose(f);
    rc = dt_llama2c_load(&ctx, path, &c, &m);
    TEST_CHECK("bad: classifier flag disagrees with size", rc == DT_EINPUT && strstr(ctx.msg, "expected"), "%s", ctx.msg);
    f = fopen(path, "wb");
    fwrite((int32_t[]){DIM, HID, NL, 3, NKV, VOCAB, SEQ}, 4, 7, f);
    fclose(f);
    rc = dt_llama2c_load(&ctx, path, &c, &m);
    TEST_CHECK("bad: heads not dividing dim", rc == DT_EINPUT && strstr(ctx.msg, "bad.bin") && strstr(ctx.msg, "n_heads=3"),
               "%s", ctx.msg);
    f = fopen(path, "wb");
    fwrite((int32_t[]){DIM, 0, NL, NH, NKV, VOCAB, SEQ}, 4, 7, f);
    fclose(f);
    rc = dt_llama2c_load(&ctx, path, &c, &m);
    TEST_CHECK("bad: zero hidden_dim", rc == DT_EINPUT && strstr(ctx.msg, "bad.bin"), "%s", ctx.msg);
    f = fopen(path, "wb");
    fwrite((int32_t[]){0x616b3432, 1, 0, 0, 0, 0, 0}, 4, 7, f);
    fclose(f);
    rc = dt_llama2c_load(&ctx, path, &c, &m);
    TEST_CHECK("bad: newer export version refused by name", rc == DT_EUNSUPPORTED && strstr(ctx.msg, "version-1"),
               "%s", ctx.msg);
    f = fopen(path, "wb");
    fwrite("abc", 1, 3, f);
    fclose(f);
    rc = dt_llama2c_load(&ctx, path, &c, &m);
    TEST_CHECK("bad: too short", rc == DT_EINPUT && strstr(ctx.msg, "too short"), "%s", ctx.msg);
    f = fopen(path, "wb");
    fwrite((int32_t[]){0x7ffffffe, 0x7fffffff, 0x7fffffff, 1, 1, -0x7fffffff, 0x7fffffff}, 4, 7, f);
    fclose(f);
    rc = dt_llama2c_load(&ctx, path, &c, &m);
    TEST_CHECK("bad: huge header values do not overflow", rc == DT_EINPUT && strstr(ctx.msg, "expected"), "%s", ctx.msg);
    rc = dt_llama2c_load(&ctx, "tests/data/models/nothere.bin", &c, &m);
    TEST_CHECK("bad: missing file", rc == DT_EINPUT && strstr(ctx.msg, "nothere.bin"), "%s", ctx.msg);
}

// The fixture pair: the same weights as llama2.c .bin and as an HF folder (q/k already permuted).
static void test_fixture(void) {
    const char *fx = dt_test_fixtures();
    if (!fx) {
        TEST_SKIP("fixture: stories260K.bin equals stories260K-hf", "no ../shared/fixtures");
        return;
    }
    char bin[512], hf[512];
    snprintf(bin, sizeof bin, "%s/stories260K/stories260K.bin", fx);
    snprintf(hf, sizeof hf, "%s/stories260K-hf", fx);
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_model_config cb, ch;
    dt_weights *wb, *wh;
    int rc = dt_weights_open(&ctx, bin, &cb, &wb);
    TEST_CHECK("fixture: open stories260K.bin", rc == DT_OK, "%s", ctx.msg);
    if (rc) return;
    rc = dt_weights_open(&ctx, hf, &ch, &wh);
    TEST_CHECK("fixture: open stories260K-hf", rc == DT_OK, "%s", ctx.msg);
    if (rc) {
        dt_weights_close(wb);
        return;
    }
    TEST_CHECK("fixture: configs agree", cb.hidden_size == ch.hidden_size && cb.intermediate_size == ch.intermediate_size &&
               cb.num_layers == ch.num_layers && cb.num_heads == ch.num_heads && cb.num_kv_heads == ch.num_kv_heads &&
               cb.head_dim == ch.head_dim && cb.vocab_size == ch.vocab_size &&
               cb.max_position_embeddings == ch.max_position_embeddings && cb.rms_norm_eps == ch.rms_norm_eps &&
               cb.rope_theta == ch.rope_theta && cb.tie_word_embeddings == ch.tie_word_embeddings &&
               cb.bos_token_id == ch.bos_token_id && cb.eos_token_id == ch.eos_token_id, "configs differ");
    bool ok = dt_weights_count(wb) == dt_weights_count(wh);
    const char *bad = "";
    double worst = 0;
    for (size_t i = 0; ok && i < dt_weights_count(wh); i++) {
        const dt_st_tensor *a = dt_weights_at(wh, i), *b = dt_weights_find(wb, a->name);
        ok = b && a->ndim == b->ndim && a->shape[0] == b->shape[0] && a->shape[1] == b->shape[1] && a->nbytes == b->nbytes;
        for (size_t j = 0; ok && j < a->nbytes / 4; j++) {
            float x, y;
            memcpy(&x, (const char *)a->data + 4 * j, 4);
            memcpy(&y, (const char *)b->data + 4 * j, 4);
            worst = fmax(worst, fabs((double)x - y));
        }
        if (!ok || worst > 0) bad = a->name;
        ok = ok && worst == 0;
    }
    TEST_CHECK("fixture: all 47 tensors bitwise equal after the q/k permutation",
               ok && dt_weights_count(wh) == 47, "count %zu vs %zu, tensor %s, worst %g", dt_weights_count(wb),
               dt_weights_count(wh), bad, worst);
    dt_weights_close(wb);
    dt_weights_close(wh);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/dt_test_l2c_XXXXXX");
    if (!mkdtemp(g_dir)) {
        TEST_FAIL("setup", "mkdtemp failed");
        TEST_EXIT();
    }
    test_synthetic();
    test_bad_files();
    test_fixture();
    nftw(g_dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    TEST_EXIT();
}
