#!/bin/sh
# Regenerates expected_<tokenizer>[_special].jsonl from corpus.jsonl with the JavaScript reference
# tokenizer (../shared/tools/tokenize_ref.js, an independent port of the Hugging Face tokenizers).
# Lines where that port and the Hugging Face (Rust) library disagree are kept out of corpus.jsonl; they
# live in hf_cases.jsonl with hand-checked ids and are not regenerated here.
# Needs node and npm once: npm install --prefix /tmp/tokref @lenml/tokenizers
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
shared=${DT_SHARED:-$root/../shared}
ref=$shared/tools/tokenize_ref.js
fixtures=${DT_FIXTURES:-$shared/fixtures}
export NODE_PATH=${NODE_PATH:-/tmp/tokref/node_modules}
if [ ! -d "$NODE_PATH/@lenml/tokenizers" ]; then
    npm install --prefix "$(dirname "$NODE_PATH")" @lenml/tokenizers >/dev/null
fi
for t in qwen3 llama3 mistral; do
    node "$ref" "$fixtures/tokenizers/$t" "$here/corpus.jsonl" > "$here/expected_$t.jsonl"
    node "$ref" "$fixtures/tokenizers/$t" "$here/corpus.jsonl" --special > "$here/expected_${t}_special.jsonl"
done
wc -l "$here"/expected_*.jsonl
