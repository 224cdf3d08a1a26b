// Merge benchmark: a random-weight model of SmolLM2-135M's shape (hidden 576, 30 layers, 9 heads, 3 KV
// heads, intermediate 1536, vocab 49152, tied) stored in bf16, and a random r = 16 LoRA adapter on every
// linear module. Times `dt_merge` (hf output, bf16) against copying the weight file with a read/write loop
// and fsync, side by side, five rounds each (the best of each counts; the median of the rounds' ratios is printed too), each in its own process so that its peak RSS is its own.
// The merge must take at most 2x the copy (exit 1 otherwise).
//   bench_merge [DIR]     work folder under DIR (default /tmp), removed at the end unless DT_BENCH_KEEP is set
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "models/safetensors_write.h"
#include "peft/merge.h"
#include "peft/peft_io.h"
#include "bench/bench_util.h"

enum { ROUNDS = 5 };

static const char CONFIG[] =
    "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"model_type\": \"llama\",\n  \"hidden_size\": 576,\n"
    "  \"intermediate_size\": 1536,\n  \"num_hidden_layers\": 30,\n  \"num_attention_heads\": 9,\n"
    "  \"num_key_value_heads\": 3,\n  \"vocab_size\": 49152,\n  \"max_position_embeddings\": 8192,\n"
    "  \"rms_norm_eps\": 1e-05,\n  \"rope_theta\": 100000.0,\n  \"tie_word_embeddings\": true,\n"
    "  \"torch_dtype\": \"bfloat16\"\n}\n";

// Random bf16 values, seeded by the tensor's index; norms are 1.
typedef struct { uint64_t seed; bool norm; } fill_spec;

static int fill_random(dt_ctx *ctx, void *user, void *dst, size_t nbytes) {
    (void)ctx;
    const fill_spec *s = user;
    uint16_t *d = dst;
    uint64_t x = s->seed * 2654435761u + 1;
    for (size_t i = 0; i < nbytes / 2; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        float v = s->norm ? 1.0f : 0.05f * ((float)(x >> 40) / (float)(1 << 23) - 1.0f);
        d[i] = dt_f32_to_bf16(v);
    }
    return DT_OK;
}

static int write_model(dt_ctx *ctx, const dt_model_config *c, const char *dir) {
    dt_st_writer *w;
    int rc = dt_st_writer_init(ctx, &w);
    if (rc) return rc;
    rc = dt_st_writer_set_metadata(ctx, w, "format", "pt");
    const int64_t D = c->hidden_size, F = c->intermediate_size, q = (int64_t)c->num_heads * c->head_dim,
                  kv = (int64_t)c->num_kv_heads * c->head_dim;
    const int64_t dims[DT_LT_COUNT][2] = {
        [DT_LT_Q] = {q, D}, [DT_LT_K] = {kv, D}, [DT_LT_V] = {kv, D}, [DT_LT_O] = {D, q}, [DT_LT_GATE] = {F, D},
        [DT_LT_UP] = {F, D}, [DT_LT_DOWN] = {D, F}, [DT_LT_ATTN_NORM] = {D, 0}, [DT_LT_FFN_NORM] = {D, 0},
    };
    const int n = 2 + c->num_layers * DT_LT_COUNT;
    fill_spec *specs = calloc((size_t)n, sizeof *specs);
    char name[256];
    int k = 0;
    specs[k] = (fill_spec){1, false};
    rc = rc ? rc : dt_st_writer_add_fn(ctx, w, dt_tn_global(DT_GT_EMBED), DT_BF16, 2, (int64_t[]){c->vocab_size, D}, fill_random, &specs[k++]);
    specs[k] = (fill_spec){2, true};
    rc = rc ? rc : dt_st_writer_add_fn(ctx, w, dt_tn_global(DT_GT_NORM), DT_BF16, 1, (int64_t[]){D}, fill_random, &specs[k++]);
    for (int l = 0; l < c->num_layers && !rc; l++)
        for (int t = 0; t < DT_LT_COUNT && !rc; t++) {
            if (!dims[t][0]) continue; // no biases or q/k norms in this model
            dt_tn_layer(name, sizeof name, l, (dt_layer_tensor)t);
            specs[k] = (fill_spec){(uint64_t)(3 + k), dims[t][1] == 0};
            rc = dt_st_writer_add_fn(ctx, w, name, DT_BF16, dims[t][1] ? 2 : 1, dims[t], fill_random, &specs[k++]);
        }
    char path[1024];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (!rc) rc = dt_st_writer_write(ctx, w, path);
    dt_st_writer_free(w);
    free(specs);
    if (!rc) {
        snprintf(path, sizeof path, "%s/config.json", dir);
        FILE *f = fopen(path, "w");
        if (!f || fputs(CONFIG, f) < 0 || fclose(f)) rc = dt_fail(ctx, DT_EIO, "%s: cannot write", path);
    }
    return rc;
}

static int write_adapter(dt_ctx *ctx, const dt_model_config *c, const char *dir) {
    dt_llama stub; // dt_lora_create and dt_adapter_save read only the config
    memset(&stub, 0, sizeof stub);
    stub.cfg = *c;
    dt_lora_config lc = {.r = 16, .alpha = 32};
    for (int i = 0; i < DT_MOD_COUNT; i++) lc.target[i] = true;
    dt_adapter *a;
    int rc = dt_lora_create(ctx, &stub, &lc, 1, &a);
    if (rc) return rc;
    for (size_t i = 0; i < a->n_params; i++) a->params[i] += 1e-3f * (float)((int)(i % 17) - 8); // B non-zero
    rc = dt_adapter_save(ctx, a, &stub, dir);
    dt_adapter_free(a);
    return rc;
}

// Child process: the read/write copy loop with fsync.
static int child_copy(const char *src, const char *dst) {
    int in = open(src, O_RDONLY), out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (in < 0 || out < 0) return 1;
    const size_t cap = (size_t)1 << 20;
    char *buf = malloc(cap);
    ssize_t n;
    while ((n = read(in, buf, cap)) > 0)
        if (write(out, buf, (size_t)n) != n) return 1;
    int rc = n < 0 || fsync(out) != 0;
    close(in);
    free(buf);
    return close(out) != 0 || rc;
}

static int child_merge(const char *model, const char *adapter, const char *out) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_merge_adapter ad = {adapter, 1.0f};
    dt_merge_opts o = {.model = model, .adapters = &ad, .n_adapters = 1, .out = out, .dtype = -1, .format = DT_MERGE_HF};
    int rc = dt_merge(&ctx, &o);
    if (rc) fprintf(stderr, "bench_merge: %s\n", ctx.msg);
    return rc != 0;
}

// Runs this program as a child ("--child ..."); wall seconds and the child's peak RSS in MiB. Dirty pages
// of earlier steps are flushed first, so that neither measurement pays for the other's writes.
static int run_child(char *const args[], double *secs, double *rss_mib) {
    sync();
    double t = now();
    pid_t pid = fork();
    if (pid == 0) {
        execv("/proc/self/exe", args);
        _exit(127);
    }
    int st;
    struct rusage ru;
    if (pid < 0 || wait4(pid, &st, 0, &ru) < 0) return 1;
    *secs = now() - t;
    *rss_mib = (double)ru.ru_maxrss / 1024.0;
    return !WIFEXITED(st) || WEXITSTATUS(st) != 0;
}

static void rm_tree(const char *path) {
    DIR *d = opendir(path);
    if (!d) { unlink(path); return; }
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            size_t n = strlen(path) + strlen(e->d_name) + 2;
            char *p = malloc(n);
            snprintf(p, n, "%s/%s", path, e->d_name);
            rm_tree(p);
            free(p);
        }
    closedir(d);
    rmdir(path);
}

int main(int argc, char **argv) {
    if (argc >= 5 && !strcmp(argv[1], "--child") && !strcmp(argv[2], "copy")) return child_copy(argv[3], argv[4]);
    if (argc >= 6 && !strcmp(argv[1], "--child") && !strcmp(argv[2], "merge")) return child_merge(argv[3], argv[4], argv[5]);
    char work[900], model[1000], adapter[1000], src[1100];
    snprintf(work, sizeof work, "%s/dt_bench_merge_XXXXXX", argc > 1 ? argv[1] : "/tmp");
    if (!mkdtemp(work)) { perror("mkdtemp"); return 1; }
    snprintf(model, sizeof model, "%s/model", work);
    snprintf(adapter, sizeof adapter, "%s/adapter", work);
    snprintf(src, sizeof src, "%s/model.safetensors", model);
    mkdir(model, 0755);
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    // The shape the weights are written in; the adapter is made from config.json as read back.
    const dt_model_config shape = {.hidden_size = 576, .intermediate_size = 1536, .num_layers = 30, .num_heads = 9,
                                   .num_kv_heads = 3, .head_dim = 64, .vocab_size = 49152};
    dt_model_config cfg;
    double t0 = now();
    int rc = write_model(&ctx, &shape, model);
    if (!rc) rc = dt_config_load(&ctx, model, &cfg);
    if (!rc) rc = write_adapter(&ctx, &cfg, adapter);
    if (rc) {
        fprintf(stderr, "bench_merge: %s\n", ctx.msg);
        rm_tree(work);
        return 1;
    }
    struct stat sb;
    stat(src, &sb);
    printf("model: SmolLM2-135M shape, bf16, %.1f MiB; adapter r=16 on all 7 linears; written in %.2f s\n",
           (double)sb.st_size / 1048576.0, now() - t0);
    double best_copy = 1e30, best_merge = 1e30, rss_copy = 0, rss_merge = 0, ratios[ROUNDS];
    int fails = 0;
    for (int round = 0; round < ROUNDS; round++) {
        char dst[1300], out[1300];
        snprintf(dst, sizeof dst, "%s/copy%d.safetensors", work, round);
        snprintf(out, sizeof out, "%s/merged%d", work, round);
        char *copy_args[] = {argv[0], "--child", "copy", src, dst, NULL};
        char *merge_args[] = {argv[0], "--child", "merge", model, adapter, out, NULL};
        double tc, tm, rc_mib, rm_mib;
        fails += run_child(copy_args, &tc, &rc_mib);
        fails += run_child(merge_args, &tm, &rm_mib);
        printf("round %d: copy %.3f s (peak RSS %.1f MiB), merge %.3f s (peak RSS %.1f MiB), ratio %.2f\n", round, tc,
               rc_mib, tm, rm_mib, tm / tc);
        ratios[round] = tm / tc;
        if (tc < best_copy) best_copy = tc;
        if (tm < best_merge) best_merge = tm;
        if (rc_mib > rss_copy) rss_copy = rc_mib;
        if (rm_mib > rss_merge) rss_merge = rm_mib;
        unlink(dst);
        rm_tree(out);
    }
    if (getenv("DT_BENCH_KEEP")) printf("kept %s (model/, adapter/) for profiling: %s --child merge MODEL ADAPTER OUT\n", work, argv[0]);
    else rm_tree(work);
    if (fails) { fprintf(stderr, "bench_merge: a child failed\n"); return 1; }
    const double ratio = best_merge / best_copy;
    for (int i = 1; i < ROUNDS; i++) // insertion sort, for the median
        for (int k = i; k > 0 && ratios[k] < ratios[k - 1]; k--) { double t = ratios[k]; ratios[k] = ratios[k - 1]; ratios[k - 1] = t; }
    printf("best: copy %.3f s, merge %.3f s, merge/copy %.2f (limit 2.00; median of the rounds' ratios %.2f); peak RSS: "
           "merge %.1f MiB, copy %.1f MiB, weight file %.1f MiB\n", best_copy, best_merge, ratio, ratios[ROUNDS / 2], rss_merge,
           rss_copy, (double)sb.st_size / 1048576.0);
    printf("%s merge_within_2x_copy\n", ratio <= 2.0 ? "PASS" : "FAIL");
    return ratio <= 2.0 ? 0 : 1;
}
