#!/bin/sh
# Generates recipes/data/stories260k-{train,val}.jsonl: pre-tokenized examples for the stories260K
# model (vocab 512; its own tokenizer is not distributed here, so the data is token ids). Each example
# is BOS (1) followed by 63 tokens of an arithmetic progression modulo 509, shifted up by 3 into the ids
# 3..511, so neither BOS (1) nor EOS (2) appears after the first token (tests/test_cli.c checks this):
# the first tokens set the start and the stride, and the rest are predictable from them, so a
# fine-tuned adapter can lower the loss well below the base model's. Deterministic (awk's srand seed).
set -e
cd "$(dirname "$0")"
gen() { # $1 = seed, $2 = count, $3 = file
    awk -v seed="$1" -v n="$2" 'BEGIN {
        srand(seed);
        for (e = 0; e < n; e++) {
            s = int(rand() * 509); d = 1 + int(rand() * 7);
            line = "{\"input_ids\":[1";
            for (k = 0; k < 63; k++) line = line "," (3 + (s + k * d) % 509);
            print line "]}";
        }
    }' > "$3.tmp" && mv "$3.tmp" "$3"
}
gen 260 256 stories260k-train.jsonl
gen 261 32 stories260k-val.jsonl
