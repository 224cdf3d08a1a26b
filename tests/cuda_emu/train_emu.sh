#!/bin/sh
# `deltatune train` on hardware.device: cuda through the CUDA emulator (emu_build.sh builds $1), against
# the same binary on the CPU: the tiny recipe (tests/data/train/tiny.yaml: the golden llama_gqa model,
# LoRA r=4 on every linear, dropout, packing, AdamW, 12 steps of 2 x 2 batches of 32 tokens).
# Prints PASS/FAIL lines like the C tests.
#  - every step's loss on cuda (f32 matmuls) within 1e-4 relative of the CPU's; with bf16 matmuls
#    (inputs rounded to bf16, f32 accumulation) within 3e-2;
#  - a run interrupted on cuda resumes on the CPU and the reverse; their losses stay within 1e-4 of the
#    CPU run's;
#  - more than the device's memory: refused before loading, exit 2, with the numbers;
#  - device memory running out mid-run: exit 2 naming asked/free, the last checkpoint left as it was;
#  - eval --device cuda: the CPU's mean loss within 1e-5;
#  - generate --device cuda: the CPU's tokens (demo model; LoRA, prefix and prompt tuning adapters; KV cache on
#    the device);
#  - cuDNN's fused attention (bf16, packing on and off): the CPU's losses within 3e-2, and train's
#    attention line says cuDNN ran every call; without cuDNN (emulator only) the hand kernel runs them, same losses;
#  - prefix tuning (method section replaced): every step's loss on cuda within 1e-4 of the CPU's;
#  - activation checkpointing on cuda: the CPU's losses within 1e-4;
#  - quantized bases (model.quantize q8_0, q4_0) decoded on the device: the CPU's losses within 1e-4;
#    NF4 (QLoRA, double quantization or not) likewise; a GGUF base in q8_0 / q5_1 (stored quantized on the device): eval's
#    mean loss within 1e-5 of the CPU's;
# On a real GPU (`make test-cuda` passes build-cuda/deltatune) the same checks run on the device, with
# the stories260K recipe's first 20 losses in place of the two emulator-only memory checks.
# Usage: sh tests/cuda_emu/train_emu.sh path/to/deltatune   (a CUDA=1 build, emulated or real)
set -u
bin=$1
recipe=tests/data/train/tiny.yaml
tmp=$(mktemp -d /tmp/dt_cuda_emu.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
pass() { echo "PASS $1"; }
failed=0
fail() { echo "FAIL $1: $2"; failed=1; }
check() { if [ "$2" = 0 ]; then pass "$1"; else fail "$1" "$3"; fi; }

train() { # train NAME [overrides...]: runs into $tmp/NAME, exit status in $rc, stderr in $tmp/NAME.err
    name=$1; shift
    "$bin" train "$recipe" output_dir="$tmp/$name" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err"
    rc=$?
}

# Worst relative difference between the "loss" of each step of the second metrics.jsonl and the same
# step of the first (the reference may run longer); "inf" when a step is missing from the reference.
loss_diff() {
    awk 'function loss(line) { sub(/.*"loss":/, "", line); sub(/,.*/, "", line); return line + 0 }
         function step(line) { sub(/.*"step":/, "", line); sub(/,.*/, "", line); return line + 0 }
         FNR == NR { a[step($0)] = loss($0); next }
         { s = step($0); if (!(s in a)) { bad = 1; next } d = a[s] - loss($0); if (d < 0) d = -d
           d /= (a[s] < 0 ? -a[s] : a[s]); if (d > worst) worst = d; m++ }
         END { if (bad || m == 0) print "inf"; else printf "%.3g\n", worst }' "$1" "$2"
}
within() { awk -v d="$1" -v t="$2" 'BEGIN { exit !(d != "inf" && d + 0 <= t + 0) }'; }

train cpu hardware.device=cpu hardware.dtype=f32
check train_emu_cpu_reference "$rc" "exit $rc: $(tail -1 "$tmp/cpu.err")"

train f32 hardware.device=cuda hardware.dtype=f32
d=$(loss_diff "$tmp/cpu/metrics.jsonl" "$tmp/f32/metrics.jsonl")
within "$d" 1e-4
check "train_emu_cuda_f32_losses (worst $d)" $? "exit $rc, worst relative loss difference $d above 1e-4: $(tail -1 "$tmp/f32.err")"
grep -q "memory estimate:" "$tmp/f32.err"
check train_emu_memory_estimate_printed $? "no memory estimate on stderr"

train bf16 hardware.device=cuda hardware.dtype=bf16 train.max_steps=4
d=$(loss_diff "$tmp/cpu/metrics.jsonl" "$tmp/bf16/metrics.jsonl")
within "$d" 3e-2
check "train_emu_cuda_bf16_losses (worst $d)" $? "exit $rc, worst relative loss difference $d above 3e-2: $(tail -1 "$tmp/bf16.err")"
grep -q "frozen weights: BF16 on the GPU" "$tmp/bf16.err"
check train_emu_cuda_bf16_weights_kept_16_bit $? "$(grep 'frozen weights' "$tmp/bf16.err")"

# cuDNN's fused attention runs the bf16 table's attention, packed rows (segment mask) and rows of one
# segment (packing off): the CPU's losses within the same 3e-2, and train's last line counts the calls
# cuDNN ran, none on the hand kernel.
train cpu1 hardware.device=cpu hardware.dtype=f32 data.packing=false train.max_steps=4
for packing in true false; do
    [ $packing = true ] && ref=cpu || ref=cpu1
    train dnn-$packing hardware.device=cuda hardware.dtype=bf16 data.packing=$packing train.max_steps=4
    d=$(loss_diff "$tmp/$ref/metrics.jsonl" "$tmp/dnn-$packing/metrics.jsonl")
    within "$d" 3e-2
    check "train_emu_cuda_cudnn_attention_packing_${packing}_losses (worst $d)" $? \
        "exit $rc, worst relative loss difference $d above 3e-2: $(tail -1 "$tmp/dnn-$packing.err")"
    grep -q "^attention: cuDNN .* fused flash attention [1-9][0-9]* calls, hand-written flash kernel 0" "$tmp/dnn-$packing.err"
    check train_emu_cuda_cudnn_attention_packing_${packing}_ran $? "$(grep '^attention' "$tmp/dnn-$packing.err")"
done

# Prefix tuning (the same recipe with its method section replaced): the key/value prefix through the
# device's attention (dt_attention_ext: packed rows each get the prefix) gives the CPU's losses.
train pcpu 'method={name: prefix_tuning, num_virtual_tokens: 4}' hardware.device=cpu hardware.dtype=f32 train.max_steps=4
train pgpu 'method={name: prefix_tuning, num_virtual_tokens: 4}' hardware.device=cuda hardware.dtype=f32 train.max_steps=4
d=$(loss_diff "$tmp/pcpu/metrics.jsonl" "$tmp/pgpu/metrics.jsonl")
within "$d" 1e-4
check "train_emu_cuda_prefix_tuning_losses (worst $d)" $? "exit $rc, worst relative loss difference $d above 1e-4: $(tail -1 "$tmp/pgpu.err")"

# Activation checkpointing on the device: each layer recomputed in the backward gives the CPU's losses.
train ccpu train.activation_checkpointing=true hardware.device=cpu hardware.dtype=f32 train.max_steps=4
train cgpu train.activation_checkpointing=true hardware.device=cuda hardware.dtype=f32 train.max_steps=4
d=$(loss_diff "$tmp/ccpu/metrics.jsonl" "$tmp/cgpu/metrics.jsonl")
within "$d" 1e-4
check "train_emu_cuda_activation_checkpointing_losses (worst $d)" $? "exit $rc, worst relative loss difference $d above 1e-4: $(tail -1 "$tmp/cgpu.err")"

# A quantized base (model.quantize q8_0 and q4_0, ggml's block types): the blocks are copied to the
# device as they are and decoded there per panel (autograd/cuda/dequant.cu), to the CPU's values, so the
# losses match the CPU run on the same quantized weights as closely as f32 bases do.
for q in q8_0 q4_0; do
    train "q-cpu-$q" model.quantize=$q hardware.device=cpu hardware.dtype=f32 train.max_steps=4
    train "q-gpu-$q" model.quantize=$q hardware.device=cuda hardware.dtype=f32 train.max_steps=4
    d=$(loss_diff "$tmp/q-cpu-$q/metrics.jsonl" "$tmp/q-gpu-$q/metrics.jsonl")
    within "$d" 1e-4
    check "train_emu_cuda_quantized_base_${q}_losses (worst $d)" $? "exit $rc, worst relative loss difference $d above 1e-4: $(tail -1 "$tmp/q-gpu-$q.err")"
done
# QLoRA: NF4, with and without double quantization. The nibbles and the absmax arrays go to the device
# (the state's scalars and code tables stay on the host, passed to the decoder by value) and decode to
# the CPU's values.
for dq in false true; do
    train "nf4-cpu-$dq" model.quantize=nf4 model.double_quant=$dq hardware.device=cpu hardware.dtype=f32 train.max_steps=4
    train "nf4-gpu-$dq" model.quantize=nf4 model.double_quant=$dq hardware.device=cuda hardware.dtype=f32 train.max_steps=4
    d=$(loss_diff "$tmp/nf4-cpu-$dq/metrics.jsonl" "$tmp/nf4-gpu-$dq/metrics.jsonl")
    within "$d" 1e-4
    check "train_emu_cuda_nf4_double_quant_${dq}_losses (worst $d)" $? "exit $rc, worst relative loss difference $d above 1e-4: $(tail -1 "$tmp/nf4-gpu-$dq.err")"
done

# eval --device cuda: the same mean loss as on the CPU (f32 matmuls on the device).
ev() { "$bin" eval --model tests/golden/llama_gqa --adapter tests/golden/llama_gqa/adapter \
    --data tests/data/train/tokens_val.jsonl --format tokens --json --device "$1" 2>"$tmp/eval.err" |
    sed 's/.*"loss": \([^,]*\),.*/\1/'; }
lc=$(ev cpu)
lg=$(ev cuda)
ok=1
awk -v a="$lc" -v b="$lg" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "" && b != "" && d <= 1e-5 * a) }' && ok=0
check "eval_emu_device_cuda (cpu $lc, cuda $lg)" $ok "$(tail -1 "$tmp/eval.err")"

# generate --device cuda (weights, adapter and KV cache on the device): the CPU's tokens, on the demo model
# with adapters trained for a few steps. Sampled (temperature 0.7, a fixed seed) rather than greedy:
# this barely trained model picks an end-of-sequence id within a few greedy steps, while the sampled run
# goes on for 22 tokens through the cache; the same logits and seed draw the same tokens.
demo=build/demo/make_demo_model
[ -x "$demo" ] || make -s "$demo" >/dev/null 2>&1
if "$demo" demo/tokenizer "$tmp/demo" >/dev/null 2>&1; then
    # LoRA (the demo recipe's method), then the two methods that put virtual tokens in front of the cache.
    for m in lora "prefix_tuning, num_virtual_tokens: 4" "prompt_tuning, num_virtual_tokens: 4"; do
        n=${m%%,*}
        set --
        [ "$n" = lora ] || set -- "method={name: $m}"
        if "$bin" train demo/demo.yaml model.path="$tmp/demo" output_dir="$tmp/demo-$n" "$@" train.max_steps=6 \
            hardware.device=cpu hardware.dtype=f32 >/dev/null 2>"$tmp/demo-$n.err"; then
            gen() { "$bin" generate --model "$tmp/demo" --adapter "$tmp/demo-$n" --prompt "The sky is" -n 32 --temp 0.7 \
                --seed 5 --device "$1" --dtype f32 2>"$tmp/gen-$1.err"; }
            gc=$(gen cpu)
            gg=$(gen cuda)
            ok=1
            [ "${#gc}" -gt 20 ] && [ "$gc" = "$gg" ] && ok=0
            check "generate_emu_device_cuda_tokens $n (${#gc} bytes)" $ok "cpu '$gc', cuda '$gg' (want the same, over 20 bytes): $(tail -1 "$tmp/gen-cuda.err")"
        else
            fail "generate_emu_device_cuda_tokens $n" "the adapter could not be trained: $(tail -1 "$tmp/demo-$n.err")"
        fi
    done
    # A GGUF base in a ggml block type (the demo model converted by merge): its blocks go to the device as
    # stored and are decoded there; eval's mean loss equals the CPU's on the same file (f32 matmuls).
    for q in q8_0 q5_1; do
        "$bin" merge --model "$tmp/demo" --out "$tmp/demo-$q.gguf" --format gguf --dtype $q >/dev/null 2>&1
        evq() { "$bin" eval --model "$tmp/demo-$q.gguf" --data demo/data/val.jsonl --json --device "$1" --dtype f32 \
            2>"$tmp/evq.err" | sed 's/.*"loss": \([^,]*\),.*/\1/'; }
        lc=$(evq cpu)
        lg=$(evq cuda)
        ok=1
        awk -v a="$lc" -v b="$lg" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "" && b != "" && d <= 1e-5 * a) }' && ok=0
        check "eval_emu_device_cuda_gguf_$q (cpu $lc, cuda $lg)" $ok "$(tail -1 "$tmp/evq.err")"
    done
else
    fail generate_emu_device_cuda_tokens "the demo model could not be made"
fi

# Interrupted after step 4 on one device, resumed on the other for two more (the learning-rate schedule
# is the 12-step run's, so the losses compare with the reference's steps 1-6).
for pair in "cuda cpu" "cpu cuda"; do
    set -- $pair
    DT_TEST_INTERRUPT_AFTER=4 "$bin" train "$recipe" output_dir="$tmp/r-$1-$2" hardware.device="$1" hardware.dtype=f32 \
        >/dev/null 2>"$tmp/r.err"
    first=$?
    DT_TEST_INTERRUPT_AFTER=6 "$bin" train "$recipe" output_dir="$tmp/r-$1-$2" hardware.device="$2" hardware.dtype=f32 resume=true \
        >/dev/null 2>"$tmp/r2.err"
    second=$?
    d=$(loss_diff "$tmp/cpu/metrics.jsonl" "$tmp/r-$1-$2/metrics.jsonl")
    ok=1
    [ "$first" = 130 ] && [ "$second" = 130 ] && grep -q "resuming from" "$tmp/r2.err" &&
        [ "$(grep -c '"step"' "$tmp/r-$1-$2/metrics.jsonl")" = 6 ] && within "$d" 1e-4 && ok=0
    check "train_emu_saved_on_$1_resumes_on_$2 (worst $d)" $ok \
        "exits $first/$second (want 130/130), worst loss difference $d: $(tail -1 "$tmp/r2.err")"
done

# On a real GPU (make test-cuda runs this script on build-cuda/deltatune) the emulator's memory knobs do
# nothing: the two checks below are emulator-only, and the stories260K recipe's first 20 losses are
# compared instead (too slow for the emulator).
if ! grep -q "CPU emulation" "$tmp/f32.err"; then
    if [ -d ../shared/fixtures/stories260K ]; then
        r20="recipes/stories260k-lora.yaml"
        "$bin" train "$r20" output_dir="$tmp/s-cpu" train.max_steps=20 hardware.device=cpu hardware.dtype=f32 >/dev/null 2>&1
        "$bin" train "$r20" output_dir="$tmp/s-gpu" train.max_steps=20 hardware.device=cuda hardware.dtype=f32 \
            >/dev/null 2>"$tmp/s.err"
        d=$(loss_diff "$tmp/s-cpu/metrics.jsonl" "$tmp/s-gpu/metrics.jsonl")
        within "$d" 1e-3
        check "train_gpu_stories260k_20_losses (worst $d)" $? "worst relative difference $d above 1e-3: $(tail -1 "$tmp/s.err")"
    else
        echo "SKIP train_gpu_stories260k_20_losses: ../shared/fixtures is absent"
    fi
    exit $failed
fi

# Without cuDNN (the emulator's cudnnCreate fails): the hand kernel runs every call, same losses.
EMU_NO_CUDNN=1 "$bin" train "$recipe" output_dir="$tmp/nodnn" hardware.device=cuda hardware.dtype=bf16 data.packing=false \
    train.max_steps=4 >/dev/null 2>"$tmp/nodnn.err"
rc=$?
d=$(loss_diff "$tmp/cpu1/metrics.jsonl" "$tmp/nodnn/metrics.jsonl")
ok=1
[ "$rc" = 0 ] && within "$d" 3e-2 && grep -q "^attention: .* 0 calls, hand-written flash kernel [1-9].*off: cudnnCreate" "$tmp/nodnn.err" && ok=0
check "train_emu_cuda_without_cudnn (worst $d)" $ok "exit $rc, worst $d: $(grep '^attention' "$tmp/nodnn.err") $(tail -1 "$tmp/nodnn.err")"

# A device of 1 MiB: refused before the weights are read.
EMU_DEVICE_MEM=1048576 "$bin" train "$recipe" output_dir="$tmp/small" hardware.device=cuda >/dev/null 2>"$tmp/small.err"
rc=$?
ok=1
[ "$rc" = 2 ] && grep -q "needs about" "$tmp/small.err" && grep -q "free of" "$tmp/small.err" && ok=0
check train_emu_refused_when_too_large $ok "exit $rc (want 2): $(tail -1 "$tmp/small.err")"

# Memory taken away in a resumed run: every cudaMalloc from the k-th on fails. The 5th is the optimizer
# state's (after cuBLASLt's workspace, the weights and the adapter); from the 6th on the failure is
# inside the first step.
cp -r "$tmp/r-cuda-cpu/checkpoints" "$tmp/ck-before"
for k in 5 6; do
    EMU_MALLOC_FAIL_FROM=$k "$bin" train "$recipe" output_dir="$tmp/r-cuda-cpu" hardware.device=cuda hardware.dtype=f32 \
        resume="$tmp/r-cuda-cpu/checkpoints/step-4" >/dev/null 2>"$tmp/oom.err"
    rc=$?
    ok=1
    [ "$rc" = 2 ] && grep -q "out of device memory" "$tmp/oom.err" && grep -q "asked for" "$tmp/oom.err" &&
        diff -r "$tmp/ck-before" "$tmp/r-cuda-cpu/checkpoints" >/dev/null && ok=0
    check train_emu_out_of_device_memory_from_malloc_$k $ok "exit $rc (want 2), or a checkpoint changed: $(tail -1 "$tmp/oom.err")"
done
exit $failed
