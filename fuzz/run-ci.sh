#!/usr/bin/env bash
# A CI-sized fuzz of every cargo-fuzz target: each runs FUZZ_RUNS executions or
# FUZZ_SECONDS seconds, whichever comes first (default 2,000,000 / 60 s), starting from
# the committed seed corpus. Fails on any finding: a crash, a failed assertion, a
# timeout (a hang) or a leak; libFuzzer leaves the input under fuzz/artifacts/<target>/.
#
# Works from any directory. Installs cargo-fuzz if it is missing; needs the nightly
# toolchain (installed if missing). New corpus entries go to fuzz/target/ci-corpus/
# (ignored), so the committed corpus stays as it is.
#
#   FUZZ_SECONDS=60 FUZZ_RUNS=2000000 FUZZ_SANITIZER=address fuzz/run-ci.sh [target...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds=${FUZZ_SECONDS:-60}
runs=${FUZZ_RUNS:-2000000}
sanitizer=${FUZZ_SANITIZER:-address}

if ! cargo +nightly --version >/dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

cargo +nightly fuzz build --sanitizer "$sanitizer"
for target in "${targets[@]}"; do
    printf '\n=== fuzz %s: %s runs or %s s\n' "$target" "$runs" "$seconds"
    work="fuzz/target/ci-corpus/$target"
    mkdir -p "$work"
    log="fuzz/target/ci-corpus/$target.log"
    start=$SECONDS
    status=0
    cargo +nightly fuzz run --sanitizer "$sanitizer" "$target" "$work" "fuzz/corpus/$target" -- \
        -runs="$runs" -max_total_time="$seconds" -max_len=512 -timeout=10 \
        -print_final_stats=1 >"$log" 2>&1 || status=$?
    grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)|^stat::(number_of_executed_units|average_exec_per_sec)' "$log" || true
    if [ "$status" -ne 0 ]; then
        grep -E -A4 'panicked at|ERROR:|SUMMARY:|Test unit written|^Base64:' "$log" >&2 || tail -n 40 "$log" >&2
        echo "fuzz $target: FINDING (exit $status); the input is under fuzz/artifacts/$target/" >&2
        exit "$status"
    fi
    echo "fuzz $target: clean in $((SECONDS - start)) s"
done
