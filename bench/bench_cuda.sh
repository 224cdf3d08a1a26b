#!/bin/sh
# `make bench-cuda`: the GPU LoRA step, deltatune beside PyTorch + PEFT in the same run, two cases:
#   1. Llama-3.2-1B shape, bf16, B=4, T=2048 (bench_cuda_step / bench_cuda_pytorch.py defaults);
#   2. Llama-3-8B shape, linears NF4 with double quantization (QLoRA), B=1, T=2048 (PyTorch: bitsandbytes
#      Linear4bit, skipped where bitsandbytes is not installed).
# Then one table: tokens/s, MFU, peak device memory, and deltatune's ratios to PyTorch (goals: at least
# 1.5x its tokens/s, at most 0.7x its peak memory, at least 50% MFU on the 1B case).
# Usage: sh bench/bench_cuda.sh path/to/bench_cuda_step [--peak-tflops X]  (X: the GPU's dense bf16 peak,
# default 989.4, H100/H200 SXM)
set -u
bin=$1
shift
peak=989.4
[ "${1:-}" = --peak-tflops ] && peak=$2
out=$(mktemp -d /tmp/dt_bench_cuda.XXXXXX)
trap 'rm -rf "$out"' EXIT
# The first python3 with torch (Debian's /usr/bin/python3 may have it where a pyenv one does not).
py=
for p in python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import torch' >/dev/null 2>&1; then py=$(command -v "$p"); break; fi
done

run_case() { # NAME ARGS...: both sides' output into $out/NAME.{dt,pt}
    name=$1; shift
    echo "== $name"
    "$bin" --peak-tflops "$peak" "$@" | tee "$out/$name.dt"
    if [ -n "$py" ]; then
        "$py" bench/bench_cuda_pytorch.py --peak-tflops "$peak" "$@" 2>&1 | tee "$out/$name.pt"
    else
        echo "bench_cuda_pytorch: skipped: no python3 with torch" | tee "$out/$name.pt"
    fi
}
run_case 1b-bf16 --shape 1b --dtype bf16 --batch 4 --seq 2048
run_case 8b-nf4 --shape 8b --dtype bf16 --quantize nf4 --batch 1 --seq 2048

# field FILE PATTERN N: the N-th word of the first line matching PATTERN ("-" when absent)
field() { awk -v p="$2" -v n="$3" 'index($0, p) { print $n; found = 1; exit } END { if (!found) print "-" }' "$1"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b + 0 == 0) print "-"; else printf "%.2f\n", a / b }'; }

echo
printf '%-10s | %-28s | %-28s | %s\n' case "deltatune tok/s, MFU, GiB" "PyTorch+PEFT tok/s, MFU, GiB" "tok/s ratio (>=1.5), memory ratio (<=0.7)"
for name in 1b-bf16 8b-nf4; do
    dt=$out/$name.dt pt=$out/$name.pt
    dtt=$(field "$dt" "tokens/s (median)" 3) ptt=$(field "$pt" "tokens/s (median)" 3)
    dtm=$(field "$dt" "peak GPU memory" 4) ptm=$(field "$pt" "peak GPU memory" 4)
    dtf=$(field "$dt" "achieved" 5) ptf=$(field "$pt" "achieved" 5)
    printf '%-10s | %8s %8s %8s   | %8s %8s %8s   | %s, %s\n' "$name" "$dtt" "$dtf" "$dtm" "$ptt" "$ptf" "$ptm" \
        "$(ratio "$dtt" "$ptt")" "$(ratio "$dtm" "$ptm")"
done
