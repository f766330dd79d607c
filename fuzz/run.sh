#!/usr/bin/env bash
# Runs every fuzz target for SECONDS seconds each (default 60), one after
# the other, and prints one summary line per target: executions, corpus
# size, and whether it crashed.
#
#   fuzz/run.sh 300            # five minutes per target
#   fuzz/run.sh 20 log_line    # only the named targets
#
# cargo-fuzz needs a nightly compiler; on a stable one RUSTC_BOOTSTRAP=1 (set
# here unless already set) lets it use the nightly-only flags it passes.
# Corpora grow in fuzz/corpus/<target> (ignored by git), starting from the
# seeds in fuzz/seeds/<target>; a crash leaves its input in
# fuzz/artifacts/<target>/ and this script exits 1 after the last target.
# Replay one with: cargo fuzz run <target> fuzz/artifacts/<target>/<file>
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
secs=${1:-60}
shift || true
export RUSTC_BOOTSTRAP=${RUSTC_BOOTSTRAP:-1}

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz/run.sh: cargo-fuzz is not installed (cargo install cargo-fuzz)" >&2
    exit 2
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi
cargo fuzz build -O || exit 1

mkdir -p logs
failed=0
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target" "seeds/$target"
    log="logs/$target.log"
    # -rss_limit_mb: a leak or a huge allocation is a finding too.
    cargo fuzz run -O "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -timeout=20 -print_final_stats=1 \
        >"$log" 2>&1
    status=$?
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    corpus=$(find "corpus/$target" -type f | wc -l)
    if [ $status -eq 0 ]; then
        printf '%-18s %12s executions in %ss, corpus %s, no crash\n' "$target" "${runs:-?}" "$secs" "$corpus"
    else
        failed=1
        printf '%-18s CRASHED (exit %s) after %s executions: see fuzz/%s\n' "$target" "$status" "${runs:-?}" "$log"
        grep -m3 -E 'panicked|ERROR|SUMMARY' "$log" | sed 's/^/    /'
    fi
done
exit $failed
