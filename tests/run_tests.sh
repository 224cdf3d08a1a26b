#!/bin/sh
# Runs every test binary in $1 (from the project root) and counts PASS/FAIL/SKIP lines.
# A binary that crashes or exits non-zero without printing FAIL counts as one failure.
dir=$1
pass=0; fail=0; skip=0
for t in "$dir"/test_*; do
    [ -x "$t" ] || continue
    out=$("$t" 2>&1); rc=$?
    printf '%s\n' "$out" | grep -E '^(FAIL|SKIP)' | sed "s|^|$(basename "$t"): |"
    p=$(printf '%s\n' "$out" | grep -c '^PASS')
    f=$(printf '%s\n' "$out" | grep -c '^FAIL')
    s=$(printf '%s\n' "$out" | grep -c '^SKIP')
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "$(basename "$t"): exited with status $rc"; printf '%s\n' "$out" | tail -5; f=1
    fi
    echo "$(basename "$t"): $p passed, $f failed, $s skipped"
    pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + s))
done
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
