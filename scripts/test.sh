#!/usr/bin/env bash
# All tests: installs what they need if missing, then format check, clippy (warnings are errors),
# the whole workspace's tests, the fuzz targets (built, run over their seeds) and shellcheck. Runs
# every step even after a failure, so one run shows all problems; exits non-zero if any step failed.
# Used by CI (.ci/run) as is.
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_DIR"

step() { printf '\n==> %s\n' "$*"; }

# A rustup install puts cargo here without necessarily touching PATH for non-login shells.
if ! command -v cargo > /dev/null 2>&1 && [[ -x ${HOME:-/root}/.cargo/bin/cargo ]]; then
    PATH="${HOME:-/root}/.cargo/bin:$PATH"
fi

step "Checking what the tests need"
# Debian packages the tests need: each entry is "command-to-look-for:debian-package".
# - mariadbd, mariadb: the real MariaDB primary/replica pair of loadgen's stack test (loadgen/tests/stack.rs).
# - ss (iproute2): the stack script names who holds a taken port.
# - haproxy, jq: the benchmark script's own test (loadgen/tests/stack_bench.rs) puts HAProxy beside
#   corelb, and the script reads loadgen's JSON with jq.
# - shellcheck: lints the shell scripts (a step below).
# - curl: scripts/vendor-glommio.sh downloads the glommio release that vendor/glommio is patched from.
APT_NEEDS=(mariadbd:mariadb-server mariadb:mariadb-client ss:iproute2 haproxy:haproxy jq:jq shellcheck:shellcheck
    curl:curl)
missing=()
for need in "${APT_NEEDS[@]}"; do
    cmd=${need%%:*}
    # Server binaries live in /usr/sbin, which a non-root PATH may lack.
    command -v "$cmd" > /dev/null 2>&1 || [[ -x /usr/sbin/$cmd ]] || missing+=("${need#*:}")
done
if ((${#missing[@]} > 0)); then
    install_cmd="apt-get install -y -o DPkg::Lock::Timeout=120 ${missing[*]}"
    if ((EUID != 0)); then
        echo "missing: ${missing[*]}. Not root, so not installing. Run:" >&2
        echo "  sudo apt-get update && sudo $install_cmd" >&2
        exit 1
    fi
    echo "installing with apt-get: ${missing[*]}"
    apt-get update -q
    # shellcheck disable=SC2086 # install_cmd is a word list built above
    DEBIAN_FRONTEND=noninteractive $install_cmd
fi
for tool in cargo rustfmt cargo-clippy; do
    if ! command -v "$tool" > /dev/null 2>&1; then
        echo "$tool not found: install Rust with the rustfmt and clippy components" \
            "(rustup component add rustfmt clippy)" >&2
        exit 1
    fi
done
cargo --version
echo "ok"

failed=()
run_step() { # name cmd...
    local name=$1
    shift
    step "$name: $*"
    if "$@"; then
        echo "$name: ok"
    else
        echo "$name: FAILED (exit $?)" >&2
        failed+=("$name")
    fi
}

run_step fmt cargo fmt --all -- --check
# vendor/glommio must be glommio's release plus vendor/patches/glommio and nothing else (needs crates.io).
run_step vendor bash scripts/vendor-glommio.sh --check
run_step clippy cargo clippy --workspace --all-targets -- -D warnings
run_step test cargo test --workspace --no-fail-fast

# The fuzz targets (fuzz/: its own workspace, which no step above builds) compiled on stable, then each
# run once over its seed inputs (fuzz/seeds/TARGET/), so that they cannot rot and their checks hold on
# known messages. Fuzzing proper needs nightly and cargo-fuzz (fuzz/README.md). `--target-dir target`:
# the dependencies the test step just built are reused.
fuzz_targets() {
    cargo fmt --manifest-path fuzz/Cargo.toml -- --check || return
    cargo clippy --manifest-path fuzz/Cargo.toml --target-dir target --bins -- -D warnings || return
    cargo build --manifest-path fuzz/Cargo.toml --target-dir target --bins || return
    local dir name
    for dir in fuzz/seeds/*/; do
        name=$(basename "$dir")
        echo "$name: $(find "$dir" -type f | wc -l) seed inputs"
        # libFuzzer runs each file given once and exits non-zero on a crash or a failed check.
        target/debug/"$name" "$dir"* || return
    done
}
run_step fuzz fuzz_targets
if command -v shellcheck > /dev/null 2>&1; then
    # -x: follow the scripts' `source benches/lib.sh` (paths relative to the repository root).
    run_step shellcheck shellcheck -x benches/*.sh scripts/*.sh .ci/run loadgen/stack/*.sh
else
    step "shellcheck not installed: shell scripts not linted (apt-get install shellcheck)"
fi

step "Summary"
if ((${#failed[@]} > 0)); then
    echo "FAILED steps: ${failed[*]}" >&2
    exit 1
fi
echo "all steps passed"
