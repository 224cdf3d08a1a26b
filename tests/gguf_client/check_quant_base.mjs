#!/usr/bin/env node
// Checks a quantized GGUF base and the LoRA trained on it (made by make_quant_base.c) in real llama.cpp:
// the greedy ids of base.gguf + lora.gguf for ref.json's prompt must equal ours. Prints PASS/FAIL.
//   node check_quant_base.mjs DIR
import fs from "node:fs";
import path from "node:path";
import { open, evaluate } from "./eval.mjs";

const dir = process.argv[2];
const ref = JSON.parse(fs.readFileSync(path.join(dir, "ref.json"), "utf8"));
const o = await open({ model: path.join(dir, "base.gguf"), lora: path.join(dir, "lora.gguf") });
const { generated } = await evaluate(o, ref.prompt, { generate: ref.greedy.length });
await o.release();
const same = generated.length === ref.greedy.length && generated.every((t, i) => t === ref.greedy[i]);
console.log(`${same ? "PASS" : "FAIL"} ${dir}: llama.cpp greedy ${JSON.stringify(generated)}, ours ${JSON.stringify(ref.greedy)}`);
process.exit(same ? 0 : 1);
