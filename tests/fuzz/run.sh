#!/bin/sh
# Runs each libFuzzer harness given for $FUZZ_SECONDS seconds (one process at a time), on its committed
# seed corpus (tests/fuzz/corpus/NAME, read only) plus the inputs earlier runs kept
# (build-fuzz/corpus/NAME), with its dictionary. Prints one line per harness with the executions
# reached; a finding (crash, sanitizer report, leak, timeout, out-of-memory) keeps its input in
# build-fuzz/artifacts/, prints the report's tail and makes the script exit 1 after the others ran.
# FUZZ_RUNS=N also stops each harness after N executions (for long runs: FUZZ_RUNS=10000000 with a
# large FUZZ_SECONDS).
secs=${FUZZ_SECONDS:-60}
# ASan keeps freed memory out of reuse (its quarantine, 256 MB by default) so that a use after free reads
# poisoned memory. One execution here frees far less than 64 MB, so a 64 MB quarantine still catches a
# use after free within it, and recycling 256 MB made the harnesses 1.5-2.4x slower (page faults).
# A user's own ASAN_OPTIONS win.
export ASAN_OPTIONS="${ASAN_OPTIONS:-quarantine_size_mb=64}"
runs=""
[ -n "$FUZZ_RUNS" ] && runs="-runs=$FUZZ_RUNS"
status=0
for bin in "$@"; do
    name=$(basename "$bin")
    mkdir -p "build-fuzz/corpus/$name" build-fuzz/artifacts build-fuzz/logs
    dict=""
    [ -f "tests/fuzz/$name.dict" ] && dict="-dict=tests/fuzz/$name.dict"
    log="build-fuzz/logs/$name.log"
    "$bin" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=20 -max_len=65536 -print_final_stats=1 $runs \
        -artifact_prefix="build-fuzz/artifacts/$name-" $dict "build-fuzz/corpus/$name" "tests/fuzz/corpus/$name" >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    if [ "$rc" -ne 0 ]; then
        echo "$name: FINDING after ${execs:-?} executions (exit $rc); log $log"
        grep -E "ERROR|SUMMARY|runtime error|Test unit written" "$log" | head -8
        status=1
    else
        echo "$name: ${execs:-?} executions in $(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1) s (limit ${secs} s), no findings"
    fi
done
exit $status
