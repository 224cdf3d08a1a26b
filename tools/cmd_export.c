// deltatune export --adapter DIR --model DIR --format gguf --out FILE.gguf
// Writes a PEFT LoRA adapter as a llama.cpp GGUF LoRA adapter (llama-cli --lora FILE.gguf).
#include <stdio.h>
#include <string.h>
#include "peft/export_gguf.h"
#include "tools/commands.h"

static int usage(void) {
    fprintf(stderr, "usage: deltatune export --adapter DIR --model DIR --format gguf --out FILE.gguf\n");
    return 2;
}

int cmd_export(int argc, char **argv) {
    const char *adapter = NULL, *model = NULL, *format = "gguf", *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_value = i + 1 < argc;
        if (!strcmp(a, "--adapter") && has_value) adapter = argv[++i];
        else if (!strcmp(a, "--model") && has_value) model = argv[++i];
        else if (!strcmp(a, "--format") && has_value) format = argv[++i];
        else if (!strcmp(a, "--out") && has_value) out = argv[++i];
        else { fprintf(stderr, "deltatune export: unknown or incomplete option '%s'\n", a); return usage(); }
    }
    if (!adapter || !model || !out) return usage();
    if (strcmp(format, "gguf")) {
        fprintf(stderr, "deltatune export: format '%s' is not supported (gguf)\n", format);
        return 2;
    }
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    ctx.warn = dt_cli_warn;
    dt_export_info info;
    int rc = dt_export_lora_gguf(&ctx, adapter, model, out, &info);
    if (rc) return dt_cli_fail("export", &ctx, rc);
    char ranks[64];
    if (info.rank_min == info.rank_max) snprintf(ranks, sizeof ranks, "rank %d", info.rank_min);
    else snprintf(ranks, sizeof ranks, "ranks %d to %d", info.rank_min, info.rank_max);
    printf("wrote %s: LoRA for %s, %d adapted weights, %s, adapter.lora.alpha %g", out, info.arch, info.n_pairs, ranks,
           (double)info.alpha);
    // llama.cpp has one alpha per file: modules with their own alpha (or rsLoRA rank) carry it in lora_b.
    if (info.n_folded) printf(" (%d lora_b scaled to keep their module's own scale)", info.n_folded);
    putchar('\n');
    return 0;
}
