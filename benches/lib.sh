# shellcheck shell=bash
# Shared bash for the comparison benches (sourced, not run): starting pinned servers and stopping only
# those, CPU accounting from /proc, noise (other tenants, steal) and medians. The conventions are those
# of benches/compare.sh (see shared/docs/benchmarking.md): proxy pinned to one core, load and backends
# to the other, the proxy's utime+stime from /proc/PID/stat as the figure of merit.
#
# Before sourcing, set BENCH_NAME (used in messages, e.g. "tcp_compare.sh") and, for wait_quiet,
# NOISE_PCT and QUIET_WAIT. After sourcing, call bench_init (C locale, PATH, CLK_TCK, file limit) and
# install bench_stop_started in the caller's EXIT trap.

: "${BENCH_NAME:?set BENCH_NAME before sourcing benches/lib.sh}"

# Bounds on every wait loop: polls of 0.1 s.
BENCH_START_POLLS=100 # 10 s for a server to start listening
BENCH_STOP_POLLS=50   # 5 s for a process to exit on SIGTERM before SIGKILL

die() { echo "$BENCH_NAME: error: $*" >&2; exit 1; }
log() { echo "[${BENCH_NAME%.sh}] $*"; }
warn() { echo "[${BENCH_NAME%.sh}] WARNING: $*" >&2; }
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

bench_init() {
    # C locale: '.' as the decimal point in $EPOCHREALTIME, awk and sort -g.
    export LC_ALL=C
    # haproxy and nginx live in /usr/sbin, which a non-root PATH on Debian lacks.
    PATH="$PATH:/usr/sbin:/sbin"
    need taskset "apt-get install util-linux"
    need ss "apt-get install iproute2"
    need timeout "apt-get install coreutils"
    NCPU=$(getconf _NPROCESSORS_ONLN)
    ((NCPU >= 2)) || die "need at least 2 CPUs to pin the proxy and the load apart (have $NCPU)"
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
    # taskset execs the command, so $! is the server's own PID. stdin from /dev/null and output to
    # a file: a server must not hold the caller's pipes open (CI waits on them).
    taskset -c "$core" "$@" < /dev/null > "$logf" 2>&1 &
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
parse_children_ticks() { # file -> ticks (second line: children user and sys, e.g. 0m1.230s 0m0.450s)
    awk -v hz="$CLK_TCK" 'NR == 2 {
        t = 0
        for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] }
        printf "%d\n", t * hz + 0.5
    }' "$1"
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

# median_min_max: numbers on stdin, one a line -> "median min max" ("- - -" when none).
median_min_max() {
    sort -g | awk '{ a[NR] = $1 } END {
        if (NR == 0) { print "- - -"; exit }
        m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
        print m, a[1], a[NR]
    }'
}

# Versions of the machine, for reports.
machine_lines() {
    echo "- kernel: $(uname -srm)"
    echo "- cpu: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo) x $NCPU online"
}
