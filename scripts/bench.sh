#!/usr/bin/env bash
# The benchmark, in one command: installs HAProxy, nginx-light and wrk if any is missing (Debian 12,
# as root), builds corelb in release mode, then runs benches/compare.sh (corelb vs HAProxy vs nginx
# vs direct-to-backend) and prints its report. Arguments and environment pass through to
# compare.sh (e.g. --quick, DURATION, ROUNDS, PROXIES, SIZES; see benches/compare.sh --help).
# Defaults here are a moderate run: DURATION=5 ROUNDS=3.
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_DIR"
# haproxy and nginx live in /usr/sbin, which a non-root PATH on Debian lacks.
PATH="$PATH:/usr/sbin:/sbin"

step() { printf '\n==> %s\n' "$*"; }

# A rustup install puts cargo here without necessarily touching PATH for non-login shells.
if ! command -v cargo > /dev/null 2>&1 && [[ -x ${HOME:-/root}/.cargo/bin/cargo ]]; then
    PATH="${HOME:-/root}/.cargo/bin:$PATH"
fi

step "1/3 Checking the benchmark tools (haproxy, nginx, wrk; taskset and ss for pinning and port checks)"
missing=()
command -v haproxy > /dev/null 2>&1 || missing+=(haproxy)
command -v nginx > /dev/null 2>&1 || missing+=(nginx-light)
command -v wrk > /dev/null 2>&1 || missing+=(wrk)
command -v ss > /dev/null 2>&1 || missing+=(iproute2)
command -v taskset > /dev/null 2>&1 || missing+=(util-linux)
if ((${#missing[@]} == 0)); then
    echo "all present: $(command -v haproxy nginx wrk | tr '\n' ' ')"
else
    install_cmd="apt-get install -y -o DPkg::Lock::Timeout=120 ${missing[*]}"
    if ((EUID != 0)); then
        echo "missing: ${missing[*]}. Not root, so not installing. Run:" >&2
        echo "  sudo apt-get update && sudo $install_cmd" >&2
        exit 1
    fi
    echo "missing: ${missing[*]}; installing with apt-get"
    apt-get update
    # shellcheck disable=SC2086 # install_cmd is a word list built above
    DEBIAN_FRONTEND=noninteractive $install_cmd
fi

step "2/3 Building corelb (cargo build --release)"
if ! command -v cargo > /dev/null 2>&1; then
    echo "cargo not found: install a current Rust toolchain (https://rustup.rs), then rerun." >&2
    exit 1
fi
cargo build --release

step "3/3 Running benches/compare.sh (pinned: proxy on core 1, wrk + backends on core 0)"
export DURATION="${DURATION:-5}" ROUNDS="${ROUNDS:-3}"
echo "DURATION=$DURATION ROUNDS=$ROUNDS; this takes about" \
    "$(((DURATION + 3) * ROUNDS * 4 * 2 / 60 + 1)) min for 4 targets and 2 body sizes"
# compare.sh prints the report (and writes it under target/bench/) when it finishes.
exec bash benches/compare.sh "$@"
