#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) for SECONDS each, one after another, single-process
# (-jobs=1 -workers=1: the machine is shared), then prints per target: executions, time, exec/s and
# crashes found. Exits non-zero if any target crashed. Not part of CI.
#
#   scripts/fuzz.sh SECONDS [TARGET...]      targets: decode roundtrip open_bytes store_ops
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Builds with debug assertions
# and overflow checks (-a), as `cargo test` runs the library. New corpus entries go to
# fuzz/target/corpus/<target> (not committed); the committed seeds in fuzz/corpus/<target> are only read.
# Crashes land in fuzz/artifacts/<target>/: minimize one with
#   cargo +nightly fuzz tmin -O -a <target> fuzz/artifacts/<target>/crash-...
# and add it to tests/fuzz_corpus/<target>/ so `cargo test --test fuzz_regressions` replays it.
set -uo pipefail
secs=${1:?usage: scripts/fuzz.sh SECONDS [TARGET...]}
shift
cd "$(dirname "$0")/.."
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(decode roundtrip open_bytes store_ops)

cargo +nightly fuzz build -O -a || exit 2

logs=fuzz/target/logs
mkdir -p "$logs"
declare -A execs rates wall crashes
failed=0
for t in "${targets[@]}"; do
  work=fuzz/target/corpus/$t
  mkdir -p "$work" "fuzz/artifacts/$t"
  before=$(ls "fuzz/artifacts/$t" | wc -l)
  echo "== $t: ${secs}s" >&2
  start=$(date +%s)
  # With -jobs=1 libFuzzer runs the fuzzing in one child process whose output goes to fuzz-0.log in
  # the working directory: run it from the log directory so that file lands there.
  (cd "$logs" && rm -f fuzz-0.log &&
    cargo +nightly fuzz run --fuzz-dir ../.. -O -a "$t" "../corpus/$t" "../../corpus/$t" -- \
      -max_total_time="$secs" -rss_limit_mb=2048 -jobs=1 -workers=1 -print_final_stats=1 \
      -artifact_prefix="../../artifacts/$t/" >"$t.run.log" 2>&1)
  rc=$?
  end=$(date +%s)
  [ -f "$logs/fuzz-0.log" ] && mv "$logs/fuzz-0.log" "$logs/$t.log"
  after=$(ls "fuzz/artifacts/$t" | wc -l)
  n=$(grep -h 'stat::number_of_executed_units' "$logs/$t.log" "$logs/$t.run.log" 2>/dev/null | tail -1 | awk '{print $2}')
  execs[$t]=${n:-?}
  r=$(grep -h 'stat::average_exec_per_sec' "$logs/$t.log" "$logs/$t.run.log" 2>/dev/null | tail -1 | awk '{print $2}')
  rates[$t]=${r:-?}
  # Seconds spent fuzzing, as libFuzzer counts them (the wall time also includes any rebuild).
  w=$(grep -h '^Done [0-9]* runs in' "$logs/$t.log" "$logs/$t.run.log" 2>/dev/null | tail -1 | awk '{print $5}')
  wall[$t]=${w:-$((end - start))}
  crashes[$t]=$((after - before))
  if [ "$rc" -ne 0 ] || [ "${crashes[$t]}" -gt 0 ]; then
    failed=1
    [ "${crashes[$t]}" -gt 0 ] || crashes[$t]="rc=$rc"
    echo "!! $t failed: see $logs/$t.log and fuzz/artifacts/$t/" >&2
    tail -n 30 "$logs/$t.log" >&2 2>/dev/null
  fi
done

printf '%-12s %8s %12s %10s %8s\n' target seconds executions exec/s crashes
for t in "${targets[@]}"; do
  printf '%-12s %8s %12s %10s %8s\n' "$t" "${wall[$t]}" "${execs[$t]}" "${rates[$t]}" "${crashes[$t]}"
done
exit $failed
