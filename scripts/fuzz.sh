#!/usr/bin/env bash
# Fuzzes one target of fuzz/ for a bounded time with the stable toolchain, no cargo-fuzz needed:
# libFuzzer's coverage instrumentation (sancov) is a stable rustc option; only AddressSanitizer needs
# nightly, and the parsers fuzzed here are safe Rust. With nightly and cargo-fuzz, `cargo +nightly fuzz
# run TARGET` does the same with ASan (fuzz/README.md).
#
#   scripts/fuzz.sh TARGET [SECONDS] [libFuzzer options...]     e.g. scripts/fuzz.sh round_trip 60
#
# The corpus grows in fuzz/corpus/TARGET (started from the committed fuzz/seeds/TARGET); a crash is
# saved in fuzz/artifacts/TARGET/ and replayed with `fuzz/target/.../release/TARGET FILE`. One job at
# a time: the machines have 2 cores.
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_DIR"

TARGET=${1:?usage: scripts/fuzz.sh TARGET [SECONDS] [libFuzzer options...]}
SECONDS_MAX=${2:-60}
shift $(($# >= 2 ? 2 : 1))
if [[ ! -f fuzz/fuzz_targets/$TARGET.rs ]]; then
    targets=(fuzz/fuzz_targets/*.rs)
    targets=("${targets[@]##*/}")
    echo "no fuzz target '$TARGET'; there are: ${targets[*]%.rs}" >&2
    exit 2
fi

# The flags cargo-fuzz passes (sanitizer "none"), with debug assertions and overflow checks on.
# --target: keeps them off build scripts and proc macros.
HOST=$(rustc -vV | sed -n 's/^host: //p')
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cllvm-args=-sanitizer-coverage-stack-depth \
--cfg fuzzing -Cdebug-assertions -Coverflow-checks"
cargo build --release --manifest-path fuzz/Cargo.toml --target "$HOST" --bin "$TARGET"

mkdir -p "fuzz/corpus/$TARGET" "fuzz/artifacts/$TARGET"
exec "fuzz/target/$HOST/release/$TARGET" "fuzz/corpus/$TARGET" "fuzz/seeds/$TARGET" \
    -max_total_time="$SECONDS_MAX" -artifact_prefix="fuzz/artifacts/$TARGET/" "$@"
