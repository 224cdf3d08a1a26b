#!/usr/bin/env node
// Checks the files of make_tiny_llama (DIR/base.gguf, lora.gguf, merged.gguf, written with the Mistral
// tokenizer) in node-llama-cpp's llama.cpp:
//  - the model loads and generates; its tokenizer gives the ids of the Hugging Face tokenizer;
//  - the LoRA adapter loads and changes the logits; at scale 0 it changes nothing;
//  - base + adapter gives the logits of merged (the base with W + alpha/r * B A folded in), which checks
//    the adapter's conventions: lora_a (r, in), lora_b (out, r), scale alpha / r.
// Prints one line per check ("PASS name" / "FAIL name: why") and exits 1 on any failure.
//   node check_tiny.mjs DIR
import { open, evaluate } from "./eval.mjs";

const dir = process.argv[2];
if (!dir) { console.error("usage: check_tiny.mjs DIR"); process.exit(2); }
let failures = 0;
const check = (name, ok, why) => {
    console.log(ok ? `PASS ${name}` : `FAIL ${name}: ${why}`);
    if (!ok) failures++;
};
const maxDiff = (a, b) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);

// Expected ids from the Hugging Face tokenizer (shared/tools/tokenize_ref.js on the Mistral fixture).
const TOKENIZE = [
    ["Hello world, how are you doing today?", [22557, 1526, 28725, 910, 460, 368, 2548, 3154, 28804]],
    ["  double  spaces and\ttabs\nnew line", [259, 3579, 28705, 10599, 304, 12, 24856, 13, 1095, 1407]],
    ["naïve café 12345 ½ 😀 Привет", [1879, 28920, 333, 28345, 28705, 28740, 28750, 28770, 28781, 28782, 28705, 29039, 28705, 30575, 11824, 8496]],
    ["The quick brown fox jumps over the lazy dog.", [415, 2936, 9060, 285, 1142, 461, 10575, 754, 272, 17898, 3914, 28723]],
];
const PROMPT = [1, 22557, 1526, 28725, 910, 460, 368];

const base = await open({ model: `${dir}/base.gguf` });
check("base_loads", base.model.tokens.bos === 1 && base.model.tokens.eos === 2,
      `bos ${base.model.tokens.bos}, eos ${base.model.tokens.eos}`);
for (const [text, want] of TOKENIZE) {
    const got = [...base.model.tokenize(text, false)];
    check(`tokenize ${JSON.stringify(text)}`, JSON.stringify(got) === JSON.stringify(want), `got ${JSON.stringify(got)}`);
}
const baseGen = (await evaluate(base, PROMPT, { generate: 8 })).generated;
check("base_generates", baseGen.length === 8, `generated ${JSON.stringify(baseGen)}`);
const baseLogits = (await evaluate(base, PROMPT, { logits: true })).logits;
check("base_logits", baseLogits.length === 32000 && baseLogits.every(Number.isFinite), `${baseLogits.length} logits`);
await base.release();

const withLora = await open({ model: `${dir}/base.gguf`, lora: `${dir}/lora.gguf` });
const loraLogits = (await evaluate(withLora, PROMPT, { logits: true })).logits;
const loraGen = (await evaluate(withLora, PROMPT, { generate: 8 })).generated;
await withLora.release();
const dLora = maxDiff(baseLogits, loraLogits);
check("lora_changes_logits", dLora > 1e-2, `max |base - base+lora| = ${dLora}`);

const zero = await open({ model: `${dir}/base.gguf`, lora: `${dir}/lora.gguf`, loraScale: 0 });
const zeroLogits = (await evaluate(zero, PROMPT, { logits: true })).logits;
await zero.release();
check("lora_scale_0_is_base", maxDiff(baseLogits, zeroLogits) < 1e-5, `max diff ${maxDiff(baseLogits, zeroLogits)}`);

const merged = await open({ model: `${dir}/merged.gguf` });
const mergedLogits = (await evaluate(merged, PROMPT, { logits: true })).logits;
const mergedGen = (await evaluate(merged, PROMPT, { generate: 8 })).generated;
await merged.release();
const dMerged = maxDiff(loraLogits, mergedLogits);
const scale = Math.max(...loraLogits.map(Math.abs));
check("lora_equals_merged", dMerged < 1e-3 * Math.max(1, scale),
      `max |base+lora - merged| = ${dMerged} (logits up to ${scale}); base vs base+lora ${dLora}`);
check("lora_equals_merged_greedy", JSON.stringify(loraGen) === JSON.stringify(mergedGen),
      `${JSON.stringify(loraGen)} vs ${JSON.stringify(mergedGen)}`);
console.log(`max |base - base+lora| = ${dLora.toExponential(3)}, max |base+lora - merged| = ${dMerged.toExponential(3)}`);
console.log(`${failures ? "FAILED" : "all passed"}`);
process.exit(failures ? 1 : 0);
