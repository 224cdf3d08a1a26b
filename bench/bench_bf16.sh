#!/bin/sh
# The low-precision LoRA step, side by side (part of `make bench`): for SmolLM2-135M and Llama-3.2-1B
# shapes (B=1, T=512, r=16 on every linear, AdamW, 2 threads), deltatune with a bf16 base, deltatune
# with an f32 base, and PyTorch (bench/bench_pytorch_cpu.py: bf16 base under CPU autocast), each with
# the matmul peak measured beside its steps. Then one table with every figure and the ratios against
# the goals of the low-precision issue. Usage: bench/bench_bf16.sh BUILD_DIR
#   DT_BENCH_MODELS   models to run (default "smollm2-135m llama-3.2-1b")
#   DT_BENCH_PYTORCH  0 skips PyTorch (it needs Debian's python3-torch)
# Steps: 8 after 2 warm-up for SmolLM2; 3 after 1 for Llama-3.2-1B, whose f32 step takes minutes here.
set -u
build=${1:-build}
models=${DT_BENCH_MODELS:-"smollm2-135m llama-3.2-1b"}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for model in $models; do
    if [ "$model" = llama-3.2-1b ]; then steps=3; warm=1; else steps=8; warm=2; fi
    for dtype in bf16 f32; do
        echo "== deltatune $model $dtype"
        DT_BENCH_MODEL=$model DT_BENCH_DTYPE=$dtype DT_BENCH_STEPS=$steps DT_BENCH_WARMUP=$warm \
            "$build/bench/bench_lora_step" | tee -a "$out" || exit 1
    done
    if [ "${DT_BENCH_PYTORCH:-1}" != 0 ]; then
        echo "== pytorch $model bf16"
        /usr/bin/python3 bench/bench_pytorch_cpu.py --model "$model" --dtype bf16 --steps "$steps" \
            --warmup "$warm" | tee -a "$out" || echo "(PyTorch run failed; its column stays empty)"
    fi
done
echo
echo "== low-precision LoRA step (machine shared with other jobs: compare figures of the same run only)"
grep '^RESULT' "$out" | awk '
function val(line, key,   i, n, kv) {
    n = split(line, kv, " ")
    for (i = 1; i <= n; i++) if (index(kv[i], key "=") == 1) return substr(kv[i], length(key) + 2)
    return ""
}
function verdict(ok) { return ok ? "met" : "NOT met" }
{
    m = val($0, "model"); k = val($0, "impl") "/" val($0, "dtype")
    # + 0: the fields are strings, and awk compares strings as text
    tps[m, k] = val($0, "tps") + 0; rss[m, k] = val($0, "rss_mib") + 0; frac[m, k] = val($0, "peak_frac") + 0
    if (val($0, "emulated") == "1") emu[m, k] = 1
    if (val($0, "bf16_peak_gflops") != "") { bpk[m, k] = val($0, "bf16_peak_gflops") + 0; spk[m, k] = val($0, "sgemm_peak_gflops") + 0 }
    if (!(m in seen)) { seen[m] = 1; order[++nm] = m }
}
END {
    for (i = 1; i <= nm; i++) {
        m = order[i]; b = m SUBSEP "deltatune/bf16"; f = m SUBSEP "deltatune/f32"; p = m SUBSEP "pytorch/bf16"
        printf "%s\n", m
        printf "  %-22s %10s %10s %12s %12s %10s\n", "", "tokens/s", "RSS MiB", "of own peak", "bf16 peak", "sgemm peak"
        printf "  %-22s %10.2f %10.1f %11.1f%% %12.1f %10.1f\n", "deltatune bf16", tps[b], rss[b], 100 * frac[b], bpk[b], spk[b]
        printf "  %-22s %10.2f %10.1f %11.1f%% %12.1f %10.1f\n", "deltatune f32", tps[f], rss[f], 100 * frac[f], bpk[f], spk[f]
        printf "  %-22s %10.2f %10.1f %12s\n", "pytorch bf16 autocast", tps[p], rss[p], "-"
        big = (m == "llama-3.2-1b")
        rf = (tps[f] > 0) ? tps[b] / tps[f] : 0
        rp = (tps[p] > 0) ? tps[b] / tps[p] : 0
        goal_rss = big ? 4096 : 600
        if (b in emu) {
            printf "  no bf16 matrix instructions here: the bf16 row is the emulation the tests use (widened to f32,\n"
            printf "  sgemm), not a bf16 figure; the goals need a CPU with AMX or AVX512-BF16\n"
            continue
        }
        printf "  bf16 / f32 speed       %.2fx\n", rf
        printf "  bf16 / pytorch bf16    %.2fx   (goal >= 4x: %s)\n", rp, (tps[p] > 0) ? verdict(rp >= 4) : "no PyTorch run"
        printf "  bf16 of its peak       %.1f%%   (goal >= 50%%: %s)\n", 100 * frac[b], verdict(frac[b] >= 0.5)
        printf "  bf16 peak RSS          %.1f MiB (goal <= %d MiB: %s)\n", rss[b], goal_rss, verdict(rss[b] <= goal_rss)
        if (!big) printf "  bf16 tokens/s          %.2f    (goal >= 1000: %s)\n", tps[b], verdict(tps[b] >= 1000)
    }
}'
