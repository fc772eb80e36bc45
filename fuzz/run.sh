#!/usr/bin/env bash
# Runs every cargo-fuzz target for FUZZ_SECONDS (default 60) each, one after another,
# and prints executions and findings per target. Used by `make fuzz`.
#
#   FUZZ_SECONDS=120 make fuzz                 # all targets, 2 minutes each
#   FUZZ_TARGETS="form bucket_decode" make fuzz
#   FUZZ_JOBS=2 make fuzz                      # parallel libFuzzer workers per target
#
# Toolchain: cargo-fuzz needs nightly (-Zsanitizer). With a nightly toolchain installed
# (`rustup toolchain install nightly`) it is used; otherwise the stable compiler is run
# with RUSTC_BOOTSTRAP=1, which unlocks the same -Z flags. cargo-fuzz itself is installed
# from crates.io when missing (`cargo install cargo-fuzz`).
#
# Build: release with debug assertions and overflow checks (-O -a), AddressSanitizer.
# Corpus: fuzz/corpus/<target> (grows, git-ignored), seeded from fuzz/seeds/<target>.
# Crashes: fuzz/artifacts/<target>/crash-* ; reproduce with
#   cargo +nightly fuzz run <target> fuzz/artifacts/<target>/crash-<hash>
# Summary: fuzz/results/<target>.log (libFuzzer output) and fuzz/results/summary.txt.
set -euo pipefail
cd "$(dirname "$0")"

SECONDS_EACH=${FUZZ_SECONDS:-60}
TARGETS=${FUZZ_TARGETS:-"form basic_auth token_config guard_config bucket_decode token_parse jwt_parse etcd_answer"}
JOBS=${FUZZ_JOBS:-1}

command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  CARGO=(cargo +nightly)
else
  echo "fuzz: no nightly toolchain, using stable with RUSTC_BOOTSTRAP=1"
  export RUSTC_BOOTSTRAP=1
  CARGO=(cargo)
fi

"${CARGO[@]}" fuzz build -O -a
mkdir -p results
: > results/summary.txt
status=0
for t in $TARGETS; do
  mkdir -p "corpus/$t" "artifacts/$t"
  extra=()
  case $t in token_config|guard_config) extra+=(-dict=json.dict) ;; esac
  [ "$JOBS" -gt 1 ] && extra+=(-jobs="$JOBS" -workers="$JOBS")
  echo "== fuzz $t for ${SECONDS_EACH}s"
  before=$(ls "artifacts/$t" | wc -l)
  set +e
  "${CARGO[@]}" fuzz run -O -a "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$SECONDS_EACH" -print_final_stats=1 -max_len=8192 \
    "${extra[@]}" > "results/$t.log" 2>&1
  rc=$?
  set -e
  # With -jobs>1 libFuzzer writes each worker's output to fuzz-<n>.log.
  logs=("results/$t.log"); [ "$JOBS" -gt 1 ] && logs+=(fuzz-*.log)
  execs=$(cat "${logs[@]}" 2>/dev/null | awk '/stat::number_of_executed_units/ {s+=$2} END {print s+0}')
  crashes=$(( $(ls "artifacts/$t" | wc -l) - before ))
  [ "$JOBS" -gt 1 ] && { cat fuzz-*.log >> "results/$t.log"; rm -f fuzz-*.log; }
  corpus=$(ls "corpus/$t" | wc -l)
  line="$t: ${SECONDS_EACH}s, $execs executions, corpus $corpus inputs, new crash artifacts $crashes, exit $rc"
  echo "$line" | tee -a results/summary.txt
  if [ "$rc" -ne 0 ] || [ "$crashes" -gt 0 ]; then
    status=1
    grep -E 'panicked|ERROR: AddressSanitizer|ERROR: libFuzzer|Test unit written' "results/$t.log" | head -5 || true
  fi
done
echo "== summary (fuzz/results/summary.txt)"
cat results/summary.txt
exit $status
