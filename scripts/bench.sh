#!/usr/bin/env bash
# The benchmark, in one command: installs what is missing (HAProxy, nginx-light, wrk, MariaDB; Debian
# 12, as root), builds the workspace in release mode, then
#   1. the seed stack under load (loadgen/stack/bench.sh): a real MariaDB primary/replica pair, two
#      app nodes, and corelb, HAProxy and nginx in turn in the load balancer's seat, measured by
#      loadgen (closed loop, then open loop at 50 % and 80 % of the maximum);
#   2. the proxy comparison on static backends (benches/compare.sh): corelb vs HAProxy vs nginx vs
#      direct, CPU per request side by side.
# `--quick` makes both short. Environment passes through: DURATION, ROUNDS, PROXIES, SIZES (compare.sh),
# BALANCERS (default "corelb,haproxy,nginx" for the stack). Defaults: DURATION=5 ROUNDS=3.
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

step "1/4 Checking the benchmark tools (haproxy, nginx, wrk, MariaDB; jq for loadgen's JSON; taskset and ss for pinning and port checks)"
missing=()
command -v mariadbd > /dev/null 2>&1 || missing+=(mariadb-server)
command -v mariadb > /dev/null 2>&1 || missing+=(mariadb-client)
command -v haproxy > /dev/null 2>&1 || missing+=(haproxy)
command -v nginx > /dev/null 2>&1 || missing+=(nginx-light)
command -v wrk > /dev/null 2>&1 || missing+=(wrk)
command -v jq > /dev/null 2>&1 || missing+=(jq)
command -v ss > /dev/null 2>&1 || missing+=(iproute2)
command -v taskset > /dev/null 2>&1 || missing+=(util-linux)
if ((${#missing[@]} == 0)); then
    echo "all present: $(command -v haproxy nginx wrk mariadbd jq | tr '\n' ' ')"
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

step "2/4 Building corelb, loadgen and appnode (cargo build --release --workspace)"
if ! command -v cargo > /dev/null 2>&1; then
    echo "cargo not found: install a current Rust toolchain (https://rustup.rs), then rerun." >&2
    exit 1
fi
cargo build --release --workspace

quick=()
for a in "$@"; do
    [[ $a == --quick ]] && quick=(--quick)
done

step "3/4 The seed stack under load: loadgen/stack/bench.sh --balancer ${BALANCERS:-corelb,haproxy,nginx} ${quick[*]}"
bash loadgen/stack/bench.sh --balancer "${BALANCERS:-corelb,haproxy,nginx}" "${quick[@]}"

step "4/4 Running benches/compare.sh (pinned: proxy on core 1, wrk + backends on core 0)"
export DURATION="${DURATION:-5}" ROUNDS="${ROUNDS:-3}"
echo "DURATION=$DURATION ROUNDS=$ROUNDS; this takes about" \
    "$(((DURATION + 3) * ROUNDS * 4 * 2 / 60 + 1)) min for 4 targets and 2 body sizes"
# compare.sh prints the report (and writes it under target/bench/) when it finishes.
exec bash benches/compare.sh "$@"
