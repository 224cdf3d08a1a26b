#!/usr/bin/env node
// Loads a GGUF model (and optionally a LoRA adapter GGUF) in node-llama-cpp's prebuilt CPU llama.cpp,
// evaluates token ids and prints JSON: the greedily generated ids, or the logits after the last token.
// Not run by `make test` (it needs the npm package); see README.md in this folder.
//   node eval.mjs --model M.gguf [--lora L.gguf] [--lora-scale 1] --tokens 1,22557,1526 [--generate 8] [--logits]
//   node eval.mjs --model M.gguf --tokenize "Hello world"
// The package is loaded from $NODE_LLAMA_CPP (default /tmp/nlc/node_modules/node-llama-cpp), because an
// ES module cannot find a package outside the node_modules folders above this file.
import path from "node:path";
import { pathToFileURL } from "node:url";

async function loadNlc() {
    const dir = process.env.NODE_LLAMA_CPP || "/tmp/nlc/node_modules/node-llama-cpp";
    return import(pathToFileURL(path.join(dir, "dist/index.js")).href);
}

// Opens a model (and adapter) once; returns {llama, model, context, release}.
// loras: [{filePath, scale}, ...] applies several adapters at once (lora/loraScale: one).
// kvF32: an f32 KV cache and no flash attention; llama.cpp's defaults (f16 cache, flash attention in f16)
// move f32 logits by ~2e-3, with them off an f32 model matches ours to ~1e-6.
export async function open({ model, lora = null, loraScale = 1, loras = null, contextSize = 256, kvF32 = false }) {
    const { getLlama, LlamaLogLevel } = await loadNlc();
    // build: "never" keeps it on the prebuilt binary shipped in the npm package (no download, no compiler).
    const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
    const m = await llama.loadModel({ modelPath: model, gpuLayers: 0 });
    const ctxOpts = { contextSize, batchSize: contextSize, sequences: 1 };
    if (lora) ctxOpts.lora = { adapters: [{ filePath: lora, scale: loraScale }] };
    if (loras) ctxOpts.lora = { adapters: loras };
    if (kvF32) Object.assign(ctxOpts, { experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32", flashAttention: false });
    const context = await m.createContext(ctxOpts);
    const sequence = context.getSequence();
    return { llama, model: m, context, sequence, release: async () => { await context.dispose(); await m.dispose(); } };
}

// Evaluates `tokens` from an empty context. Returns {generated} (greedy, n ids) or {logits} (an array over the
// vocabulary, after the last input token).
export async function evaluate(opened, tokens, { generate = 0, logits = false } = {}) {
    const seq = opened.sequence;
    await seq.clearHistory();
    if (logits) {
        const input = tokens.map((t, i) => i === tokens.length - 1 ? [t, { generateNext: { logits: true } }] : t);
        const out = await seq.controlledEvaluate(input);
        const arr = [];
        for (const [tok, v] of out[tokens.length - 1].next.logits) arr[tok] = v;
        return { logits: arr };
    }
    const generated = [];
    for await (const t of seq.evaluate(tokens, { temperature: 0 })) {
        generated.push(t);
        if (generated.length >= generate) break;
    }
    return { generated };
}

function parseArgs(argv) {
    const a = { loraScale: 1, generate: 0, logits: false };
    for (let i = 0; i < argv.length; i++) {
        const k = argv[i], v = () => argv[++i];
        if (k === "--model") a.model = v();
        else if (k === "--lora") a.lora = v();
        else if (k === "--lora-scale") a.loraScale = Number(v());
        else if (k === "--tokens") a.tokens = v().split(",").filter(Boolean).map(Number);
        else if (k === "--generate") a.generate = Number(v());
        else if (k === "--logits") a.logits = true;
        else if (k === "--tokenize") a.tokenize = v();
        else throw new Error(`unknown argument ${k}`);
    }
    if (!a.model || (!a.tokens && a.tokenize === undefined)) throw new Error("usage: eval.mjs --model M.gguf [--lora L.gguf] (--tokens 1,2,3 [--generate N | --logits] | --tokenize TEXT)");
    if (a.tokens && !a.logits && !a.generate) a.generate = 8;
    return a;
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
    const a = parseArgs(process.argv.slice(2));
    const o = await open({ model: a.model, lora: a.lora, loraScale: a.loraScale });
    if (a.tokenize !== undefined) {
        console.log(JSON.stringify({ tokens: [...o.model.tokenize(a.tokenize, false)] }));
    } else {
        console.log(JSON.stringify(await evaluate(o, a.tokens, { generate: a.generate, logits: a.logits })));
    }
    await o.release();
}
