// deltatune export --adapter DIR --model PATH --out FILE.gguf [--format gguf]
// Writes a PEFT LoRA adapter as a llama.cpp GGUF LoRA adapter (llama-cli --lora FILE.gguf).
#include <stdio.h>
#include <string.h>
#include "peft/export_gguf.h"
#include "tools/cli_opts.h"
#include "tools/commands.h"

int cmd_export(int argc, char **argv) {
    const char *adapter = NULL, *model = NULL, *format = "gguf", *out = NULL;
    const dt_opt opts[] = {
        DT_O_STR("--adapter", "DIR", "the PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors)", &adapter),
        DT_O_STR("--model", "PATH", "the base model it was trained on (for the architecture and tensor names)", &model),
        DT_O_CHOICE("--format", "gguf", "the output format (only gguf: llama.cpp's --lora)", &format),
        DT_O_STR("--out", "FILE.gguf", "the file to write", &out),
    };
    const dt_cli cli = {"export", "--adapter DIR --model PATH --out FILE.gguf [--format gguf]",
                        "Writes a LoRA adapter as a llama.cpp GGUF LoRA adapter (llama-cli -m base.gguf --lora FILE.gguf).",
                        opts, (int)(sizeof opts / sizeof opts[0]), NULL};
    int st = dt_cli_parse(&cli, argc, argv, NULL, NULL, 0);
    if (st >= 0) return st;
    if (!adapter || !model || !out) return dt_cli_bad(&cli, "--adapter, --model and --out are required");
    dt_ctx ctx;
    dt_cli_ctx_init(&ctx);
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
