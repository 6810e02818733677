#!/usr/bin/env bash
# Runs every fuzz target of annal for FUZZ_SECONDS seconds (default 60) each,
# starting from the committed seeds (fuzz/seeds/<target>, copied into the
# working corpus fuzz/corpus/<target>, which git ignores). Prints the number of
# executions libFuzzer reports for each target, and exits non-zero if any
# target crashed (the artifact path and the panic are in the output).
#
#   bash fuzz/run.sh                      # all targets, 60 s each
#   FUZZ_SECONDS=600 bash fuzz/run.sh     # longer
#   FUZZ_TARGETS="api_ops" bash fuzz/run.sh
#
# Needs cargo-fuzz (installed from crates.io if missing) and a nightly
# toolchain; without one, the stable toolchain is used with RUSTC_BOOTSTRAP=1,
# which gives cargo-fuzz the -Z flags it needs.
set -euo pipefail
cd "$(dirname "$0")"

seconds=${FUZZ_SECONDS:-60}
targets=${FUZZ_TARGETS:-"record_decode segment_recovery index_load api_ops compact_ops small_files event_files consumer_records es_records"}
# Decoders must never allocate more than their input justifies: a single
# allocation over malloc_limit_mb, or a process over rss_limit_mb, is a crash.
limits=(-rss_limit_mb=512 -malloc_limit_mb=256 -timeout=10)
# The model targets (whole API sequences against a model) run without
# AddressSanitizer: its allocator and stack bookkeeping made them 2.5 times
# slower, and what it guards (unsafe code, allocations from untrusted
# lengths) is exercised by the decoder targets and segment_recovery, which
# keep it. Without a sanitizer libFuzzer cannot enforce malloc_limit_mb, so
# these targets keep only the RSS limit.
no_sanitizer="api_ops compact_ops"
sanitizer_of() {
  case " $no_sanitizer " in
    *" $1 "*) echo none ;;
    *) echo address ;;
  esac
}

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

if cargo +nightly --version >/dev/null 2>&1; then
  fuzz=(cargo +nightly fuzz)
else
  echo "== no nightly toolchain: using $(rustc --version) with RUSTC_BOOTSTRAP=1"
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz)
fi

echo "== building the fuzz targets"
"${fuzz[@]}" build

logs=target/fuzz-logs
mkdir -p "$logs"
failed=()
for target in $targets; do
  case $target in
    segment_recovery) max_len=16384 ;;
    api_ops | compact_ops) max_len=1024 ;;
    *) max_len=4096 ;;
  esac
  corpus=corpus/$target
  mkdir -p "$corpus"
  cp -n seeds/"$target"/* "$corpus"/ 2>/dev/null || true
  sanitizer=$(sanitizer_of "$target")
  echo "== fuzzing $target for ${seconds}s ($(ls "$corpus" | wc -l) inputs in $corpus, sanitizer: $sanitizer)"
  log=$logs/$target.log
  target_limits=("${limits[@]}")
  if [ "$sanitizer" = none ]; then
    target_limits=(-rss_limit_mb=512 -timeout=10)
  fi
  set +e
  "${fuzz[@]}" run -s "$sanitizer" "$target" "$corpus" -- -max_total_time="$seconds" -max_len="$max_len" \
    "${target_limits[@]}" -print_final_stats=1 >"$log" 2>&1
  rc=$?
  set -e
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)
  if [ -z "$execs" ]; then
    # A crash ends the run before the final stats; take the last status line.
    execs=$(grep -o '^#[0-9]*' "$log" | tail -1 | tr -d '#' || true)
  fi
  if [ "$rc" -eq 0 ]; then
    echo "$target: ok, ${execs:-?} executions in ${seconds}s"
  else
    echo "$target: FAILED (exit $rc) after ${execs:-?} executions; the end of $PWD/$log:"
    tail -n 60 "$log"
    failed+=("$target")
  fi
done

if [ "${#failed[@]}" -ne 0 ]; then
  echo "fuzz: crashes in: ${failed[*]} (inputs under fuzz/artifacts/<target>/)"
  exit 1
fi
echo "fuzz: all targets ran without a crash"
