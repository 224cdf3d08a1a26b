// Adapters a user might download, crafted as the fuzzer found them: a GGUF key of an unexpected type or
// an empty array reads as 0 instead of past its data (adapter.lora.alpha in `inspect`); `inspect` of a
// tiny PEFT adapter naming layer 999999 with many alpha_pattern keys finishes at once.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include "models/gguf.h"
#include "models/safetensors_write.h"
#include "tests/file_util.h"
#include "tests/test_util.h"

static char tmp[64];

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void test_gguf_getters(void) {
    // One byte of data behind an empty f32 array: reading element 0 would read 3 bytes past it (ASan).
    unsigned char *one = malloc(1);
    one[0] = 0x7f;
    dt_gguf_kv empty = {.key = "adapter.lora.alpha", .type = DT_GGUF_ARRAY, .arr_type = DT_GGUF_F32, .n = 0, .data = one};
    dt_gguf_kv str = {.key = "adapter.lora.alpha", .type = DT_GGUF_STRING, .arr_type = DT_GGUF_STRING, .n = 1};
    TEST_CHECK("gguf_getter_empty_array_reads_zero",
               dt_gguf_kv_float(&empty, 0) == 0 && dt_gguf_kv_int(&empty, 0) == 0 && dt_gguf_kv_uint(&empty, 0) == 0,
               "element 0 of an empty array read as %g", dt_gguf_kv_float(&empty, 0));
    TEST_CHECK("gguf_getter_string_reads_zero", dt_gguf_kv_float(&str, 0) == 0 && dt_gguf_kv_int(&str, 0) == 0,
               "a string key read as a number");
    float f = 2.5f;
    dt_gguf_kv ok = {.key = "x", .type = DT_GGUF_F32, .arr_type = DT_GGUF_F32, .n = 1, .data = &f};
    TEST_CHECK("gguf_getter_scalar", dt_gguf_kv_float(&ok, 0) == 2.5 && dt_gguf_kv_float(&ok, 1) == 0, "got %g",
               dt_gguf_kv_float(&ok, 0));
    // Found by fuzz_gguf: a NaN or huge float read as an integer (undefined behaviour) is 0.
    float bad[3] = {NAN, 1e30f, -7.9f};
    dt_gguf_kv fl = {.key = "llama.block_count", .type = DT_GGUF_ARRAY, .arr_type = DT_GGUF_F32, .n = 3, .data = bad};
    TEST_CHECK("gguf_getter_nan_as_int", dt_gguf_kv_int(&fl, 0) == 0 && dt_gguf_kv_int(&fl, 1) == 0 && dt_gguf_kv_int(&fl, 2) == -7,
               "got %lld, %lld, %lld", (long long)dt_gguf_kv_int(&fl, 0), (long long)dt_gguf_kv_int(&fl, 1),
               (long long)dt_gguf_kv_int(&fl, 2));
    free(one);
}

static void test_inspect_absurd_layer(void) {
    char dir[128], path[256];
    snprintf(dir, sizeof dir, "%s/far", tmp);
    mkdir(dir, 0777);
    // 300 alpha_pattern keys, none matching: each module of the file is checked against all of them.
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) { TEST_FAIL("inspect_absurd_layer_setup", "cannot write %s", path); return; }
    fprintf(f, "{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 4, \"target_modules\": [\"q_proj\"], \"alpha_pattern\": {");
    for (int i = 0; i < 300; i++) fprintf(f, "%s\"x%d\\\\.q_proj\": %d", i ? ", " : "", i, i + 1);
    fprintf(f, "}}\n");
    fclose(f);
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_st_writer *w;
    float zeros[2 * 4] = {0};
    int rc = dt_st_writer_init(&ctx, &w);
    if (!rc) rc = dt_st_writer_add(&ctx, w, "base_model.model.model.layers.999999.self_attn.q_proj.lora_A.weight", DT_F32, 2,
                                   (int64_t[]){2, 4}, zeros);
    if (!rc) rc = dt_st_writer_add(&ctx, w, "base_model.model.model.layers.999999.self_attn.q_proj.lora_B.weight", DT_F32, 2,
                                   (int64_t[]){4, 2}, zeros);
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    if (!rc) rc = dt_st_writer_write(&ctx, w, path);
    dt_st_writer_free(w);
    if (rc) { TEST_FAIL("inspect_absurd_layer_setup", "%s", ctx.msg); return; }
    char cmd[512];
    // timeout: before the fix this ran for minutes; 20 s is far above the fixed time on a loaded machine.
    snprintf(cmd, sizeof cmd, "timeout 20 ./deltatune inspect %s >%s/out.txt 2>&1", dir, tmp);
    double t0 = now();
    int st = system(cmd);
    double secs = now() - t0;
    snprintf(path, sizeof path, "%s/out.txt", tmp);
    char *out = tf_slurp(path, NULL);
    TEST_CHECK("inspect_absurd_layer_fast", WIFEXITED(st) && WEXITSTATUS(st) == 0 && out && strstr(out, "layer 999999") && secs < 10,
               "status %d after %.1f s: %.300s", st, secs, out ? out : "");
    free(out);
}

int main(void) {
    snprintf(tmp, sizeof tmp, "/tmp/dt_hostile_adapter_%d", (int)getpid());
    mkdir(tmp, 0777);
    test_gguf_getters();
    test_inspect_absurd_layer();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (!dt_test_failures) (void)!system(cmd);
    TEST_EXIT();
}
