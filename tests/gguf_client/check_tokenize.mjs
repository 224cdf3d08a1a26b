#!/usr/bin/env node
// Compares llama.cpp's tokenization of a GGUF model (node-llama-cpp) with the Hugging Face tokenizer
// folder it was made from (@lenml/tokenizers, the JavaScript port that shared/tools/tokenize_ref.js uses).
// Prints "PASS/FAIL tokenize ..." per text and exits 1 on any difference.
//   node check_tokenize.mjs MODEL.gguf TOKENIZER_DIR
// The reference package is loaded from $TOKREF (default /tmp/tokref/node_modules/@lenml/tokenizers).
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { open } from "./eval.mjs";

const [modelPath, tokDir] = process.argv.slice(2);
if (!modelPath || !tokDir) { console.error("usage: check_tokenize.mjs MODEL.gguf TOKENIZER_DIR"); process.exit(2); }
const require = createRequire(import.meta.url);
const { TokenizerLoader } = require(process.env.TOKREF || "/tmp/tokref/node_modules/@lenml/tokenizers");
const ref = TokenizerLoader.fromPreTrained({
    tokenizerJSON: JSON.parse(fs.readFileSync(path.join(tokDir, "tokenizer.json"), "utf8")),
    tokenizerConfig: JSON.parse(fs.readFileSync(path.join(tokDir, "tokenizer_config.json"), "utf8")),
});

const TEXTS = [
    "Hello world, how are you doing today?",
    "  double  spaces and\ttabs\nnew line\n\n\nthree newlines",
    "naïve café 12345 1234567 3.14159 ½ 😀 Привет мир 我想在apple工作",
    "The quick brown fox jumps over the lazy dog.",
    "I've been 'told he's there, 'RE you sure? We'Ve a'lL",
    "def f(x):\n    return x**2  # squares\n",
    "<|im_start|>user\nHi<|im_end|>",
];

const o = await open({ model: modelPath });
let failures = 0;
for (const text of TEXTS) {
    const want = ref.encode(text, { add_special_tokens: false });
    // Special tokens are parsed as such, as the Hugging Face tokenizer does with added tokens.
    const got = [...o.model.tokenize(text, true)];
    const ok = JSON.stringify(got) === JSON.stringify(want);
    if (!ok) failures++;
    console.log(ok ? `PASS tokenize ${JSON.stringify(text)}` : `FAIL tokenize ${JSON.stringify(text)}: llama.cpp ${JSON.stringify(got)}, reference ${JSON.stringify(want)}`);
}
await o.release();
console.log(failures ? `${failures} FAILED` : "all passed");
process.exit(failures ? 1 : 0);
