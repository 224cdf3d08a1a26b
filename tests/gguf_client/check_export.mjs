#!/usr/bin/env node
// Checks `deltatune export` and `deltatune merge --format gguf` in node-llama-cpp's llama.cpp, against our own
// forward (DIR/ref.json from make_tiny_hf): the tiny model converted to GGUF + the exported LoRA adapter, and
// the model merged with the adapter, give the logits and greedy ids of our base + adapter (unmerged); the
// same with two adapters at once (LoRA at 1 + rsLoRA at 0.5), as two GGUF adapters and as one merged model.
// Prints PASS/FAIL lines and exits 1 on any failure.
//   node check_export.mjs DIR [DELTATUNE]        (DELTATUNE: the binary, default ./deltatune)
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { open, evaluate } from "./eval.mjs";

const dir = process.argv[2], bin = process.argv[3] || "./deltatune";
if (!dir) { console.error("usage: check_export.mjs DIR [DELTATUNE]"); process.exit(2); }
const run = (...args) => console.log(execFileSync(bin, args, { encoding: "utf8" }).trim());
run("merge", "--model", `${dir}/model`, "--format", "gguf", "--out", `${dir}/base.gguf`);
run("export", "--adapter", `${dir}/lora`, "--model", `${dir}/model`, "--format", "gguf", "--out", `${dir}/lora.gguf`);
run("export", "--adapter", `${dir}/rslora`, "--model", `${dir}/model`, "--format", "gguf", "--out", `${dir}/rslora.gguf`);
run("merge", "--model", `${dir}/model`, "--adapter", `${dir}/lora`, "--format", "gguf", "--out", `${dir}/merged.gguf`);
run("merge", "--model", `${dir}/model`, "--adapter", `${dir}/lora`, "--adapter", `${dir}/rslora:0.5`, "--format", "gguf",
    "--out", `${dir}/merged2.gguf`);

const ref = JSON.parse(readFileSync(`${dir}/ref.json`, "utf8"));
let failures = 0;
const check = (name, ok, why) => {
    console.log(ok ? `PASS ${name}` : `FAIL ${name}: ${why}`);
    if (!ok) failures++;
};
const maxDiff = (a, b) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
const maxAbs = a => a.reduce((m, v) => Math.max(m, Math.abs(v)), 0);

async function compare(name, opts, want) {
    const o = await open({ ...opts, kvF32: true });
    const logits = (await evaluate(o, ref.tokens, { logits: true })).logits;
    const greedy = (await evaluate(o, ref.tokens, { generate: want.greedy.length })).generated;
    await o.release();
    const d = maxDiff(logits, want.logits), s = maxAbs(want.logits);
    check(`${name}_logits`, logits.length === want.logits.length && d <= 1e-4 * Math.max(1, s),
          `max |llama.cpp - ours| = ${d} (logits up to ${s}, ${logits.length} vs ${want.logits.length})`);
    check(`${name}_greedy`, JSON.stringify(greedy) === JSON.stringify(want.greedy),
          `llama.cpp ${JSON.stringify(greedy)}, ours ${JSON.stringify(want.greedy)}`);
    console.log(`  ${name}: max |diff| ${d.toExponential(3)}, largest logit ${s.toFixed(3)}, greedy ${JSON.stringify(greedy)}`);
    return logits;
}

const baseLogits = await compare("base", { model: `${dir}/base.gguf` }, ref.base);
const d0 = maxDiff(baseLogits, ref.lora.logits);
check("adapter_matters", d0 > 1e-2, `base and base+lora differ by only ${d0}`);
console.log(`  max |base - (base + lora)| = ${d0.toExponential(3)}: the scale of what an adapter error would show`);
await compare("base_plus_lora", { model: `${dir}/base.gguf`, lora: `${dir}/lora.gguf` }, ref.lora);
await compare("merged", { model: `${dir}/merged.gguf` }, ref.lora);
await compare("base_plus_two", { model: `${dir}/base.gguf`, loras: [{ filePath: `${dir}/lora.gguf`, scale: 1 },
                                                                      { filePath: `${dir}/rslora.gguf`, scale: 0.5 }] }, ref.both);
await compare("merged_two", { model: `${dir}/merged2.gguf` }, ref.both);
console.log(failures ? "FAILED" : "all passed");
process.exit(failures ? 1 : 0);
