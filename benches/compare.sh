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
set -euo pipefail

# C locale: '.' as the decimal point in $EPOCHREALTIME, awk and sort -g.
export LC_ALL=C
# haproxy and nginx live in /usr/sbin, which a non-root PATH on Debian lacks.
PATH="$PATH:/usr/sbin:/sbin"
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$SCRIPT_DIR/.." && pwd)"
readonly SCRIPT_DIR REPO_DIR

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

QUICK=0
for arg in "$@"; do
    case "$arg" in
        --quick) QUICK=1 ;;
        -h | --help) usage; exit 0 ;;
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

# Cores: the proxy gets one core to itself; load generator and backends share the other.
readonly PROXY_CORE=1
readonly LOAD_CORE=0
# Bounds on every wait loop: polls of 0.1 s.
readonly START_POLLS=100 # 10 s for a server to start listening
readonly STOP_POLLS=50   # 5 s for a process to exit on SIGTERM before SIGKILL
# wrk gets this much slack past -d before `timeout` kills it (connect storms, slow teardown).
readonly WRK_SLACK_S=30
# Upper bounds on the knobs, so a typo cannot start an hours-long loop.
readonly MAX_ROUNDS=20
readonly MAX_DURATION=600

die() { echo "compare.sh: error: $*" >&2; exit 1; }
log() { echo "[compare] $*"; }

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
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

has_proxy() { [[ " $PROXIES " == *" $1 "* ]]; }

# ---------------------------------------------------------------------------------------------------
# Tools
need() { command -v "$1" > /dev/null 2>&1 || die "'$1' not found: $2"; }
need wrk "apt-get install wrk (or run scripts/bench.sh)"
need taskset "apt-get install util-linux"
need ss "apt-get install iproute2"
need timeout "apt-get install coreutils"
need nginx "apt-get install nginx-light (the backends are nginx)"
has_proxy haproxy && need haproxy "apt-get install haproxy"
if has_proxy corelb; then
    [[ -x $CORELB_BIN ]] || die "corelb binary '$CORELB_BIN' not found: run 'cargo build --release' first"
fi
NCPU=$(getconf _NPROCESSORS_ONLN)
((NCPU >= 2)) || die "need at least 2 CPUs to pin proxy and load apart (have $NCPU)"
CLK_TCK=$(getconf CLK_TCK)

# Each proxy end holds a client and a backend socket per connection; 256 connections need ~600 fds.
if (($(ulimit -n) < 4096)); then
    ulimit -n "$(ulimit -Hn)" 2> /dev/null || true
fi
(($(ulimit -n) >= 1024)) || die "open file limit $(ulimit -n) is too low (need >= 1024)"

# ---------------------------------------------------------------------------------------------------
# State, cleanup
STATE=$(mktemp -d "${TMPDIR:-/tmp}/corelb-compare.XXXXXX")
# nginx workers may drop to 'nobody' when started as root: they must be able to read the docroot.
chmod 0755 "$STATE"
declare -A PID_OF=()   # name -> pid of each long-running process we started
declare -A LOG_OF=()   # name -> its stdout/stderr file
STARTED_ORDER=()       # names, in start order (stopped in reverse)

# alive pid: the process exists and is not a zombie (our exited children stay zombies until waited
# for, and kill -0 succeeds on a zombie).
alive() {
    local stat
    { read -r stat < "/proc/$1/stat"; } 2> /dev/null || return 1
    stat=${stat##*) }
    [[ ${stat:0:1} != Z ]]
}

stop_pid() { # name pid
    local name=$1 pid=$2 i
    alive "$pid" || { wait "$pid" 2> /dev/null || true; return 0; }
    kill -TERM "$pid" 2> /dev/null || true
    for ((i = 0; i < STOP_POLLS; i++)); do
        alive "$pid" || break
        sleep 0.1
    done
    if alive "$pid"; then
        echo "[compare] $name (pid $pid) ignored SIGTERM for $((STOP_POLLS / 10)) s: SIGKILL" >&2
        kill -KILL "$pid" 2> /dev/null || true
    fi
    wait "$pid" 2> /dev/null || true
}

CLEANED=0
cleanup() {
    ((CLEANED)) && return 0
    CLEANED=1
    local i name
    for ((i = ${#STARTED_ORDER[@]} - 1; i >= 0; i--)); do
        name=${STARTED_ORDER[i]}
        stop_pid "$name" "${PID_OF[$name]}"
    done
    if [[ $KEEP_STATE == 1 ]]; then
        echo "[compare] state kept in $STATE" >&2
    else
        rm -rf "$STATE"
    fi
}
# set -e stops at the first failing command; say where, rather than stopping silently.
trap 'echo "compare.sh: error: command failed (exit $?) at line $LINENO: $BASH_COMMAND" >&2' ERR
trap cleanup EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM

# ---------------------------------------------------------------------------------------------------
# Ports
port_free_or_die() { # port what
    if [[ -n $(ss -Hltn "sport = :$1") ]]; then
        echo "compare.sh: error: port $1 (for $2) is already in use:" >&2
        ss -ltnp "sport = :$1" >&2 || true
        echo "compare.sh: free it or pick another port with the matching *_PORT variable" >&2
        exit 1
    fi
}
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

# start_bg name core logfile cmd... : run pinned in the background, record the PID.
start_bg() {
    local name=$1 core=$2 logf=$3
    shift 3
    # taskset execs the command, so $! is the server's own PID. stdin from /dev/null and output to
    # a file: a server must not hold the caller's pipes open (CI waits on them).
    taskset -c "$core" "$@" < /dev/null > "$logf" 2>&1 &
    PID_OF[$name]=$!
    LOG_OF[$name]=$logf
    STARTED_ORDER+=("$name")
}

wait_listening() { # name port logfile
    local name=$1 port=$2 logf=$3 i
    for ((i = 0; i < START_POLLS; i++)); do
        if ! alive "${PID_OF[$name]}"; then
            echo "compare.sh: error: $name exited during start-up; its log ($logf):" >&2
            tail -n 20 "$logf" >&2 || true
            exit 1
        fi
        [[ -n $(ss -Hltn "sport = :$port") ]] && return 0
        sleep 0.1
    done
    echo "compare.sh: error: $name is not listening on $port after $((START_POLLS / 10)) s; log:" >&2
    tail -n 20 "$logf" >&2 || true
    exit 1
}

# pids_of name: the process and its direct children (nginx master + workers).
pids_of() {
    local root=${PID_OF[$1]} f stat rest ppid
    echo "$root"
    for f in /proc/[0-9]*/stat; do
        { read -r stat < "$f"; } 2> /dev/null || continue # the process may be gone already
        rest=${stat##*) } # comm may hold spaces and ')': cut after the last ')'
        read -r _ ppid _ <<< "$rest"
        if [[ $ppid == "$root" ]]; then
            f=${f#/proc/}
            echo "${f%/stat}"
        fi
    done
}

# cpu_ticks pid...: utime+stime summed over the processes (all their threads) in clock ticks.
cpu_ticks() {
    local pid stat rest total=0
    local -a fld
    for pid in "$@"; do
        { read -r stat < "/proc/$pid/stat"; } 2> /dev/null || die "process $pid vanished (a proxy crashed?)"
        rest=${stat##*) }
        read -r -a fld <<< "$rest"
        # fields 14 (utime) and 15 (stime) of proc(5); rest starts at field 3.
        total=$((total + fld[11] + fld[12]))
    done
    echo "$total"
}

# /proc/stat busy ticks: user nice system irq softirq (not steal: the hypervisor's). irq/softirq are
# in because with tick-based accounting (no CONFIG_IRQ_TIME_ACCOUNTING, as here) a tick that lands in
# a softirq is charged to the interrupted task's stime too; loopback TCP does most of its receive
# work there. Where irq time is accounted apart, our own softirq work shows up as "foreign".
sys_busy_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8; exit }' /proc/stat; }
# Steal: time the hypervisor ran someone else on our vCPUs. Not charged to anyone here, but a sign
# the host is busy (which also slows what does run: shared caches, memory bandwidth).
sys_steal_ticks() { awk '$1 == "cpu" { print $9; exit }' /proc/stat; }
core_busy_and_total() { # core -> "busy total"
    awk -v c="cpu$1" '$1 == c { b = $2 + $3 + $4 + $7 + $8; print b, b + $5 + $6 + $9; exit }' /proc/stat
}

# Children's CPU (wrk) via the shell's own `times`: must run in this shell, not a subshell,
# because a forked subshell starts with zeroed child times.
children_ticks_to() { # file
    times > "$1"
}
parse_children_ticks() { # file -> ticks (second line: children user and sys, e.g. 0m1.230s 0m0.450s)
    awk -v hz="$CLK_TCK" 'NR == 2 {
        t = 0
        for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] }
        printf "%d\n", t * hz + 0.5
    }' "$1"
}

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

nginx_common() { # prefix: settings that keep a private nginx away from /var/lib/nginx and /var/log
    cat << EOF
worker_processes 1;
daemon off;
master_process on;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
EOF
}
nginx_temp_paths() { # prefix
    cat << EOF
    client_body_temp_path $1/client_body;
    proxy_temp_path $1/proxy;
    fastcgi_temp_path $1/fastcgi;
    uwsgi_temp_path $1/uwsgi;
    scgi_temp_path $1/scgi;
EOF
}

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
    cat << EOF
global
    nbthread 1
    maxconn 4096 # fd need is ~2x this; must fit under ulimit -n
    # no 'log' line: logging off, like the others

defaults
    mode http
    option http-keep-alive
    http-reuse always
    # The same job as corelb, which sets X-Forwarded-For/-Proto/-Host on every request (the last
    # two in the frontend: http-request rules are not allowed in an anonymous defaults section).
    option forwardfor
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout http-request 10s
    timeout http-keep-alive 75s

frontend bench
    bind 127.0.0.1:$HAPROXY_PORT
    http-request set-header X-Forwarded-Proto http
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    default_backend app

backend app
    balance roundrobin
    server app1 127.0.0.1:$BACKEND1_PORT
    server app2 127.0.0.1:$BACKEND2_PORT
EOF
}

NGINX_PROXY_PREFIX="$STATE/nginx-proxy"
write_nginx_proxy_cfg() {
    nginx_common "$NGINX_PROXY_PREFIX"
    cat << EOF
http {
$(nginx_temp_paths "$NGINX_PROXY_PREFIX")
    access_log off;
    keepalive_requests 100000;
    keepalive_timeout 75s;
    upstream app {
        server 127.0.0.1:$BACKEND1_PORT;
        server 127.0.0.1:$BACKEND2_PORT;
        keepalive 64;
        keepalive_requests 100000;
        keepalive_timeout 75s;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT backlog=4096;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            # The same job as corelb, which sets X-Forwarded-For/-Proto/-Host on every request.
            proxy_set_header X-Forwarded-For \$remote_addr;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-Host \$host;
            # Stream through memory buffers as HAProxy and corelb do; never spool a 64 KiB body
            # to a temp file (that would measure the disk, not the proxy).
            proxy_max_temp_file_size 0;
        }
    }
}
EOF
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
        echo "[compare] WARNING: $p sent every probe to one backend ($seen): not round robin?" >&2
    fi
}

# Every thread of the process tree must be allowed only its intended core, or the numbers lie
# (a program can override taskset with its own sched_setaffinity).
check_affinity() { # name core
    local name=$1 core=$2 pid t allowed bad=0
    for pid in $(pids_of "$name"); do
        for t in /proc/"$pid"/task/*; do
            allowed=$(awk '/^Cpus_allowed_list/ { print $2 }' "$t/status" 2> /dev/null) || continue
            if [[ -n $allowed && $allowed != "$core" ]]; then
                echo "[compare] WARNING: $name thread ${t##*/} may run on CPUs '$allowed', not $core" >&2
                bad=1
            fi
        done
    done
    return "$bad"
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
CMDLINE+=" benches/compare.sh"

first_line() { # cmd... -> first line of its output (stdout+stderr), whatever its exit status
    local out
    out=$("$@" 2>&1) || true
    printf '%s' "${out%%$'\n'*}"
}
VERSIONS=""
if has_proxy corelb; then
    VERSIONS+="- corelb: $(first_line "$CORELB_BIN" --version) ($CORELB_BIN)"$'\n'
fi
if has_proxy haproxy; then
    VERSIONS+="- haproxy: $(first_line haproxy -v)"$'\n'
fi
VERSIONS+="- nginx: $(first_line nginx -v)"$'\n'
# wrk -v prints its version then the usage text, and exits 1.
VERSIONS+="- wrk: $(first_line wrk -v)"$'\n'
VERSIONS+="- kernel: $(uname -srm)"$'\n'
VERSIONS+="- cpu: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo) x $NCPU online"$'\n'

CORELB_NOTE=""
if has_proxy corelb; then CORELB_NOTE="; corelb runs with --workers 1"; fi
PINNING="- proxy under test: core $PROXY_CORE (taskset -c $PROXY_CORE)$CORELB_NOTE
- wrk (-t1) and the backend nginx (1 worker, ports $BACKEND1_PORT/$BACKEND2_PORT): core $LOAD_CORE (taskset -c $LOAD_CORE)"

echo "== corelb end-to-end comparison =="
echo "command: $CMDLINE"
echo "versions:"
printf '%s' "$VERSIONS"
echo "pinning:"
echo "$PINNING"

# ---------------------------------------------------------------------------------------------------
# Start everything.
start_bg backend "$LOAD_CORE" "$STATE/backend.log" \
    nginx -p "$BACKEND_PREFIX" -e "$BACKEND_PREFIX/error.log" -c "$BACKEND_PREFIX/nginx.conf"
wait_listening backend "$BACKEND1_PORT" "$BACKEND_PREFIX/error.log"
wait_listening backend "$BACKEND2_PORT" "$BACKEND_PREFIX/error.log"

if has_proxy corelb; then
    write_corelb_cfg > "$STATE/corelb.toml"
    start_bg corelb "$PROXY_CORE" "$STATE/corelb.log" \
        "$CORELB_BIN" run -c "$STATE/corelb.toml" --workers 1
    wait_listening corelb "$CORELB_PORT" "$STATE/corelb.log"
fi
if has_proxy haproxy; then
    write_haproxy_cfg > "$STATE/haproxy.cfg"
    haproxy -c -q -f "$STATE/haproxy.cfg" || die "haproxy rejected $STATE/haproxy.cfg"
    start_bg haproxy "$PROXY_CORE" "$STATE/haproxy.log" haproxy -db -f "$STATE/haproxy.cfg"
    wait_listening haproxy "$HAPROXY_PORT" "$STATE/haproxy.log"
fi
if has_proxy nginx; then
    mkdir -p "$NGINX_PROXY_PREFIX"
    write_nginx_proxy_cfg > "$NGINX_PROXY_PREFIX/nginx.conf"
    start_bg nginx "$PROXY_CORE" "$STATE/nginx-proxy.log" \
        nginx -p "$NGINX_PROXY_PREFIX" -e "$NGINX_PROXY_PREFIX/error.log" \
        -c "$NGINX_PROXY_PREFIX/nginx.conf"
    wait_listening nginx "$NGINX_PORT" "$NGINX_PROXY_PREFIX/error.log"
fi

check_affinity backend "$LOAD_CORE" || true
for p in $PROXIES; do
    [[ $p == direct ]] && continue
    check_affinity "$p" "$PROXY_CORE" || log "results for $p are not pinned as claimed"
done
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

run_wrk() { # port size conns seconds outfile
    timeout "$(($4 + WRK_SLACK_S))" taskset -c "$LOAD_CORE" \
        wrk -t1 -c"$3" -d"$4"s --latency "http://127.0.0.1:$1/$2" > "$5" 2>&1
}

# Between runs our own processes are idle, so busy CPU is other tenants'. Sample it for 1 s and
# wait (at most QUIET_WAIT s) while it is above NOISE_PCT; then go on regardless: the run's own
# foreign % is recorded and shown in the table.
wait_quiet() {
    local i b0 b1 pct waited=0
    for ((i = 0; i <= QUIET_WAIT; i++)); do
        b0=$(sys_busy_ticks)
        sleep 1
        b1=$(sys_busy_ticks)
        pct=$(((b1 - b0) * 100 / CLK_TCK))
        ((pct <= NOISE_PCT)) && break
        ((waited == 0)) && log "machine busy (others use ~${pct}% of a core); waiting up to ${QUIET_WAIT}s"
        waited=$((waited + 1))
    done
    if ((waited > 0)); then
        if ((pct <= NOISE_PCT)); then
            log "quiet after ${waited}s"
        else
            log "still busy (${pct}%), running anyway"
        fi
    fi
    return 0
}

LAST_FOREIGN=0
one_run() { # size proxy round attempt
    local size=$1 p=$2 round=$3 attempt=$4 port conns out pids
    local t0 t1 c0 c1 sys0 sys1 st0 st1 steal_pct w0 w1 be0 be1 l0 l1 lt0 lt1 reqs rps p50 p99 errs
    local proxy_ticks=0 own elapsed_ticks foreign_pct proxy_pct cpu_us load_pct
    port=$(proxy_port "$p")
    conns=$(size_conns "$size")
    out="$STATE/wrk-$size-$p-$round-$attempt.txt"

    wait_quiet
    run_wrk "$port" "$size" "$conns" "$WARMUP" "$STATE/warmup.txt" ||
        die "warm-up wrk failed for $p /$size: $(tail -n 3 "$STATE/warmup.txt")"

    pids=""
    [[ $p != direct ]] && pids=$(pids_of "$p")
    c0=0
    # shellcheck disable=SC2086 # pids is a list of numbers
    [[ -z $pids ]] || c0=$(cpu_ticks $pids)
    # shellcheck disable=SC2046
    be0=$(cpu_ticks $(pids_of backend))
    sys0=$(sys_busy_ticks)
    st0=$(sys_steal_ticks)
    read -r l0 lt0 <<< "$(core_busy_and_total "$LOAD_CORE")"
    children_ticks_to "$STATE/times0"
    t0=$EPOCHREALTIME

    run_wrk "$port" "$size" "$conns" "$DURATION" "$out" ||
        die "wrk failed for $p /$size (rc $?): $(tail -n 5 "$out")"

    t1=$EPOCHREALTIME
    children_ticks_to "$STATE/times1"
    read -r l1 lt1 <<< "$(core_busy_and_total "$LOAD_CORE")"
    sys1=$(sys_busy_ticks)
    st1=$(sys_steal_ticks)
    # shellcheck disable=SC2046
    be1=$(cpu_ticks $(pids_of backend))
    c1=0
    # shellcheck disable=SC2086
    [[ -z $pids ]] || c1=$(cpu_ticks $pids)
    if [[ $p != direct ]] && ! alive "${PID_OF[$p]}"; then
        die "$p died during the run; log tail: $(tail -n 5 "${LOG_OF[$p]}" 2> /dev/null)"
    fi
    w0=$(parse_children_ticks "$STATE/times0")
    w1=$(parse_children_ticks "$STATE/times1")

    reqs=$(awk '/ requests in / { print $1; exit }' "$out")
    rps=$(awk '/^Requests\/sec:/ { print $2; exit }' "$out")
    p50=$(to_us "$(awk '$1 == "50%" { print $2; exit }' "$out")")
    p99=$(to_us "$(awk '$1 == "99%" { print $2; exit }' "$out")")
    errs=$(awk '/Socket errors:/ { gsub(/,/, ""); e += $4 + $6 + $8 + $10 }
                /Non-2xx or 3xx responses:/ { e += $5 }
                END { print e + 0 }' "$out")
    [[ -n $reqs && $reqs -gt 0 && -n $rps ]] || die "could not parse wrk output for $p /$size: $(cat "$out")"

    proxy_ticks=$((c1 - c0))
    elapsed_ticks=$(awk -v a="$t0" -v b="$t1" -v hz="$CLK_TCK" 'BEGIN { printf "%d\n", (b - a) * hz + 0.5 }')
    ((elapsed_ticks > 0)) || elapsed_ticks=1
    own=$((proxy_ticks + (be1 - be0) + (w1 - w0)))
    foreign_pct=$(awk -v s=$((sys1 - sys0)) -v o="$own" -v e="$elapsed_ticks" \
        'BEGIN { f = (s - o) * 100 / e; printf "%.1f\n", f }')
    steal_pct=$(awk -v s=$((st1 - st0)) -v e="$elapsed_ticks" 'BEGIN { printf "%.1f\n", s * 100 / e }')
    if [[ $p == direct ]]; then
        cpu_us="-"
        proxy_pct="-"
    else
        cpu_us=$(awk -v t="$proxy_ticks" -v hz="$CLK_TCK" -v r="$reqs" 'BEGIN { printf "%.2f\n", t * 1e6 / hz / r }')
        proxy_pct=$(awk -v t="$proxy_ticks" -v e="$elapsed_ticks" 'BEGIN { printf "%.0f\n", t * 100 / e }')
    fi
    load_pct=$(awk -v b=$((l1 - l0)) -v t=$((lt1 - lt0)) 'BEGIN { if (t > 0) printf "%.0f\n", b * 100 / t; else print "nan" }')

    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$size" "$p" "$round" "$attempt" "$conns" "$rps" "$reqs" "$p50" "$p99" "$errs" \
        "$proxy_ticks" "$cpu_us" "$proxy_pct" "$foreign_pct" "$load_pct" \
        "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f\n", b - a }')" "$steal_pct" >> "$RAW"
    log "$(printf '%-4s %-8s round %s.%s  %9s req/s  p50 %8s us  p99 %9s us  cpu %6s us/req  proxy core %3s%%  load core %3s%%  foreign %5s%%  steal %4s%%  errors %s' \
        "$size" "$p" "$round" "$attempt" "$rps" "$p50" "$p99" "$cpu_us" "$proxy_pct" "$load_pct" "$foreign_pct" "$steal_pct" "$errs")"
    # Noise = other tenants on this machine + the hypervisor's steal.
    LAST_FOREIGN=$(awk -v f="$foreign_pct" -v s="$steal_pct" 'BEGIN { printf "%.1f\n", f + s }')
}

# A noisy run (other tenants used more than NOISE_PCT of a core) is redone up to MAX_REDO times;
# the attempt with the least foreign CPU is the one that counts (see `keep` below).
RUNS_TOTAL=0
for size in $SIZES; do
    log "body $size ($(size_bytes "$size") B), $(size_conns "$size") connections, ${DURATION}s x $ROUNDS rounds, ${WARMUP}s warm-up each"
    for ((round = 1; round <= ROUNDS; round++)); do
        for p in $PROXIES; do
            for ((attempt = 1; attempt <= MAX_REDO + 1; attempt++)); do
                one_run "$size" "$p" "$round" "$attempt"
                RUNS_TOTAL=$((RUNS_TOTAL + 1))
                awk -v f="$LAST_FOREIGN" -v n="$NOISE_PCT" 'BEGIN { exit !(f > n) }' || break
                ((attempt <= MAX_REDO)) && log "foreign+steal CPU ${LAST_FOREIGN}% > ${NOISE_PCT}%: redoing"
            done
        done
    done
done

# ---------------------------------------------------------------------------------------------------
# Report: per (size, proxy) keep the quietest attempt of each round, then medians and spread.
KEPT="$STATE/kept.tsv"
awk -F'\t' 'NR > 1 {
    k = $1 SUBSEP $2 SUBSEP $3
    if (!(k in best) || $14 + $17 < bestf[k]) { best[k] = $0; bestf[k] = $14 + $17 }
} END { for (k in best) print best[k] }' "$RAW" > "$KEPT"

# stats column -> "median min max" over the kept runs of size/proxy.
stats() { # size proxy column
    awk -F'\t' -v s="$1" -v p="$2" -v c="$3" '$1 == s && $2 == p && $c != "-" { print $c }' "$KEPT" |
        sort -g | awk '{ a[NR] = $1 } END {
            if (NR == 0) { print "- - -"; exit }
            m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
            print m, a[1], a[NR]
        }'
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
    echo "Method: wrk -t1 --latency, ${DURATION}s per run after a ${WARMUP}s unrecorded warm-up; rounds interleaved" \
        "($PROXIES); medians over $ROUNDS round(s), (min-max) beside; p50/p99 are the medians of wrk's per-run figures. CPU us/req = the proxy's utime+stime" \
        "(/proc/PID/stat, all its processes and threads) over the run / requests completed." \
        "Proxy core % = that CPU over wall time. Foreign % = CPU used on the machine by processes other" \
        "than proxy, backends and wrk, in % of one core; steal % = hypervisor steal, same unit (max over the kept runs; runs with foreign+steal above ${NOISE_PCT}% were redone" \
        "up to ${MAX_REDO}x, the quietest kept)."
    for size in $SIZES; do
        echo
        echo "## Body $size ($(size_bytes "$size") B), $(size_conns "$size") connections"
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
    if ((noisy > 0)); then
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
log "$RUNS_TOTAL recorded runs; report: $REPORT; raw: $RAW"
