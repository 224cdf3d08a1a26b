#!/usr/bin/env node
// Compares the tokenizer deltatune builds from a GGUF's own tokenizer.ggml.* metadata
// (`deltatune tokenize --tokenizer MODEL.gguf`, datasets/tokenizer_gguf.c) with llama.cpp's tokenization
// of the same file (node-llama-cpp), on every line of a file of JSON strings (default: the tokenizer
// corpus of tests/data/tokenizer). Special tokens spelled in the text are parsed as such on both sides;
// no BOS/EOS is added. Prints one FAIL line per differing text (the first 10) and a summary; exits 1 on
// any difference.
//   node check_gguf_tokenizer.mjs MODEL.gguf [LINES.jsonl]
// Run from the project root after `make` (it runs ./deltatune).
import fs from "node:fs";
import { execFileSync } from "node:child_process";
import { open } from "./eval.mjs";

const [modelPath, linesPath = "tests/data/tokenizer/corpus.jsonl"] = process.argv.slice(2);
if (!modelPath) { console.error("usage: check_gguf_tokenizer.mjs MODEL.gguf [LINES.jsonl]"); process.exit(2); }
const texts = fs.readFileSync(linesPath, "utf8").split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));
const ours = execFileSync("./deltatune", ["tokenize", "--tokenizer", modelPath, "--json-lines", linesPath],
                         { encoding: "utf8", maxBuffer: 1 << 28 }).split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));
if (ours.length !== texts.length) { console.error(`deltatune gave ${ours.length} lines for ${texts.length} texts`); process.exit(1); }

const o = await open({ model: modelPath });
let failures = 0;
for (let i = 0; i < texts.length; i++) {
    const got = [...o.model.tokenize(texts[i], true)];
    if (JSON.stringify(got) === JSON.stringify(ours[i])) continue;
    if (failures++ < 10)
        console.log(`FAIL line ${i + 1} ${JSON.stringify(texts[i]).slice(0, 120)}: llama.cpp ${JSON.stringify(got)}, deltatune ${JSON.stringify(ours[i])}`);
}
await o.release();
console.log(`${texts.length - failures} of ${texts.length} lines give llama.cpp's ids`);
process.exit(failures ? 1 : 0);
