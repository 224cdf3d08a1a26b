#!/bin/sh
# Side by side: bench_threads (small LoRA steps) on 1 and 2 threads under each OpenMP wait policy and
# under deltatune's default (auto: the start-up load sample picks the policy, the governor lowers the
# thread count while other work takes the cores; tools/thread_env.h), ROUNDS times interleaved, with
#   idle: the cores otherwise idle;
#   busy: both cores busy with two shell busy loops from before the start;
#   late: the two busy loops start LATE_S seconds after the benchmark (work that arrives mid-run).
# On a machine shared with other work, run it as root with NICE=-20 so that "idle" means free of
# everything but this script's own busy loops (the loops run at the same priority as the benchmark).
# Prints one line per run: round, load, threads, policy, median step ms. Needs `make build/bench/bench_threads`.
B=${B:-build/bench/bench_threads}
ROUNDS=${ROUNDS:-3}
NICE=${NICE:-0}
STEPS=${DT_BENCH_STEPS:-10}
LATE_S=${LATE_S:-1}
loops=""
start_loops() { for i in 1 2; do nice -n "$NICE" sh -c 'while :; do :; done' & loops="$loops $!"; done; }
stop_loops() { for p in $loops; do kill "$p" 2>/dev/null; done; loops=""; }
trap stop_loops EXIT INT TERM
run() { # $1 load, $2 threads, $3 policy name, then env assignments
    load=$1 th=$2 pol=$3; shift 3
    steps=$STEPS
    [ "$load" = late ] && steps=$((STEPS * 3))
    env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT -u DT_WAIT_AUTO "$@" DT_BENCH_THREADS="$th" DT_BENCH_STEPS="$steps" \
        nice -n "$NICE" timeout 300 "$B" > /tmp/bench_threads.$$ &
    pid=$!
    if [ "$load" = late ]; then sleep "$LATE_S"; start_loops; fi
    wait $pid
    ms=$(awk '{print $2}' /tmp/bench_threads.$$)
    [ "$load" = late ] && stop_loops
    echo "round $r load $load threads $th policy $pol median_ms ${ms:-timeout}"
}
for r in $(seq "$ROUNDS"); do
    for load in idle busy late; do
        [ "$load" = busy ] && start_loops
        run "$load" 1 default
        run "$load" 2 default X=1
        run "$load" 2 passive OMP_WAIT_POLICY=passive
        run "$load" 2 auto DT_BENCH_AUTO=1
        stop_loops
    done
done
rm -f /tmp/bench_threads.$$
