#!/usr/bin/env bash
# All tests: installs what they need if missing, then format check, clippy (warnings are errors)
# and the whole workspace's tests. Runs every step even after a failure, so one run shows all
# problems; exits non-zero if any step failed. Used by CI (.ci/run) as is.
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_DIR"

step() { printf '\n==> %s\n' "$*"; }

# A rustup install puts cargo here without necessarily touching PATH for non-login shells.
if ! command -v cargo > /dev/null 2>&1 && [[ -x ${HOME:-/root}/.cargo/bin/cargo ]]; then
    PATH="${HOME:-/root}/.cargo/bin:$PATH"
fi

step "Checking what the tests need"
# Debian packages the tests need; none today (the Rust tests bring their own servers).
# Add here: each entry is "command-to-look-for:debian-package".
APT_NEEDS=()
missing=()
for need in "${APT_NEEDS[@]}"; do
    command -v "${need%%:*}" > /dev/null 2>&1 || missing+=("${need#*:}")
done
if ((${#missing[@]} > 0)); then
    install_cmd="apt-get install -y -o DPkg::Lock::Timeout=120 ${missing[*]}"
    if ((EUID != 0)); then
        echo "missing: ${missing[*]}. Not root, so not installing. Run:" >&2
        echo "  sudo apt-get update && sudo $install_cmd" >&2
        exit 1
    fi
    echo "installing: ${missing[*]}"
    apt-get update
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
run_step clippy cargo clippy --all-targets -- -D warnings
run_step test cargo test --workspace --no-fail-fast
if command -v shellcheck > /dev/null 2>&1; then
    run_step shellcheck shellcheck benches/compare.sh scripts/bench.sh scripts/test.sh .ci/run
else
    step "shellcheck not installed: shell scripts not linted (apt-get install shellcheck)"
fi

step "Summary"
if ((${#failed[@]} > 0)); then
    echo "FAILED steps: ${failed[*]}" >&2
    exit 1
fi
echo "all steps passed"
