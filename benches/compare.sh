#!/usr/bin/env bash
# End-to-end comparison: corelb vs HAProxy vs nginx vs direct-to-backend, measured the way
# shared/docs/benchmarking.md says: proxy pinned to core 1, wrk and backends to core 0, rounds
# interleaved (A B C D, A B C D, ...), each run preceded by an unrecorded warm-up, and the figure of
# merit is the proxy's CPU time per request (utime+stime from /proc/PID/stat), not req/s.
#
# Usage: benches/compare.sh [--quick] [--help]      (--quick: DURATION=3 ROUNDS=1, overriding both)
# Environment (defaults in brackets):
#   DURATION [10]   seconds per recorded run        ROUNDS [3]   interleaved rounds
#   WARMUP [2]      seconds of unrecorded warm-up   SIZES ["1k 64k"]  any of: 2 1k 64k
#   PROXIES ["corelb haproxy nginx direct"]         CONNS        override connections for every size
#   BACKEND1_PORT [9101] BACKEND2_PORT [9102] CORELB_PORT [9110] HAPROXY_PORT [9111] NGINX_PORT [9112]
#   CORELB_BIN [target/release/corelb]              RESULTS_DIR [target/bench]
#   NOISE_PCT [10]  foreign CPU (% of one core) above which a run is redone
#   MAX_REDO [1]    redos per run when noisy (the quieter attempt is kept)
#   QUIET_WAIT [20] before each run, wait up to this many seconds for other tenants to go quiet
#   KEEP_STATE [0]  1 keeps the temp dir (configs, logs, raw wrk output) for inspection
#   RATES [""]      open loop instead: each size is run at each of these total request rates with
#                   loadgen -R (e.g. "1000 5000 25000"; CPU per request at partial load, where every
#                   request wakes the proxy; p50/p99 are loadgen's coordinated-omission-corrected ones)
#   LOADGEN_BIN [target/release/loadgen]            used only with RATES
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$SCRIPT_DIR/.." && pwd)"
readonly SCRIPT_DIR REPO_DIR
BENCH_NAME=compare.sh
# shellcheck source=benches/lib.sh
. "$SCRIPT_DIR/lib.sh"

QUICK=0
for arg in "$@"; do
    case "$arg" in
        --quick) QUICK=1 ;;
        -h | --help) bench_usage "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "compare.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
    esac
done
if [[ $QUICK == 1 ]]; then
    DURATION=3
    ROUNDS=1
fi

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-2}
SIZES=${SIZES:-"1k 64k"}
PROXIES=${PROXIES:-"corelb haproxy nginx direct"}
CONNS=${CONNS:-}
BACKEND1_PORT=${BACKEND1_PORT:-9101}
BACKEND2_PORT=${BACKEND2_PORT:-9102}
CORELB_PORT=${CORELB_PORT:-9110}
HAPROXY_PORT=${HAPROXY_PORT:-9111}
NGINX_PORT=${NGINX_PORT:-9112}
CORELB_BIN=${CORELB_BIN:-"$REPO_DIR/target/release/corelb"}
RESULTS_DIR=${RESULTS_DIR:-"$REPO_DIR/target/bench"}
NOISE_PCT=${NOISE_PCT:-10}
MAX_REDO=${MAX_REDO:-1}
QUIET_WAIT=${QUIET_WAIT:-20}
KEEP_STATE=${KEEP_STATE:-0}
RATES=${RATES:-}
LOADGEN_BIN=${LOADGEN_BIN:-"$REPO_DIR/target/release/loadgen"}

# Cores: the proxy gets one core to itself; load generator and backends share the other.
readonly PROXY_CORE=1
readonly LOAD_CORE=0
# wrk gets this much slack past -d before `timeout` kills it (connect storms, slow teardown).
readonly WRK_SLACK_S=30
# Upper bounds on the knobs, so a typo cannot start an hours-long loop.
readonly MAX_ROUNDS=20
readonly MAX_DURATION=600
readonly MAX_RATE=1000000

for v in DURATION ROUNDS WARMUP NOISE_PCT MAX_REDO QUIET_WAIT BACKEND1_PORT BACKEND2_PORT CORELB_PORT \
    HAPROXY_PORT NGINX_PORT; do
    is_uint "${!v}" || die "$v must be a non-negative integer, got '${!v}'"
done
[[ -z $CONNS ]] || is_uint "$CONNS" || die "CONNS must be an integer, got '$CONNS'"
((DURATION >= 1 && DURATION <= MAX_DURATION)) || die "DURATION must be 1..$MAX_DURATION"
((ROUNDS >= 1 && ROUNDS <= MAX_ROUNDS)) || die "ROUNDS must be 1..$MAX_ROUNDS"
((MAX_REDO <= 3)) || die "MAX_REDO must be 0..3"
((QUIET_WAIT <= 600)) || die "QUIET_WAIT must be 0..600"

size_bytes() {
    case "$1" in
        2) echo 2 ;;
        1k) echo 1024 ;;
        64k) echo 65536 ;;
        *) return 1 ;;
    esac
}
# Connections per size, from benchmarking.md: 256 for small bodies, 64 for 64 KiB.
size_conns() {
    if [[ -n $CONNS ]]; then echo "$CONNS"; return; fi
    case "$1" in
        64k) echo 64 ;;
        *) echo 256 ;;
    esac
}
for s in $SIZES; do size_bytes "$s" > /dev/null || die "unknown size '$s' in SIZES (use 2, 1k, 64k)"; done
for p in $PROXIES; do
    case "$p" in corelb | haproxy | nginx | direct) ;; *) die "unknown proxy '$p' in PROXIES" ;; esac
done
[[ -n ${SIZES// /} ]] || die "SIZES is empty"
[[ -n ${PROXIES// /} ]] || die "PROXIES is empty"
for r in $RATES; do
    if ! is_uint "$r" || ((r < 1 || r > MAX_RATE)); then
        die "RATES: '$r' is not a rate in 1..$MAX_RATE req/s"
    fi
done
# At partial load the machine's busy time (/proc/stat) cannot be trusted: it is sampled at each timer
# tick, and the processes here wake on timers aligned with it, so it misses most of their CPU (seen:
# 0.03 s counted for 0.6 s used). Foreign CPU cannot be told apart then, so no run is redone on it.
# The per-process figures stay exact: the kernel scales utime+stime to the scheduler's runtime.
[[ -z $RATES ]] || MAX_REDO=0

# The runs, in order: SIZE (wrk, closed loop) or SIZE@RATE (loadgen, open loop at RATE req/s).
LOADS=""
for s in $SIZES; do
    if [[ -z $RATES ]]; then
        LOADS+=" $s"
    else
        for r in $RATES; do LOADS+=" $s@$r"; done
    fi
done
load_size() { echo "${1%@*}"; }
load_rate() { if [[ $1 == *@* ]]; then echo "${1#*@}"; else echo max; fi; }

has_proxy() { [[ " $PROXIES " == *" $1 "* ]]; }

# ---------------------------------------------------------------------------------------------------
# Tools
bench_init
if [[ -z $RATES ]]; then
    need wrk "apt-get install wrk (or run scripts/bench.sh)"
else
    need jq "apt-get install jq (parses loadgen's --json report)"
    [[ -x $LOADGEN_BIN ]] || die "loadgen binary '$LOADGEN_BIN' not found: run 'cargo build --release -p loadgen' first"
fi
need nginx "apt-get install nginx-light (the backends are nginx)"
has_proxy haproxy && need haproxy "apt-get install haproxy"
if has_proxy corelb; then
    [[ -x $CORELB_BIN ]] || die "corelb binary '$CORELB_BIN' not found: run 'cargo build --release' first"
fi

# ---------------------------------------------------------------------------------------------------
# State, cleanup
bench_state_dir corelb-compare

# ---------------------------------------------------------------------------------------------------
# Ports
port_free_or_die "$BACKEND1_PORT" "backend app1 (BACKEND1_PORT)"
port_free_or_die "$BACKEND2_PORT" "backend app2 (BACKEND2_PORT)"
has_proxy corelb && port_free_or_die "$CORELB_PORT" "corelb (CORELB_PORT)"
has_proxy haproxy && port_free_or_die "$HAPROXY_PORT" "haproxy (HAPROXY_PORT)"
has_proxy nginx && port_free_or_die "$NGINX_PORT" "nginx proxy (NGINX_PORT)"
ALL_PORTS="$BACKEND1_PORT $BACKEND2_PORT"
has_proxy corelb && ALL_PORTS+=" $CORELB_PORT"
has_proxy haproxy && ALL_PORTS+=" $HAPROXY_PORT"
has_proxy nginx && ALL_PORTS+=" $NGINX_PORT"
[[ $(tr ' ' '\n' <<< "$ALL_PORTS" | sort | uniq -d) == "" ]] || die "two services share a port: $ALL_PORTS"

# ---------------------------------------------------------------------------------------------------
# Backends: one nginx, two servers, static files.
DOCROOT="$STATE/www"
mkdir -p "$DOCROOT/app1" "$DOCROOT/app2"
for s in 2 1k 64k; do
    n=$(size_bytes "$s")
    for app in app1 app2; do
        head -c "$n" /dev/zero | tr '\0' 'x' > "$DOCROOT/$app/$s"
    done
done
chmod -R a+rX "$DOCROOT"

BACKEND_PREFIX="$STATE/nginx-backend"
mkdir -p "$BACKEND_PREFIX"
{
    nginx_common "$BACKEND_PREFIX"
    cat << EOF
http {
$(nginx_temp_paths "$BACKEND_PREFIX")
    access_log off;
    default_type application/octet-stream;
    keepalive_requests 100000;
    keepalive_timeout 75s;
    # The backends share core 0 with wrk: keep them cheap so the load side saturates late.
    sendfile on;
    tcp_nodelay on;
    open_file_cache max=16 inactive=600s;
    open_file_cache_valid 600s;
    server {
        listen 127.0.0.1:$BACKEND1_PORT backlog=4096;
        root $DOCROOT/app1;
        location / { add_header X-Served-By app1 always; }
    }
    server {
        listen 127.0.0.1:$BACKEND2_PORT backlog=4096;
        root $DOCROOT/app2;
        location / { add_header X-Served-By app2 always; }
    }
}
EOF
} > "$BACKEND_PREFIX/nginx.conf"

# ---------------------------------------------------------------------------------------------------
# Proxies
write_haproxy_cfg() {
    haproxy_http_cfg "$HAPROXY_PORT"
    cat << EOF
    server app1 127.0.0.1:$BACKEND1_PORT
    server app2 127.0.0.1:$BACKEND2_PORT
EOF
}

NGINX_PROXY_PREFIX="$STATE/nginx-proxy"
write_nginx_proxy_cfg() {
    nginx_proxy_cfg "$NGINX_PROXY_PREFIX" "$NGINX_PORT" "127.0.0.1:$BACKEND1_PORT" "127.0.0.1:$BACKEND2_PORT"
}

write_corelb_cfg() {
    cat << EOF
[global]
grace = "1s"

[[frontend]]
name = "bench"
bind = ["127.0.0.1:$CORELB_PORT"]
default_backend = "app"

[[backend]]
name = "app"

[backend.pool]
max_idle_per_server = 256

[[backend.server]]
name = "app1"
address = "127.0.0.1:$BACKEND1_PORT"

[[backend.server]]
name = "app2"
address = "127.0.0.1:$BACKEND2_PORT"
EOF
}

proxy_port() {
    case "$1" in
        corelb) echo "$CORELB_PORT" ;;
        haproxy) echo "$HAPROXY_PORT" ;;
        nginx) echo "$NGINX_PORT" ;;
        direct) echo "$BACKEND1_PORT" ;;
    esac
}

# ---------------------------------------------------------------------------------------------------
# Sanity probe over a fresh connection: status, X-Served-By, body length.
probe() { # port path -> "status served_by body_bytes"
    local port=$1 path=$2 out="$STATE/probe.out" hdr_bytes total status served
    # shellcheck disable=SC2016 # $1/$2 expand in the inner bash, on purpose
    if ! timeout 5 bash -c '
        exec 3<> "/dev/tcp/127.0.0.1/$1" || exit 1
        printf "GET %s HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n" "$2" >&3
        cat <&3' _ "$port" "$path" > "$out" 2> /dev/null; then
        echo "none - 0"
        return 0
    fi
    total=$(wc -c < "$out")
    hdr_bytes=$(sed -n '1,/^\r$/p' "$out" | wc -c)
    status=$(head -n 1 "$out" | awk '{ print $2 }')
    served=$(sed -n '1,/^\r$/p' "$out" | awk -F': *' 'tolower($1) == "x-served-by" { gsub(/\r/, "", $2); print $2; exit }')
    echo "${status:-none} ${served:--} $((total - hdr_bytes))"
}

check_target() { # proxy
    local p=$1 port s want i status served bytes seen=""
    port=$(proxy_port "$p")
    for s in $SIZES; do
        want=$(size_bytes "$s")
        for ((i = 0; i < 4; i++)); do
            read -r status served bytes <<< "$(probe "$port" "/$s")"
            if [[ $status != 200 || $bytes != "$want" ]]; then
                echo "compare.sh: error: $p on :$port answered GET /$s with status '$status'," \
                    "$bytes body bytes (want 200, $want). Response head:" >&2
                head -c 600 "$STATE/probe.out" >&2 || true
                exit 1
            fi
            seen+=" $served"
        done
    done
    if [[ $p == direct ]]; then
        [[ $seen == *app1* && $seen != *app2* ]] || die "direct probe did not reach app1 only:$seen"
    elif [[ $seen != *app1* || $seen != *app2* ]]; then
        warn "$p sent every probe to one backend ($seen): not round robin?"
    fi
}

# ---------------------------------------------------------------------------------------------------
# Versions and the command that reproduces this run.
TS=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$RESULTS_DIR"
REPORT="$RESULTS_DIR/compare-$TS.md"
RAW="$RESULTS_DIR/compare-$TS.tsv"

CMDLINE=$(printf 'DURATION=%q ROUNDS=%q WARMUP=%q SIZES=%q PROXIES=%q' \
    "$DURATION" "$ROUNDS" "$WARMUP" "$SIZES" "$PROXIES")
[[ -n $CONNS ]] && CMDLINE+=" CONNS=$CONNS"
[[ -n $RATES ]] && CMDLINE+=" RATES=$(printf '%q' "$RATES")"
CMDLINE+=" benches/compare.sh"

VERSIONS=""
if has_proxy corelb; then
    VERSIONS+="- corelb: $(first_line "$CORELB_BIN" --version) ($CORELB_BIN)"$'\n'
fi
if has_proxy haproxy; then
    VERSIONS+="- haproxy: $(first_line haproxy -v)"$'\n'
fi
VERSIONS+="- nginx: $(first_line nginx -v)"$'\n'
if [[ -z $RATES ]]; then
    # wrk -v prints its version then the usage text, and exits 1.
    VERSIONS+="- wrk: $(first_line wrk -v)"$'\n'
    LOAD_TOOL="wrk (-t1)"
else
    VERSIONS+="- loadgen: $(first_line "$LOADGEN_BIN" --version)"$'\n'
    LOAD_TOOL="loadgen (-t 1, open loop)"
fi
VERSIONS+="$(machine_lines)"$'\n'

CORELB_NOTE=""
if has_proxy corelb; then CORELB_NOTE="; corelb runs with --workers 1"; fi
PINNING="- proxy under test: core $PROXY_CORE (taskset -c $PROXY_CORE)$CORELB_NOTE
- $LOAD_TOOL and the backend nginx (1 worker, ports $BACKEND1_PORT/$BACKEND2_PORT): core $LOAD_CORE (taskset -c $LOAD_CORE)"

print_header "corelb end-to-end comparison"

# ---------------------------------------------------------------------------------------------------
# Start everything.
start_bg backend "$LOAD_CORE" "$STATE/backend.log" \
    nginx -p "$BACKEND_PREFIX" -e "$BACKEND_PREFIX/error.log" -c "$BACKEND_PREFIX/nginx.conf"
wait_listening backend "$BACKEND1_PORT" "$BACKEND_PREFIX/error.log"
wait_listening backend "$BACKEND2_PORT" "$BACKEND_PREFIX/error.log"

has_proxy corelb && start_proxy corelb
has_proxy haproxy && start_proxy haproxy
if has_proxy nginx; then
    mkdir -p "$NGINX_PROXY_PREFIX"
    write_nginx_proxy_cfg > "$NGINX_PROXY_PREFIX/nginx.conf"
    start_bg nginx "$PROXY_CORE" "$STATE/nginx-proxy.log" \
        nginx -p "$NGINX_PROXY_PREFIX" -e "$NGINX_PROXY_PREFIX/error.log" \
        -c "$NGINX_PROXY_PREFIX/nginx.conf"
    wait_listening nginx "$NGINX_PORT" "$NGINX_PROXY_PREFIX/error.log"
fi

check_pinning backend
for p in $PROXIES; do check_target "$p"; done
log "all targets answer 200 with the right body sizes"

# ---------------------------------------------------------------------------------------------------
# One run: warm-up, then the recorded run. Appends a line to $RAW.
# Columns: size proxy round attempt conns rps reqs p50_us p99_us errors proxy_ticks cpu_us_per_req
#          proxy_core_pct foreign_pct load_core_pct elapsed_s steal_pct
printf 'size\tproxy\tround\tattempt\tconns\trps\treqs\tp50_us\tp99_us\terrors\tproxy_ticks\tcpu_us_per_req\tproxy_core_pct\tforeign_pct\tload_core_pct\telapsed_s\tsteal_pct\n' > "$RAW"

to_us() { # wrk duration (552.00us, 1.23ms, 1.00s, 1.00m) -> microseconds
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); m = 1 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); m = 1000 }
        else if (v ~ /m$/) { sub(/m$/, "", v); m = 60000000 }
        else if (v ~ /s$/) { sub(/s$/, "", v); m = 1000000 }
        else { print "nan"; exit }
        printf "%.1f\n", v * m
    }'
}

# run_load port load conns seconds outfile: wrk for a closed-loop load, loadgen (JSON report in
# outfile.json) for SIZE@RATE.
run_load() {
    local size rate
    size=$(load_size "$2")
    rate=$(load_rate "$2")
    if [[ $rate == max ]]; then
        timeout "$(($4 + WRK_SLACK_S))" taskset -c "$LOAD_CORE" \
            wrk -t1 -c"$3" -d"$4"s --latency "http://127.0.0.1:$1/$size" > "$5" 2>&1
    else
        timeout "$(($4 + WRK_SLACK_S))" taskset -c "$LOAD_CORE" \
            "$LOADGEN_BIN" run "http://127.0.0.1:$1/$size" -t 1 -c "$3" -d "$4s" --no-pin -R "$rate" \
            --json "$5.json" > "$5" 2>&1
    fi
}

one_run() { # load proxy round attempt
    local load=$1 p=$2 round=$3 attempt=$4 size port conns out pids
    local c0 c1 be0 be1 reqs rps p50 p99 errs proxy_ticks=0 proxy_pct cpu_us
    size=$(load_size "$load")
    port=$(proxy_port "$p")
    conns=$(size_conns "$size")
    out="$STATE/load-$load-$p-$round-$attempt.txt"

    wait_quiet
    run_load "$port" "$load" "$conns" "$WARMUP" "$STATE/warmup.txt" ||
        die "warm-up load failed for $p $load: $(tail -n 3 "$STATE/warmup.txt")"

    pids=""
    [[ $p != direct ]] && pids=$(pids_of "$p")
    c0=0
    # shellcheck disable=SC2086 # pids is a list of numbers
    [[ -z $pids ]] || c0=$(cpu_ticks $pids)
    # shellcheck disable=SC2046
    be0=$(cpu_ticks $(pids_of backend))
    noise_begin "$LOAD_CORE"

    run_load "$port" "$load" "$conns" "$DURATION" "$out" ||
        die "the load run failed for $p $load (rc $?): $(tail -n 5 "$out")"

    noise_end "$LOAD_CORE"
    # shellcheck disable=SC2046
    be1=$(cpu_ticks $(pids_of backend))
    c1=0
    # shellcheck disable=SC2086
    [[ -z $pids ]] || c1=$(cpu_ticks $pids)
    if [[ $p != direct ]] && ! alive "${PID_OF[$p]}"; then
        die "$p died during the run; log tail: $(tail -n 5 "${LOG_OF[$p]}" 2> /dev/null)"
    fi

    if [[ $(load_rate "$load") == max ]]; then
        reqs=$(awk '/ requests in / { print $1; exit }' "$out")
        rps=$(awk '/^Requests\/sec:/ { print $2; exit }' "$out")
        p50=$(to_us "$(awk '$1 == "50%" { print $2; exit }' "$out")")
        p99=$(to_us "$(awk '$1 == "99%" { print $2; exit }' "$out")")
        errs=$(wrk_errors "$out")
    else
        reqs=$(jq -r '.responses' "$out.json")
        rps=$(jq -r '.throughput_rps | . * 10 | round / 10' "$out.json")
        p50=$(jq -r '.latency_corrected.p50_ms * 1000 | . * 10 | round / 10' "$out.json")
        p99=$(jq -r '.latency_corrected.p99_ms * 1000 | . * 10 | round / 10' "$out.json")
        errs=$(jq -r '.errors_total' "$out.json")
    fi
    [[ -n $reqs && $reqs -gt 0 && -n $rps ]] || die "could not parse the load tool's output for $p $load: $(cat "$out")"

    proxy_ticks=$((c1 - c0))
    noise_pcts $((proxy_ticks + be1 - be0))
    if [[ $p == direct ]]; then
        cpu_us="-"
        proxy_pct="-"
    else
        cpu_us=$(awk -v t="$proxy_ticks" -v hz="$CLK_TCK" -v r="$reqs" 'BEGIN { printf "%.2f\n", t * 1e6 / hz / r }')
        proxy_pct=$(awk -v t="$proxy_ticks" -v e="$NOISE_ELAPSED_TICKS" 'BEGIN { printf "%.0f\n", t * 100 / e }')
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$load" "$p" "$round" "$attempt" "$conns" "$rps" "$reqs" "$p50" "$p99" "$errs" \
        "$proxy_ticks" "$cpu_us" "$proxy_pct" "$NOISE_FOREIGN_PCT" "$NOISE_LOAD_PCT" \
        "$(awk -v a="$NOISE_T0" -v b="$NOISE_T1" 'BEGIN { printf "%.2f\n", b - a }')" "$NOISE_STEAL_PCT" >> "$RAW"
    log "$(printf '%-4s %-8s round %s.%s  %9s req/s  p50 %8s us  p99 %9s us  cpu %6s us/req  proxy core %3s%%  load core %3s%%  foreign %5s%%  steal %4s%%  errors %s' \
        "$load" "$p" "$round" "$attempt" "$rps" "$p50" "$p99" "$cpu_us" "$proxy_pct" "$NOISE_LOAD_PCT" "$NOISE_FOREIGN_PCT" "$NOISE_STEAL_PCT" "$errs")"
}

# A noisy run (other tenants used more than NOISE_PCT of a core) is redone up to MAX_REDO times;
# the attempt with the least foreign CPU is the one that counts (see keep_quietest below).
# load_title load: what a SIZE or SIZE@RATE run is, for the log and the report.
load_title() {
    local size rate
    size=$(load_size "$1")
    rate=$(load_rate "$1")
    printf 'body %s (%s B), %s connections' "$size" "$(size_bytes "$size")" "$(size_conns "$size")"
    [[ $rate == max ]] || printf ', open loop at %s req/s' "$rate"
}
for load in $LOADS; do
    log "$(load_title "$load"), ${DURATION}s x $ROUNDS rounds, ${WARMUP}s warm-up each"
    for ((round = 1; round <= ROUNDS; round++)); do
        for p in $PROXIES; do
            run_redo one_run "$load" "$p" "$round"
        done
    done
done

# ---------------------------------------------------------------------------------------------------
# Report: per (size, proxy) keep the quietest attempt of each round, then medians and spread.
KEPT="$STATE/kept.tsv"
keep_quietest "$RAW" 14 17 1 > "$KEPT"

# stats column -> "median min max" over the kept runs of size/proxy.
stats() { # size proxy column
    awk -F'\t' -v s="$1" -v p="$2" -v c="$3" '$1 == s && $2 == p && $c != "-" { print $c }' "$KEPT" | median_min_max
}

{
    echo "# corelb comparison, $TS"
    echo
    echo "Command: \`$CMDLINE\`"
    echo
    echo "Versions:"
    echo
    printf '%s' "$VERSIONS"
    echo
    echo "Pinning:"
    echo
    echo "$PINNING"
    echo
    if [[ -n $RATES ]]; then
        echo "Load: loadgen, one thread, open loop at each rate (a connection pool of the size given);" \
            "p50/p99 are its coordinated-omission-corrected latencies."
        echo
    fi
    echo "Method: $LOAD_TOOL, ${DURATION}s per run after a ${WARMUP}s unrecorded warm-up; rounds interleaved" \
        "($PROXIES); medians over $ROUNDS round(s), (min-max) beside; p50/p99 are the medians of the per-run figures. CPU us/req = the proxy's utime+stime" \
        "(/proc/PID/stat, all its processes and threads) over the run / requests completed." \
        "Proxy core % = that CPU over wall time. Foreign % = CPU used on the machine by processes other" \
        "than proxy, backends and wrk, in % of one core; steal % = hypervisor steal, same unit (max over the kept runs; runs with foreign+steal above ${NOISE_PCT}% were redone" \
        "up to ${MAX_REDO}x, the quietest kept)."
    for size in $LOADS; do
        echo
        echo "## $(load_title "$size")"
        echo
        echo "| proxy | req/s median (min-max) | p50 | p99 | CPU us/req median (min-max) | CPU/req vs HAProxy | proxy core % | foreign % (max) | steal % (max) | errors |"
        echo "|---|---|---|---|---|---|---|---|---|---|"
        read -r hmed _ _ <<< "$(stats "$size" haproxy 12)"
        for p in $PROXIES; do
            read -r rmed rmin rmax <<< "$(stats "$size" "$p" 6)"
            read -r p50 _ _ <<< "$(stats "$size" "$p" 8)"
            read -r p99 _ _ <<< "$(stats "$size" "$p" 9)"
            read -r cmed cmin cmax <<< "$(stats "$size" "$p" 12)"
            read -r pc _ _ <<< "$(stats "$size" "$p" 13)"
            read -r _ _ fmax <<< "$(stats "$size" "$p" 14)"
            read -r _ _ smax <<< "$(stats "$size" "$p" 17)"
            errs=$(awk -F'\t' -v s="$size" -v p="$p" '$1 == s && $2 == p { e += $10 } END { print e + 0 }' "$KEPT")
            awk -v p="$p" -v rmed="$rmed" -v rmin="$rmin" -v rmax="$rmax" -v p50="$p50" -v p99="$p99" \
                -v cmed="$cmed" -v cmin="$cmin" -v cmax="$cmax" -v h="$hmed" -v pc="$pc" -v f="$fmax" -v st="$smax" -v e="$errs" '
                function us(v) { if (v == "-") return "-"; return (v >= 1000) ? sprintf("%.2f ms", v / 1000) : sprintf("%.0f us", v) }
                BEGIN {
                    cpu = (cmed == "-") ? "- (no proxy)" : sprintf("%.2f (%.2f-%.2f)", cmed, cmin, cmax)
                    ratio = (cmed == "-" || h == "-" || h == 0) ? "-" : sprintf("%.2fx", cmed / h)
                    printf "| %s | %.0f (%.0f-%.0f) | %s | %s | %s | %s | %s | %s | %s | %s |\n",
                        p, rmed, rmin, rmax, us(p50), us(p99), cpu, ratio, (pc == "-") ? "-" : pc, f, st, e
                }'
        done
    done
    noisy=$(awk -F'\t' -v n="$NOISE_PCT" '$14 + $17 > n { c++ } END { print c + 0 }' "$KEPT")
    errored=$(awk -F'\t' '$10 + 0 > 0 { c++ } END { print c + 0 }' "$KEPT")
    if [[ -n $RATES ]]; then
        echo
        echo "**Foreign %** is not meaningful in open loop: the machine's busy time is tick-sampled and misses" \
            "timer-driven wake-ups (no run was redone on it). The proxies' own CPU is exact (utime+stime are" \
            "scaled to the scheduler's runtime)."
    elif ((noisy > 0)); then
        echo
        echo "**Noisy:** $noisy kept run(s) had other tenants plus steal using more than ${NOISE_PCT}% of a core;" \
            "their figures (CPU/req included: caches and scheduling suffer) are not trustworthy. Rerun on a quiet machine."
    fi
    if ((errored > 0)); then
        echo
        echo "**Errors:** $errored kept run(s) saw socket errors or non-2xx responses (see the raw file)."
    fi
    echo
    echo "Raw runs (every attempt): \`$(basename "$RAW")\` beside this file."
} > "$REPORT"

echo
cat "$REPORT"
echo
log "$BENCH_RUNS recorded runs; report: $REPORT; raw: $RAW"
