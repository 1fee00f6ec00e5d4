#!/usr/bin/env bash
# TCP mode comparison: corelb (`mode = "tcp"`) vs HAProxy (`mode tcp`) vs direct-to-server, with the
# conventions of benches/compare.sh: the proxy pinned to core 1 (corelb --workers 1, HAProxy nbthread 1),
# the load tool and the echo server to core 0, rounds interleaved (corelb haproxy direct, corelb ...),
# each run preceded by an unrecorded warm-up, and the figure of merit is work per proxy CPU-second, the
# CPU being the proxy's utime+stime (/proc/PID/stat, all threads) over the run. Two tests, both with
# examples/tcpbench.rs against its own echo server:
#   bulk      BULK_CONNS connections each stream BULK_SIZE-byte writes and read the echo back at once;
#             MB = 10^6 bytes that came back (moved one way; the proxy moved as many the other way)
#   connrate  CONN_THREADS threads loop: connect, write 64 B, read the 64 B echo, close
# "direct" (no proxy) is there for context: what the load side and echo server reach on their own.
#
# Usage: benches/tcp_compare.sh [--quick] [--no-build] [--help]
#   --quick      DURATION=2 ROUNDS=1 WARMUP=1 (overriding them)
#   --no-build   use the binaries as they are (default: cargo build --release of corelb and tcpbench)
# Environment (defaults in brackets):
#   DURATION [5]    seconds per recorded run        ROUNDS [3]      interleaved rounds
#   WARMUP [1]      seconds of unrecorded warm-up (0: none)
#   TESTS ["bulk connrate"]   PROXIES ["corelb haproxy direct"]
#   BULK_CONNS [8]  BULK_SIZE [65536]  bytes per write        CONN_THREADS [8]
#   ECHO_PORT [9201] CORELB_PORT [9210] HAPROXY_PORT [9211]   RESULTS_DIR [target/bench]
#   HAPROXY_BUFSIZE [0]  HAProxy tune.bufsize; 0 keeps its default (16384; corelb's TCP buffer is 32 KiB)
#   NOISE_PCT [10]  foreign CPU (% of one core) above which a run is redone
#   MAX_REDO [1]    redos per run when noisy (the quieter attempt is kept)
#   QUIET_WAIT [20] before each run, wait up to this many seconds for other tenants to go quiet
#   KEEP_STATE [0]  1 keeps the temp dir (configs, logs, raw tool output) for inspection
# HAProxy is installed with apt-get (Debian's package) when missing and this runs as root.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$SCRIPT_DIR/.." && pwd)"
readonly SCRIPT_DIR REPO_DIR
BENCH_NAME=tcp_compare.sh
# shellcheck source=benches/lib.sh
. "$SCRIPT_DIR/lib.sh"

QUICK=0
BUILD=1
for arg in "$@"; do
    case "$arg" in
        --quick) QUICK=1 ;;
        --no-build) BUILD=0 ;;
        -h | --help) bench_usage "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "$BENCH_NAME: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
    esac
done
if ((QUICK)); then
    DURATION=2
    ROUNDS=1
    WARMUP=1
fi

DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-1}
TESTS=${TESTS:-"bulk connrate"}
PROXIES=${PROXIES:-"corelb haproxy direct"}
BULK_CONNS=${BULK_CONNS:-8}
BULK_SIZE=${BULK_SIZE:-65536}
CONN_THREADS=${CONN_THREADS:-8}
ECHO_PORT=${ECHO_PORT:-9201}
CORELB_PORT=${CORELB_PORT:-9210}
HAPROXY_PORT=${HAPROXY_PORT:-9211}
HAPROXY_BUFSIZE=${HAPROXY_BUFSIZE:-0}
RESULTS_DIR=${RESULTS_DIR:-"$REPO_DIR/target/bench"}
NOISE_PCT=${NOISE_PCT:-10}
MAX_REDO=${MAX_REDO:-1}
QUIET_WAIT=${QUIET_WAIT:-20}
KEEP_STATE=${KEEP_STATE:-0}
CORELB_BIN="$REPO_DIR/target/release/corelb"
TCPBENCH_BIN="$REPO_DIR/target/release/examples/tcpbench"

# Cores: the proxy gets one core to itself; load tool and echo server share the other.
readonly PROXY_CORE=1
readonly LOAD_CORE=0
# The load tool gets this much slack past its run before `timeout` kills it (its own drain wait is
# 10 s at most; connects and teardown).
readonly TOOL_SLACK_S=30
# Upper bounds on the knobs, so a typo cannot start an hours-long loop or thousands of threads.
readonly MAX_ROUNDS=20
readonly MAX_DURATION=600
readonly MAX_CLIENTS=1024 # tcpbench's own cap on connections / threads
readonly MAX_WRITE=4194304 # tcpbench's cap on --size
readonly MAX_ECHO_LIFETIME=86400 # tcpbench serve's cap on --seconds
# Timeouts, the same for both proxies: connect to the server, and a connection idle either way.
readonly CONNECT_TIMEOUT=3s
readonly IDLE_TIMEOUT=1h
# Connections each proxy accepts at once (fds: two per connection, under the raised ulimit).
readonly PROXY_MAXCONN=4096

bench_init
for v in DURATION ROUNDS WARMUP BULK_CONNS BULK_SIZE CONN_THREADS ECHO_PORT CORELB_PORT HAPROXY_PORT \
    HAPROXY_BUFSIZE NOISE_PCT MAX_REDO QUIET_WAIT; do
    is_uint "${!v}" || die "$v must be a non-negative integer, got '${!v}'"
done
((DURATION >= 1 && DURATION <= MAX_DURATION)) || die "DURATION must be 1..$MAX_DURATION"
((ROUNDS >= 1 && ROUNDS <= MAX_ROUNDS)) || die "ROUNDS must be 1..$MAX_ROUNDS"
((WARMUP <= 60)) || die "WARMUP must be 0..60"
((BULK_CONNS >= 1 && BULK_CONNS <= MAX_CLIENTS)) || die "BULK_CONNS must be 1..$MAX_CLIENTS"
((CONN_THREADS >= 1 && CONN_THREADS <= MAX_CLIENTS)) || die "CONN_THREADS must be 1..$MAX_CLIENTS"
((BULK_SIZE >= 1 && BULK_SIZE <= MAX_WRITE)) || die "BULK_SIZE must be 1..$MAX_WRITE"
((MAX_REDO <= 3)) || die "MAX_REDO must be 0..3"
((QUIET_WAIT <= 600)) || die "QUIET_WAIT must be 0..600"
((HAPROXY_BUFSIZE == 0 || (HAPROXY_BUFSIZE >= 1024 && HAPROXY_BUFSIZE <= 1048576))) ||
    die "HAPROXY_BUFSIZE must be 0 (HAProxy's default) or 1024..1048576"
for t in $TESTS; do
    case "$t" in bulk | connrate) ;; *) die "unknown test '$t' in TESTS (use bulk, connrate)" ;; esac
done
for p in $PROXIES; do
    case "$p" in corelb | haproxy | direct) ;; *) die "unknown proxy '$p' in PROXIES" ;; esac
done
[[ -n ${TESTS// /} ]] || die "TESTS is empty"
[[ -n ${PROXIES// /} ]] || die "PROXIES is empty"
has_proxy() { [[ " $PROXIES " == *" $1 "* ]]; }

# ---------------------------------------------------------------------------------------------------
# Tools: HAProxy from Debian when missing; corelb and tcpbench built once, in release.
if has_proxy haproxy && ! command -v haproxy > /dev/null 2>&1; then
    ((EUID == 0)) || die "haproxy not found: apt-get install haproxy (as root), or leave it out of PROXIES"
    log "haproxy not found: installing Debian's package (apt-get install haproxy)"
    # The package's start script may start a system haproxy with /etc/haproxy/haproxy.cfg; it has
    # no listener on our ports, and we leave it alone (we stop only what we start).
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q haproxy > /dev/null; then
        apt-get update -q > /dev/null || true
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q haproxy > /dev/null ||
            die "apt-get install haproxy failed"
    fi
fi
has_proxy haproxy && need haproxy "apt-get install haproxy"

# ---------------------------------------------------------------------------------------------------
# State, cleanup: stop only what we started (by PID), newest first.
bench_state_dir corelb-tcp-compare

if ((BUILD)); then
    need cargo "install Rust (rustup) or run with --no-build"
    log "building corelb and examples/tcpbench (release, fat LTO: minutes)"
    # The log only on failure: the vendored glommio's warnings are noise here.
    if ! (cd "$REPO_DIR" && cargo build --release --bin corelb --example tcpbench) > "$STATE/build.log" 2>&1; then
        tail -n 30 "$STATE/build.log" >&2
        die "cargo build --release failed"
    fi
fi
[[ -x $TCPBENCH_BIN ]] || die "'$TCPBENCH_BIN' not found: cargo build --release --example tcpbench"
if has_proxy corelb; then
    [[ -x $CORELB_BIN ]] || die "'$CORELB_BIN' not found: cargo build --release --bin corelb"
fi

port_free_or_die "$ECHO_PORT" "echo server (ECHO_PORT)"
has_proxy corelb && port_free_or_die "$CORELB_PORT" "corelb (CORELB_PORT)"
has_proxy haproxy && port_free_or_die "$HAPROXY_PORT" "haproxy (HAPROXY_PORT)"
[[ $(printf '%s\n' "$ECHO_PORT" "$CORELB_PORT" "$HAPROXY_PORT" | sort | uniq -d) == "" ]] ||
    die "two services share a port: $ECHO_PORT $CORELB_PORT $HAPROXY_PORT"

proxy_port() {
    case "$1" in
        corelb) echo "$CORELB_PORT" ;;
        haproxy) echo "$HAPROXY_PORT" ;;
        direct) echo "$ECHO_PORT" ;;
    esac
}

write_corelb_cfg() {
    cat << EOF
[global]
grace = "1s"

[[frontend]]
name = "bench"
mode = "tcp"
bind = ["127.0.0.1:$CORELB_PORT"]
default_backend = "echo"
maxconn = $PROXY_MAXCONN

[frontend.timeouts]
idle = "$IDLE_TIMEOUT"

[[backend]]
name = "echo"

[backend.timeouts]
connect = "$CONNECT_TIMEOUT"

[[backend.server]]
name = "echo1"
address = "127.0.0.1:$ECHO_PORT"
EOF
}

HAPROXY_TUNE="    # tune.bufsize: HAProxy's default (16384)"
BUFSIZE_NOTE="default (16384)"
if ((HAPROXY_BUFSIZE > 0)); then
    HAPROXY_TUNE="    tune.bufsize $HAPROXY_BUFSIZE"
    BUFSIZE_NOTE=$HAPROXY_BUFSIZE
fi
write_haproxy_cfg() {
    cat << EOF
global
    nbthread 1
    maxconn $PROXY_MAXCONN
    # no 'log' line: logging off, like corelb
$HAPROXY_TUNE

defaults
    mode tcp
    timeout connect $CONNECT_TIMEOUT
    timeout client $IDLE_TIMEOUT
    timeout server $IDLE_TIMEOUT

frontend bench
    bind 127.0.0.1:$HAPROXY_PORT
    default_backend echo

backend echo
    server echo1 127.0.0.1:$ECHO_PORT
EOF
}

# Sanity probe over a fresh connection: what we send must come back, byte for byte.
check_target() { # proxy
    local p=$1 port want got
    port=$(proxy_port "$p")
    want="corelb-tcp-probe-$RANDOM"
    # shellcheck disable=SC2016 # $1/$2 expand in the inner bash, on purpose
    got=$(timeout 5 bash -c '
        exec 3<> "/dev/tcp/127.0.0.1/$1" || exit 1
        printf "%s\n" "$2" >&3
        read -r line <&3 && printf "%s" "$line"' _ "$port" "$want" 2> /dev/null) || got=""
    [[ $got == "$want" ]] || die "$p on :$port did not echo the probe (sent '$want', got '$got')"
}

# ---------------------------------------------------------------------------------------------------
# Versions and the command that reproduces this run.
TS=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$RESULTS_DIR"
REPORT="$RESULTS_DIR/tcp-$TS.txt"
RAW="$RESULTS_DIR/tcp-$TS.tsv"
CMDLINE=$(printf 'DURATION=%q ROUNDS=%q WARMUP=%q TESTS=%q PROXIES=%q BULK_CONNS=%q BULK_SIZE=%q CONN_THREADS=%q HAPROXY_BUFSIZE=%q' \
    "$DURATION" "$ROUNDS" "$WARMUP" "$TESTS" "$PROXIES" "$BULK_CONNS" "$BULK_SIZE" "$CONN_THREADS" "$HAPROXY_BUFSIZE")
CMDLINE+=" benches/tcp_compare.sh"

VERSIONS=""
has_proxy corelb && VERSIONS+="- corelb: $(first_line "$CORELB_BIN" --version) ($CORELB_BIN)"$'\n'
has_proxy haproxy && VERSIONS+="- haproxy: $(first_line haproxy -v)"$'\n'
VERSIONS+="- load tool and echo server: examples/tcpbench.rs ($TCPBENCH_BIN)"$'\n'
VERSIONS+="$(machine_lines)"$'\n'
PINNING="- proxy under test: core $PROXY_CORE (taskset -c $PROXY_CORE); corelb --workers 1, haproxy nbthread 1
- tcpbench (load) and tcpbench serve (echo server, thread per connection): core $LOAD_CORE (taskset -c $LOAD_CORE)"

print_header "corelb TCP mode comparison"

# ---------------------------------------------------------------------------------------------------
# Start everything. The echo server outlives the runs by far, and still ends on its own.
ECHO_LIFETIME=$((ROUNDS * (MAX_REDO + 1) * 3 * 2 * (DURATION + WARMUP + QUIET_WAIT + TOOL_SLACK_S) + 600))
((ECHO_LIFETIME <= MAX_ECHO_LIFETIME)) || ECHO_LIFETIME=$MAX_ECHO_LIFETIME
start_bg echo "$LOAD_CORE" "$STATE/echo.log" \
    "$TCPBENCH_BIN" serve --listen "127.0.0.1:$ECHO_PORT" --seconds "$ECHO_LIFETIME"
wait_listening echo "$ECHO_PORT" "$STATE/echo.log"
has_proxy corelb && start_proxy corelb
has_proxy haproxy && start_proxy haproxy
check_pinning echo
for p in $PROXIES; do check_target "$p"; done
log "all targets echo"

# ---------------------------------------------------------------------------------------------------
# One run: warm-up, then the recorded run. Appends a line to $RAW.
printf 'test\tproxy\tround\tattempt\trate\tamount\terrors\tproxy_ticks\tper_cpu_s\tproxy_core_pct\tforeign_pct\tload_core_pct\telapsed_s\tsteal_pct\n' > "$RAW"

run_tool() { # test port seconds outfile
    local args
    case "$1" in
        bulk) args=(bulk --conns "$BULK_CONNS" --size "$BULK_SIZE") ;;
        connrate) args=(connrate --threads "$CONN_THREADS") ;;
    esac
    timeout "$(($3 + TOOL_SLACK_S))" taskset -c "$LOAD_CORE" \
        "$TCPBENCH_BIN" "${args[@]}" --target "127.0.0.1:$2" --seconds "$3" > "$4" 2>&1
}
kv() { awk -F= -v k="$1" '$1 == k { print $2; exit }' "$2"; } # key file -> value

one_run() { # test proxy round attempt
    local test=$1 p=$2 round=$3 attempt=$4 port out pids="" rate amount errs unit_div
    local c0=0 c1=0 e0 e1 proxy_ticks per_cpu proxy_pct
    port=$(proxy_port "$p")
    out="$STATE/$test-$p-$round-$attempt.txt"

    wait_quiet
    if ((WARMUP > 0)); then
        run_tool "$test" "$port" "$WARMUP" "$STATE/warmup.txt" ||
            die "warm-up failed for $p $test: $(tail -n 3 "$STATE/warmup.txt")"
    fi

    [[ $p != direct ]] && pids=$(pids_of "$p")
    # shellcheck disable=SC2086 # pids is a list of numbers
    [[ -z $pids ]] || c0=$(cpu_ticks $pids)
    e0=$(cpu_ticks "${PID_OF[echo]}")
    noise_begin "$LOAD_CORE"

    run_tool "$test" "$port" "$DURATION" "$out" || die "tcpbench $test failed for $p (rc $?): $(tail -n 5 "$out")"

    noise_end "$LOAD_CORE"
    e1=$(cpu_ticks "${PID_OF[echo]}")
    # shellcheck disable=SC2086
    [[ -z $pids ]] || c1=$(cpu_ticks $pids)
    if [[ $p != direct ]] && ! alive "${PID_OF[$p]}"; then
        die "$p died during the run; log tail: $(tail -n 5 "${LOG_OF[$p]}" 2> /dev/null)"
    fi

    errs=$(kv errors "$out")
    if [[ $test == bulk ]]; then
        rate=$(kv mb_per_s "$out")
        amount=$(kv bytes "$out")
        unit_div=1000000 # MB per CPU-second
    else
        rate=$(kv conns_per_s "$out")
        amount=$(kv conns "$out")
        unit_div=1
    fi
    [[ -n $rate && -n $amount && $amount -gt 0 ]] || die "could not parse tcpbench output for $p $test: $(cat "$out")"

    proxy_ticks=$((c1 - c0))
    noise_pcts $((proxy_ticks + e1 - e0))
    if [[ $p == direct ]]; then
        per_cpu="-"
        proxy_pct="-"
    else
        # A proxy that used no tick at all cannot be measured (would divide by zero): say so.
        ((proxy_ticks > 0)) || die "$p used no CPU tick during a $test run: accounting broken?"
        per_cpu=$(awk -v a="$amount" -v d="$unit_div" -v t="$proxy_ticks" -v hz="$CLK_TCK" \
            'BEGIN { printf "%.1f\n", a / d / (t / hz) }')
        proxy_pct=$(awk -v t="$proxy_ticks" -v e="$NOISE_ELAPSED_TICKS" 'BEGIN { printf "%.0f\n", t * 100 / e }')
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$test" "$p" "$round" "$attempt" "$rate" "$amount" "$errs" "$proxy_ticks" "$per_cpu" \
        "$proxy_pct" "$NOISE_FOREIGN_PCT" "$NOISE_LOAD_PCT" \
        "$(awk -v a="$NOISE_T0" -v b="$NOISE_T1" 'BEGIN { printf "%.2f\n", b - a }')" "$NOISE_STEAL_PCT" >> "$RAW"
    log "$(printf '%-8s %-7s round %s.%s  %10s %-7s  %10s per proxy CPU-s  proxy core %3s%%  load core %3s%%  foreign %5s%%  steal %4s%%  errors %s' \
        "$test" "$p" "$round" "$attempt" "$rate" "$([[ $test == bulk ]] && echo MB/s || echo conn/s)" \
        "$per_cpu" "$proxy_pct" "$NOISE_LOAD_PCT" "$NOISE_FOREIGN_PCT" "$NOISE_STEAL_PCT" "$errs")"
}

for test in $TESTS; do
    case "$test" in
        bulk) log "bulk: $BULK_CONNS connections, $BULK_SIZE-byte writes, ${DURATION}s x $ROUNDS rounds, ${WARMUP}s warm-up each" ;;
        connrate) log "connrate: $CONN_THREADS threads of connect/64 B/64 B/close, ${DURATION}s x $ROUNDS rounds, ${WARMUP}s warm-up each" ;;
    esac
    for ((round = 1; round <= ROUNDS; round++)); do
        for p in $PROXIES; do
            run_redo one_run "$test" "$p" "$round"
        done
    done
done

# ---------------------------------------------------------------------------------------------------
# Report: per (test, proxy, round) keep the quietest attempt, then medians over rounds.
KEPT="$STATE/kept.tsv"
keep_quietest "$RAW" 11 14 1 > "$KEPT"

stats() { # test proxy column -> "median min max" over the kept runs
    awk -F'\t' -v t="$1" -v p="$2" -v c="$3" '$1 == t && $2 == p && $c != "-" { print $c }' "$KEPT" | median_min_max
}

{
    echo "corelb TCP mode comparison, $TS"
    echo
    echo "Command: $CMDLINE"
    echo
    echo "Versions:"
    printf '%s' "$VERSIONS"
    echo
    echo "Pinning:"
    echo "$PINNING"
    echo
    echo "Method: tcpbench against its echo server through each proxy (mode tcp, connect timeout" \
        "$CONNECT_TIMEOUT, idle/client/server timeout $IDLE_TIMEOUT, no logging, HAProxy tune.bufsize" \
        "$BUFSIZE_NOTE, corelb's TCP buffer 32 KiB: buffer size drives bulk cost);" \
        "${DURATION}s per run after a" \
        "${WARMUP}s unrecorded warm-up; rounds interleaved ($PROXIES); medians over $ROUNDS round(s), (min-max)" \
        "beside. Per proxy CPU-s = work done in the run / the proxy's utime+stime over the run" \
        "(/proc/PID/stat, all threads). vs HAProxy = corelb's (or direct's) median / HAProxy's: above 1 is" \
        "better. Proxy core % = its CPU over wall time. Foreign % = CPU used on the machine by processes" \
        "other than the proxy, tcpbench and the echo server, in % of one core; steal % = hypervisor steal," \
        "same unit (max over the kept runs; runs with foreign+steal above ${NOISE_PCT}% were redone up to" \
        "${MAX_REDO}x, the quietest kept)."
    for test in $TESTS; do
        echo
        if [[ $test == bulk ]]; then
            echo "== bulk: $BULK_CONNS connections, $BULK_SIZE-byte writes, echo read back at once (MB = 10^6 bytes, one way) =="
            unit="MB/s"
            per="MB/CPU-s"
        else
            echo "== connrate: $CONN_THREADS threads, connect + 64 B + 64 B echo + close =="
            unit="conn/s"
            per="conn/CPU-s"
        fi
        echo
        printf '%-8s %-28s %-10s %-28s %-10s %-7s %-9s %-8s %s\n' proxy "$unit median (min-max)" "vs HAProxy" \
            "$per median (min-max)" "vs HAProxy" "core %" "foreign%" "steal%" errors
        read -r hrate _ _ <<< "$(stats "$test" haproxy 5)"
        read -r hper _ _ <<< "$(stats "$test" haproxy 9)"
        for p in $PROXIES; do
            read -r rmed rmin rmax <<< "$(stats "$test" "$p" 5)"
            read -r cmed cmin cmax <<< "$(stats "$test" "$p" 9)"
            read -r pc _ _ <<< "$(stats "$test" "$p" 10)"
            read -r _ _ fmax <<< "$(stats "$test" "$p" 11)"
            read -r _ _ smax <<< "$(stats "$test" "$p" 14)"
            errs=$(awk -F'\t' -v t="$test" -v p="$p" '$1 == t && $2 == p { e += $7 } END { print e + 0 }' "$KEPT")
            awk -v p="$p" -v rmed="$rmed" -v rmin="$rmin" -v rmax="$rmax" -v hr="$hrate" \
                -v cmed="$cmed" -v cmin="$cmin" -v cmax="$cmax" -v hc="$hper" -v pc="$pc" -v f="$fmax" \
                -v st="$smax" -v e="$errs" '
                function ratio(a, b) { return (a == "-" || b == "-" || b == 0 || p == "haproxy") ? "-" : sprintf("%.2fx", a / b) }
                BEGIN {
                    r = sprintf("%.1f (%.1f-%.1f)", rmed, rmin, rmax)
                    c = (cmed == "-") ? "- (no proxy)" : sprintf("%.1f (%.1f-%.1f)", cmed, cmin, cmax)
                    printf "%-8s %-28s %-10s %-28s %-10s %-7s %-9s %-8s %s\n",
                        p, r, ratio(rmed, hr), c, ratio(cmed, hc), pc, f, st, e
                }'
        done
    done
    noisy=$(awk -F'\t' -v n="$NOISE_PCT" '$11 + $14 > n { c++ } END { print c + 0 }' "$KEPT")
    errored=$(awk -F'\t' '$7 + 0 > 0 { c++ } END { print c + 0 }' "$KEPT")
    if ((noisy > 0)); then
        echo
        echo "NOISY: $noisy kept run(s) had other tenants plus steal using more than ${NOISE_PCT}% of a core;" \
            "their figures (per CPU-s included: caches and scheduling suffer) are not trustworthy. Rerun on a quiet machine."
    fi
    if ((errored > 0)); then
        echo
        echo "ERRORS: $errored kept run(s) saw connection errors (see the raw file)."
    fi
    echo
    echo "Raw runs (every attempt): $(basename "$RAW") beside this file."
} > "$REPORT"

echo
cat "$REPORT"
echo
log "$BENCH_RUNS recorded runs; report: $REPORT; raw: $RAW"
