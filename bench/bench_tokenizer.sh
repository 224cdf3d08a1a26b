#!/bin/sh
# Side-by-side tokenizer speed: deltatune tokenize vs the JavaScript reference (tokenize_ref.js) on the
# same ~10 MB of text, one thread each, whole commands timed (start-up, loading and output included).
# The text is corpus lines joined in random groups of 1-4, so most lines are new to both word caches.
# Both outputs are also compared id for id.
# Usage: bench/bench_tokenizer.sh [TOKENIZER_NAME...]   (default: qwen3 llama3 mistral)
# Needs: make, node, and once: npm install --prefix /tmp/tokref @lenml/tokenizers
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
shared=${DT_SHARED:-$root/../shared}
fixtures=${DT_FIXTURES:-$shared/fixtures}
ref=$shared/tools/tokenize_ref.js
export NODE_PATH=${NODE_PATH:-/tmp/tokref/node_modules}
export OMP_NUM_THREADS=1
if ! command -v node >/dev/null || [ ! -d "$NODE_PATH/@lenml/tokenizers" ] || [ ! -f "$ref" ]; then
    echo "bench_tokenizer: needs node, $ref and $NODE_PATH/@lenml/tokenizers; skipped"
    exit 0
fi
[ -x ./deltatune ] || make -s deltatune
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
node -e '
const fs = require("fs");
const lines = fs.readFileSync(process.argv[1], "utf8").split("\n").filter(l => l).map(l => JSON.parse(l));
let seed = 42, bytes = 0; const out = [];
const rand = n => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n; };
while (bytes < 10e6) {
  const k = 1 + rand(4); const parts = [];
  for (let i = 0; i < k; i++) parts.push(lines[rand(lines.length)]);
  const s = parts.join(" "); if (!s) continue;
  out.push(JSON.stringify(s)); bytes += Buffer.byteLength(s);
}
fs.writeFileSync(process.argv[2], out.join("\n") + "\n");
console.log(`text: ${(bytes / 1e6).toFixed(2)} MB of UTF-8 in ${out.length} lines`);
' tests/data/tokenizer/corpus.jsonl "$work/text.jsonl"
mb=$(node -e 'const fs=require("fs");let b=0;for(const l of fs.readFileSync(process.argv[1],"utf8").split("\n"))if(l)b+=Buffer.byteLength(JSON.parse(l));console.log(b/1e6)' "$work/text.jsonl")
now() { date +%s.%N; }
printf '' > "$work/empty.jsonl"
for name in ${*:-qwen3 llama3 mistral}; do
    dir=$fixtures/tokenizers/$name
    t0=$(now); ./deltatune tokenize --tokenizer "$dir" --json-lines "$work/empty.jsonl" >/dev/null; t1=$(now)
    ./deltatune tokenize --tokenizer "$dir" --json-lines "$work/text.jsonl" >"$work/c.out"; t2=$(now)
    node "$ref" "$dir" "$work/text.jsonl" >"$work/js.out"; t3=$(now)
    same=$(cmp -s "$work/c.out" "$work/js.out" && echo "identical ids" || echo "IDS DIFFER")
    awk -v n="$name" -v mb="$mb" -v l="$(awk "BEGIN{print $t1 - $t0}")" -v c="$(awk "BEGIN{print $t2 - $t1}")" -v j="$(awk "BEGIN{print $t3 - $t2}")" -v s="$same" 'BEGIN {
        printf "%-8s load+exit %.3f s | deltatune %.2f s (%.1f MB/s) | tokenize_ref.js %.2f s (%.2f MB/s) | ratio %.1fx | %s\n",
               n, l, c, mb / c, j, mb / j, j / c, s }'
done
