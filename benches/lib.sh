# shellcheck shell=bash
# Shared bash for the benches (sourced, not run): benches/compare.sh, tcp_compare.sh, loadgen_vs_wrk.sh
# and loadgen/stack/bench.sh. Starting pinned servers and stopping only those, CPU accounting from
# /proc, noise (other tenants, steal), redoing noisy runs, medians, and the nginx/HAProxy balancer
# configurations. The conventions are those of benches/compare.sh (see shared/docs/benchmarking.md):
# proxy pinned to one core, load and backends to the other, the proxy's utime+stime from
# /proc/PID/stat as the figure of merit.
#
# Before sourcing, set BENCH_NAME (used in messages, e.g. "tcp_compare.sh"); for wait_quiet and
# run_redo, NOISE_PCT, QUIET_WAIT and MAX_REDO. After sourcing, call bench_init (C locale, PATH,
# CLK_TCK, file limit), then either bench_state_dir (temp STATE and the traps) or, with state of
# your own, call bench_stop_started from your EXIT trap.

: "${BENCH_NAME:?set BENCH_NAME before sourcing benches/lib.sh}"

# Bounds on every wait loop: polls of 0.1 s. A script may raise BENCH_START_POLLS after sourcing
# (servers that connect to a database first start slower).
BENCH_START_POLLS=100 # 10 s for a server to start listening
BENCH_STOP_POLLS=50   # 5 s for a process to exit on SIGTERM before SIGKILL
# CPUs below which bench_init refuses to run; a script that can run unpinned sets 1 after sourcing.
BENCH_MIN_CPUS=2
# start_bg pins with taskset; bench_init clears this on a 1-CPU machine (when BENCH_MIN_CPUS allows).
BENCH_PIN=1

# The tag of log lines, "[compare] ..."; a script may set another after sourcing.
BENCH_TAG=${BENCH_NAME%.sh}

die() { echo "$BENCH_NAME: error: $*" >&2; exit 1; }
log() { echo "[$BENCH_TAG] $*"; }
warn() { echo "[$BENCH_TAG] WARNING: $*" >&2; }
is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
need() { command -v "$1" > /dev/null 2>&1 || die "'$1' not found: $2"; }

# The usage text: the script's header comment, from line 2 to `set -euo`.
bench_usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$1"; }

# first_line cmd...: first line of its output (stdout+stderr), whatever its exit status.
first_line() {
    local out
    out=$("$@" 2>&1) || true
    printf '%s' "${out%%$'\n'*}"
}

# With 1 CPU (when BENCH_MIN_CPUS allows) nothing is pinned and the figures are only indicative.
bench_init() {
    # C locale: '.' as the decimal point in $EPOCHREALTIME, awk and sort -g.
    export LC_ALL=C
    # haproxy and nginx live in /usr/sbin, which a non-root PATH on Debian lacks.
    PATH="$PATH:/usr/sbin:/sbin"
    need taskset "apt-get install util-linux"
    need ss "apt-get install iproute2"
    need timeout "apt-get install coreutils"
    NCPU=$(getconf _NPROCESSORS_ONLN)
    ((NCPU >= BENCH_MIN_CPUS)) || die "need at least $BENCH_MIN_CPUS CPUs to pin the proxy and the load apart (have $NCPU)"
    ((NCPU >= 2)) || BENCH_PIN=0
    CLK_TCK=$(getconf CLK_TCK)
    # A proxy holds two sockets per connection; the load tool and the echo server one each.
    if (($(ulimit -n) < 4096)); then
        ulimit -n "$(ulimit -Hn)" 2> /dev/null || true
    fi
    (($(ulimit -n) >= 1024)) || die "open file limit $(ulimit -n) is too low (need >= 1024)"
}

# ---------------------------------------------------------------------------------------------------
# Processes we started: only these are ever signalled, by PID. LOG_OF is for the sourcing script.
declare -A PID_OF=() # name -> pid of each long-running process we started
declare -A LOG_OF=() # name -> its stdout/stderr file
STARTED_ORDER=()     # names, in start order (stopped in reverse)

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
    for ((i = 0; i < BENCH_STOP_POLLS; i++)); do
        alive "$pid" || break
        sleep 0.1
    done
    if alive "$pid"; then
        warn "$name (pid $pid) ignored SIGTERM for $((BENCH_STOP_POLLS / 10)) s: SIGKILL"
        kill -KILL "$pid" 2> /dev/null || true
    fi
    wait "$pid" 2> /dev/null || true
}

# Stops what start_bg started, newest first. Safe to call twice.
bench_stop_started() {
    local i name
    for ((i = ${#STARTED_ORDER[@]} - 1; i >= 0; i--)); do
        name=${STARTED_ORDER[i]}
        stop_pid "$name" "${PID_OF[$name]}"
    done
    STARTED_ORDER=()
}

# start_bg name core logfile cmd... : run pinned in the background, record the PID.
start_bg() {
    local name=$1 core=$2 logf=$3
    shift 3
    local -a cmd=("$@")
    ((BENCH_PIN)) && cmd=(taskset -c "$core" "$@")
    # A simple command (not a shell function, whose subshell's PID $! would be), and taskset execs
    # the command, so $! is the server's own PID. stdin from /dev/null and output to a file: a
    # server must not hold the caller's pipes open (CI waits on them).
    "${cmd[@]}" < /dev/null > "$logf" 2>&1 &
    PID_OF[$name]=$!
    # shellcheck disable=SC2034 # read by the sourcing script
    LOG_OF[$name]=$logf
    STARTED_ORDER+=("$name")
}

port_free_or_die() { # port what
    if [[ -n $(ss -Hltn "sport = :$1") ]]; then
        echo "$BENCH_NAME: error: port $1 (for $2) is already in use:" >&2
        ss -ltnp "sport = :$1" >&2 || true
        echo "$BENCH_NAME: free it or pick another port with the matching *_PORT variable" >&2
        exit 1
    fi
}

wait_listening() { # name port logfile
    local name=$1 port=$2 logf=$3 i
    for ((i = 0; i < BENCH_START_POLLS; i++)); do
        if ! alive "${PID_OF[$name]}"; then
            echo "$BENCH_NAME: error: $name exited during start-up; its log ($logf):" >&2
            tail -n 20 "$logf" >&2 || true
            exit 1
        fi
        [[ -n $(ss -Hltn "sport = :$port") ]] && return 0
        sleep 0.1
    done
    echo "$BENCH_NAME: error: $name is not listening on $port after $((BENCH_START_POLLS / 10)) s; log:" >&2
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

# Every thread of the process tree must be allowed only its intended core, or the numbers lie
# (a program can override taskset with its own sched_setaffinity).
check_affinity() { # name core
    local name=$1 core=$2 pid t allowed bad=0
    for pid in $(pids_of "$name"); do
        for t in /proc/"$pid"/task/*; do
            allowed=$(awk '/^Cpus_allowed_list/ { print $2 }' "$t/status" 2> /dev/null) || continue
            if [[ -n $allowed && $allowed != "$core" ]]; then
                warn "$name thread ${t##*/} may run on CPUs '$allowed', not $core"
                bad=1
            fi
        done
    done
    return "$bad"
}

# ---------------------------------------------------------------------------------------------------
# CPU accounting

# cpu_ticks pid...: utime+stime summed over the processes (all their threads, exited ones included)
# in clock ticks.
cpu_ticks() {
    local pid stat rest total=0
    local -a fld
    for pid in "$@"; do
        { read -r stat < "/proc/$pid/stat"; } 2> /dev/null || die "process $pid vanished (a server crashed?)"
        rest=${stat##*) }
        read -r -a fld <<< "$rest"
        # fields 14 (utime) and 15 (stime) of proc(5); rest starts at field 3.
        total=$((total + fld[11] + fld[12]))
    done
    echo "$total"
}

# /proc/stat busy ticks: user nice system irq softirq (not steal: the hypervisor's). irq/softirq are
# in because with tick-based accounting (no CONFIG_IRQ_TIME_ACCOUNTING) a tick that lands in a softirq
# is charged to the interrupted task's stime too; loopback TCP does most of its receive work there.
sys_busy_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8; exit }' /proc/stat; }
# Steal: time the hypervisor ran someone else on our vCPUs; a sign the host is busy.
sys_steal_ticks() { awk '$1 == "cpu" { print $9; exit }' /proc/stat; }
core_busy_and_total() { # core -> "busy total"
    awk -v c="cpu$1" '$1 == c { b = $2 + $3 + $4 + $7 + $8; print b, b + $5 + $6 + $9; exit }' /proc/stat
}

# Children's CPU (the load tool) via the shell's own `times`: must run in this shell, not a
# subshell, because a forked subshell starts with zeroed child times.
children_ticks_to() { # file
    times > "$1"
}
# file -> seconds, to the millisecond `times` prints (second line: children user and sys, e.g.
# 0m1.230s 0m0.450s).
parse_children_secs() {
    awk 'NR == 2 {
        t = 0
        for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] }
        printf "%.3f\n", t
    }' "$1"
}
parse_children_ticks() { # file -> ticks
    awk -v t="$(parse_children_secs "$1")" -v hz="$CLK_TCK" 'BEGIN { printf "%d\n", t * hz + 0.5 }'
}

# Noise accounting around one run, in this shell (not a subshell: `times` must see the load tool as
# a child). noise_begin just before the load starts and noise_end just after it ended; then
# noise_pcts OWN, OWN being the ticks our long-running processes (servers, proxy) used in between:
# the load tool and our own commands, children of this shell, are added here. Sets NOISE_T0/NOISE_T1
# ($EPOCHREALTIME), NOISE_ELAPSED_TICKS, NOISE_FOREIGN_PCT and NOISE_STEAL_PCT (% of one core),
# NOISE_LOAD_PCT (busy % of the load core) and BENCH_LAST_NOISE. Uses $STATE for two small files.
noise_begin() { # load_core
    NOISE_SYS0=$(sys_busy_ticks)
    NOISE_ST0=$(sys_steal_ticks)
    read -r NOISE_L0 NOISE_LT0 <<< "$(core_busy_and_total "$1")"
    children_ticks_to "$STATE/times0"
    NOISE_T0=$EPOCHREALTIME
}
noise_end() { # load_core
    NOISE_T1=$EPOCHREALTIME
    children_ticks_to "$STATE/times1"
    read -r NOISE_L1 NOISE_LT1 <<< "$(core_busy_and_total "$1")"
    NOISE_SYS1=$(sys_busy_ticks)
    NOISE_ST1=$(sys_steal_ticks)
}
noise_pcts() { # own_ticks
    local w0 w1 own
    w0=$(parse_children_ticks "$STATE/times0")
    w1=$(parse_children_ticks "$STATE/times1")
    NOISE_ELAPSED_TICKS=$(awk -v a="$NOISE_T0" -v b="$NOISE_T1" -v hz="$CLK_TCK" \
        'BEGIN { printf "%d\n", (b - a) * hz + 0.5 }')
    ((NOISE_ELAPSED_TICKS > 0)) || NOISE_ELAPSED_TICKS=1
    own=$(($1 + w1 - w0))
    NOISE_FOREIGN_PCT=$(awk -v s=$((NOISE_SYS1 - NOISE_SYS0)) -v o="$own" -v e="$NOISE_ELAPSED_TICKS" \
        'BEGIN { printf "%.1f\n", (s - o) * 100 / e }')
    NOISE_STEAL_PCT=$(awk -v s=$((NOISE_ST1 - NOISE_ST0)) -v e="$NOISE_ELAPSED_TICKS" \
        'BEGIN { printf "%.1f\n", s * 100 / e }')
    # shellcheck disable=SC2034 # read by the sourcing script
    NOISE_LOAD_PCT=$(awk -v b=$((NOISE_L1 - NOISE_L0)) -v t=$((NOISE_LT1 - NOISE_LT0)) \
        'BEGIN { if (t > 0) printf "%.0f\n", b * 100 / t; else print "nan" }')
    # Noise = other tenants on this machine + the hypervisor's steal.
    BENCH_LAST_NOISE=$(awk -v f="$NOISE_FOREIGN_PCT" -v s="$NOISE_STEAL_PCT" 'BEGIN { printf "%.1f\n", f + s }')
}

# Between runs our own processes are idle, so busy CPU is other tenants'. Sample it for 1 s and
# wait (at most QUIET_WAIT s) while it is above NOISE_PCT; then go on regardless: the run's own
# foreign % is recorded and shown in the report.
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

# ---------------------------------------------------------------------------------------------------
# Temp state and traps, for a script whose state is a temp dir and the processes start_bg started.
BENCH_CLEANED=0
bench_cleanup() {
    ((BENCH_CLEANED)) && return 0
    BENCH_CLEANED=1
    bench_stop_started
    if [[ ${KEEP_STATE:-0} == 1 ]]; then
        echo "[$BENCH_TAG] state kept in $STATE" >&2
    else
        rm -rf "$STATE"
    fi
}
# bench_state_dir name: STATE = a fresh temp dir, removed on exit unless KEEP_STATE=1; installs the
# traps that stop what we started on exit, SIGINT and SIGTERM.
bench_state_dir() {
    STATE=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
    # nginx workers may drop to 'nobody' when started as root: they must be able to read in it.
    chmod 0755 "$STATE"
    # set -e stops at the first failing command; say where, rather than stopping silently.
    trap 'echo "$BENCH_NAME: error: command failed (exit $?) at line $LINENO: $BASH_COMMAND" >&2' ERR
    trap bench_cleanup EXIT
    trap 'bench_cleanup; exit 130' INT
    trap 'bench_cleanup; exit 143' TERM
}

# ---------------------------------------------------------------------------------------------------
# Rounds: a noisy run is redone, the quietest attempt counts.
BENCH_LAST_NOISE=0 # foreign+steal CPU (% of one core) of the last run; the run function sets it
BENCH_RUNS=0       # runs done, redos included

# run_redo cmd...: runs `cmd... attempt` for attempt 1, 2, ... while the run's BENCH_LAST_NOISE is
# above NOISE_PCT, at most MAX_REDO times more. In this shell (not a subshell): `times` must see the
# load tool as a child of this shell.
run_redo() {
    local attempt
    for ((attempt = 1; attempt <= MAX_REDO + 1; attempt++)); do
        "$@" "$attempt"
        BENCH_RUNS=$((BENCH_RUNS + 1))
        awk -v f="$BENCH_LAST_NOISE" -v n="$NOISE_PCT" 'BEGIN { exit !(f > n) }' || break
        ((attempt <= MAX_REDO)) && log "foreign+steal CPU ${BENCH_LAST_NOISE}% > ${NOISE_PCT}%: redoing"
    done
    return 0
}

# keep_quietest tsv foreign_col steal_col header_lines: per key (columns 1-3: what, who, round) the
# attempt with the least foreign+steal CPU, in no particular order.
keep_quietest() {
    awk -F'\t' -v f="$2" -v s="$3" -v h="$4" 'NR > h {
        k = $1 SUBSEP $2 SUBSEP $3
        if (!(k in best) || $f + $s < bestf[k]) { best[k] = $0; bestf[k] = $f + $s }
    } END { for (k in best) print best[k] }' "$1"
}

# wrk_errors file: socket errors (connect, read, write, timeout) plus non-2xx/3xx responses of a wrk run.
wrk_errors() {
    awk '/Socket errors:/ { gsub(/,/, ""); e += $4 + $6 + $8 + $10 }
         /Non-2xx or 3xx responses:/ { e += $5 }
         END { print e + 0 }' "$1"
}

# median_min_max: numbers on stdin, one a line -> "median min max" ("- - -" when none).
median_min_max() {
    sort -g | awk '{ a[NR] = $1 } END {
        if (NR == 0) { print "- - -"; exit }
        m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
        print m, a[1], a[NR]
    }'
}

# ---------------------------------------------------------------------------------------------------
# Configurations shared by the HTTP benches: the same balancer settings everywhere, so that figures
# from compare.sh and the stack bench describe the same set-ups.

# nginx_common prefix: a private nginx (1 worker, foreground) kept away from /var/lib/nginx and /var/log.
nginx_common() {
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

# nginx_proxy_cfg prefix port server...: nginx as a round-robin HTTP balancer with keep-alive to the
# servers (host:port each).
nginx_proxy_cfg() {
    local prefix=$1 port=$2 srv
    shift 2
    nginx_common "$prefix"
    echo "http {"
    nginx_temp_paths "$prefix"
    cat << EOF
    access_log off;
    keepalive_requests 100000;
    keepalive_timeout 75s;
    upstream app {
EOF
    for srv in "$@"; do echo "        server $srv;"; done
    cat << EOF
        keepalive 64;
        keepalive_requests 100000;
        keepalive_timeout 75s;
    }
    server {
        listen 127.0.0.1:$port backlog=4096;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            # The same job as corelb, which sets X-Forwarded-For/-Proto/-Host on every request.
            proxy_set_header X-Forwarded-For \$remote_addr;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-Host \$host;
            # Stream through memory buffers as HAProxy and corelb do; never spool a large body
            # to a temp file (that would measure the disk, not the proxy).
            proxy_max_temp_file_size 0;
        }
    }
}
EOF
}

# haproxy_http_cfg port: HAProxy as an HTTP balancer (1 thread, keep-alive both sides, logging off
# like the others), up to `balance roundrobin` of backend "app"; the caller appends its servers.
haproxy_http_cfg() {
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
    bind 127.0.0.1:$1
    http-request set-header X-Forwarded-Proto http
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    default_backend app

backend app
    balance roundrobin
EOF
}

# ---------------------------------------------------------------------------------------------------
# The proxy comparisons (compare.sh, tcp_compare.sh): PROXIES, PROXY_CORE, LOAD_CORE, STATE, CORELB_BIN,
# CORELB_PORT, HAPROXY_PORT and the caller's write_corelb_cfg / write_haproxy_cfg.

# print_header title: what the run is, before any number (CMDLINE, VERSIONS, PINNING).
print_header() {
    echo "== $1 =="
    echo "command: $CMDLINE"
    echo "versions:"
    printf '%s' "$VERSIONS"
    echo "pinning:"
    echo "$PINNING"
}

# start_proxy corelb|haproxy: its configuration checked, started on PROXY_CORE, listening.
start_proxy() {
    case "$1" in
        corelb)
            write_corelb_cfg > "$STATE/corelb.toml"
            start_bg corelb "$PROXY_CORE" "$STATE/corelb.log" "$CORELB_BIN" run -c "$STATE/corelb.toml" --workers 1
            wait_listening corelb "$CORELB_PORT" "$STATE/corelb.log"
            ;;
        haproxy)
            write_haproxy_cfg > "$STATE/haproxy.cfg"
            haproxy -c -q -f "$STATE/haproxy.cfg" || die "haproxy rejected $STATE/haproxy.cfg"
            start_bg haproxy "$PROXY_CORE" "$STATE/haproxy.log" haproxy -db -f "$STATE/haproxy.cfg"
            wait_listening haproxy "$HAPROXY_PORT" "$STATE/haproxy.log"
            ;;
        *) die "start_proxy: unknown proxy '$1'" ;;
    esac
}

# check_pinning load_name: the load side on LOAD_CORE, every proxy but "direct" on PROXY_CORE.
check_pinning() {
    local p
    check_affinity "$1" "$LOAD_CORE" || true
    for p in $PROXIES; do
        [[ $p == direct ]] && continue
        check_affinity "$p" "$PROXY_CORE" || log "results for $p are not pinned as claimed"
    done
}

# Versions of the machine, for reports.
machine_lines() {
    echo "- kernel: $(uname -srm)"
    echo "- cpu: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo) x $NCPU online"
}
