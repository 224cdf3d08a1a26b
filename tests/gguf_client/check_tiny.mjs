#!/usr/bin/env node
// Checks the files of make_tiny_llama (DIR/base.gguf, lora.gguf, merged.gguf) in node-llama-cpp's llama.cpp:
//  - the model loads and generates (its tokenizer is checked by check_tokenize.mjs);
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

const PROMPT = [1, 22557, 1526, 28725, 910, 460, 368];

const base = await open({ model: `${dir}/base.gguf` });
const n_vocab = base.model.fileInfo.tensorInfo.find(t => t.name === "token_embd.weight").dimensions[1];
check("base_loads", Number(n_vocab) > 0, `token_embd.weight has ${n_vocab} rows`);
console.log(`vocabulary ${n_vocab}, bos ${base.model.tokens.bos}, eos ${base.model.tokens.eos}, ` +
            `adds bos: ${base.model.tokens.shouldPrependBosToken}`);
const baseGen = (await evaluate(base, PROMPT, { generate: 8 })).generated;
check("base_generates", baseGen.length === 8, `generated ${JSON.stringify(baseGen)}`);
const baseLogits = (await evaluate(base, PROMPT, { logits: true })).logits;
check("base_logits", baseLogits.length === Number(n_vocab) && baseLogits.every(Number.isFinite), `${baseLogits.length} logits`);
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
const scale = loraLogits.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
check("lora_equals_merged", dMerged < 1e-3 * Math.max(1, scale),
      `max |base+lora - merged| = ${dMerged} (logits up to ${scale}); base vs base+lora ${dLora}`);
check("lora_equals_merged_greedy", JSON.stringify(loraGen) === JSON.stringify(mergedGen),
      `${JSON.stringify(loraGen)} vs ${JSON.stringify(mergedGen)}`);
console.log(`max |base - base+lora| = ${dLora.toExponential(3)}, max |base+lora - merged| = ${dMerged.toExponential(3)}`);
console.log(`${failures ? "FAILED" : "all passed"}`);
process.exit(failures ? 1 : 0);
