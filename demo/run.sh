#!/bin/sh
# `make demo`: the README's quickstart, end to end, on the tiny model demo/make_demo_model.c writes.
# Every command here is one the README shows; tests/test_docs.c runs the README's blocks themselves.
set -e
cd "$(dirname "$0")/.."
rm -rf runs/demo
mkdir -p runs/demo
step() { printf '\n$ %s\n' "$*"; "$@"; }
step build/demo/make_demo_model demo/tokenizer runs/demo/model
step ./deltatune train demo/demo.yaml
step ./deltatune eval --model runs/demo/model --data demo/data/val.jsonl
step ./deltatune eval --model runs/demo/model --adapter runs/demo/adapter --data demo/data/val.jsonl
step ./deltatune generate --model runs/demo/model --adapter runs/demo/adapter --chat --prompt "What color is the sky?"
step ./deltatune export --adapter runs/demo/adapter --model runs/demo/model --out runs/demo/adapter.gguf
step ./deltatune merge --model runs/demo/model --adapter runs/demo/adapter --out runs/demo/merged
step ./deltatune generate --model runs/demo/merged --chat --prompt "What do cats say?"
