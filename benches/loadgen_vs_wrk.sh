#!/usr/bin/env bash
# Cost of the load generator: requests per generator CPU-second, loadgen vs wrk, against the same fast
# backend (nginx `return 200 "ok"`, 1 worker, pinned to core 1). Both generators run one thread pinned to
# core 0 (taskset -c 0), closed loop with the same connection count, alternating (wrk, loadgen, wrk,
# loadgen, ...) so drift on this shared machine hits both alike. The figure of merit is requests completed
# / generator CPU-seconds, where the CPU is the generator process's whole user+system time (getrusage of
# the waited-for child, via bash `times`), start-up and teardown included, for both tools alike.
# One extra loadgen run in open loop at a fixed rate is printed for reference (not part of the ratio).
#
# Usage: benches/loadgen_vs_wrk.sh [--help]
# Environment (defaults in brackets):
#   DURATION [10]  seconds per run          ROUNDS [3]      alternating rounds
#   CONNS [64]     connections per run      NGINX_PORT [9120]
#   OPEN_RATE [20000]  req/s of the open-loop reference run (0 skips it)
#   LOADGEN_BIN [target/release/loadgen]    KEEP_STATE [0]  1 keeps the temp dir (conf, raw outputs)
set -euo pipefail

# C locale: '.' as the decimal point for awk and sort -g.
export LC_ALL=C
# nginx lives in /usr/sbin, which a non-root PATH on Debian lacks.
PATH="$PATH:/usr/sbin:/sbin"
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$SCRIPT_DIR/.." && pwd)"
readonly SCRIPT_DIR REPO_DIR
CMDLINE="DURATION=${DURATION:-10} ROUNDS=${ROUNDS:-3} CONNS=${CONNS:-64} OPEN_RATE=${OPEN_RATE:-20000} benches/loadgen_vs_wrk.sh"

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
for arg in "$@"; do
    case "$arg" in
        -h | --help) usage; exit 0 ;;
        *) echo "loadgen_vs_wrk.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
    esac
done

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-64}
NGINX_PORT=${NGINX_PORT:-9120}
OPEN_RATE=${OPEN_RATE:-20000}
LOADGEN_BIN=${LOADGEN_BIN:-"$REPO_DIR/target/release/loadgen"}
KEEP_STATE=${KEEP_STATE:-0}

# nginx gets core 1 to itself; the generator under test runs on core 0.
readonly SERVER_CORE=1
readonly LOAD_CORE=0
# Bounds on wait loops: polls of 0.1 s.
readonly START_POLLS=100 # 10 s for nginx to start listening
readonly STOP_POLLS=50   # 5 s for nginx to exit on SIGTERM before SIGKILL
# A generator gets this much slack past -d before `timeout` kills it (connects, teardown, its own
# hard end of duration + per-request timeout).
readonly GEN_SLACK_S=30
# Upper bounds on the knobs, so a typo cannot start an hours-long loop.
readonly MAX_ROUNDS=20
readonly MAX_DURATION=600
readonly MAX_CONNS=10000
readonly MAX_OPEN_RATE=1000000

die() { echo "loadgen_vs_wrk.sh: error: $*" >&2; exit 1; }
log() { echo "[loadgen-vs-wrk] $*"; }

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
for v in DURATION ROUNDS CONNS NGINX_PORT OPEN_RATE; do
    is_uint "${!v}" || die "$v must be a non-negative integer, got '${!v}'"
done
((DURATION >= 1 && DURATION <= MAX_DURATION)) || die "DURATION must be 1..$MAX_DURATION"
((ROUNDS >= 1 && ROUNDS <= MAX_ROUNDS)) || die "ROUNDS must be 1..$MAX_ROUNDS"
((CONNS >= 1 && CONNS <= MAX_CONNS)) || die "CONNS must be 1..$MAX_CONNS"
((OPEN_RATE <= MAX_OPEN_RATE)) || die "OPEN_RATE must be 0..$MAX_OPEN_RATE"
((NGINX_PORT >= 1 && NGINX_PORT <= 65535)) || die "NGINX_PORT must be 1..65535"

need() { command -v "$1" > /dev/null 2>&1 || die "'$1' not found: $2"; }
need wrk "apt-get install wrk"
need nginx "apt-get install nginx-light"
need taskset "apt-get install util-linux"
need ss "apt-get install iproute2"
need timeout "apt-get install coreutils"
need jq "apt-get install jq (parses loadgen's --json report)"
[[ -x $LOADGEN_BIN ]] || die "loadgen binary '$LOADGEN_BIN' not found: run 'cargo build --release -p loadgen'"
NCPU=$(getconf _NPROCESSORS_ONLN)
((NCPU >= 2)) || die "need at least 2 CPUs to pin server and generator apart (have $NCPU)"
if (($(ulimit -n) < 4096)); then
    ulimit -n "$(ulimit -Hn)" 2> /dev/null || true
fi
CLK_TCK=$(getconf CLK_TCK)
(($(ulimit -n) >= CONNS + 64)) || die "open file limit $(ulimit -n) is too low for $CONNS connections"

# ---------------------------------------------------------------------------------------------------
# State, cleanup
STATE=$(mktemp -d "${TMPDIR:-/tmp}/loadgen-vs-wrk.XXXXXX")
chmod 0755 "$STATE"
NGINX_PID=""

# alive pid: exists and is not a zombie (kill -0 succeeds on an unreaped child).
alive() {
    local stat
    { read -r stat < "/proc/$1/stat"; } 2> /dev/null || return 1
    stat=${stat##*) }
    [[ ${stat:0:1} != Z ]]
}

CLEANED=0
cleanup() {
    ((CLEANED)) && return 0
    CLEANED=1
    local i
    if [[ -n $NGINX_PID ]] && alive "$NGINX_PID"; then
        kill -TERM "$NGINX_PID" 2> /dev/null || true
        for ((i = 0; i < STOP_POLLS; i++)); do
            alive "$NGINX_PID" || break
            sleep 0.1
        done
        if alive "$NGINX_PID"; then
            echo "[loadgen-vs-wrk] nginx (pid $NGINX_PID) ignored SIGTERM: SIGKILL" >&2
            kill -KILL "$NGINX_PID" 2> /dev/null || true
        fi
    fi
    [[ -z $NGINX_PID ]] || wait "$NGINX_PID" 2> /dev/null || true
    if [[ $KEEP_STATE == 1 ]]; then
        echo "[loadgen-vs-wrk] state kept in $STATE" >&2
    else
        rm -rf "$STATE"
    fi
}
trap 'echo "loadgen_vs_wrk.sh: error: command failed (exit $?) at line $LINENO: $BASH_COMMAND" >&2' ERR
trap cleanup EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM

if [[ -n $(ss -Hltn "sport = :$NGINX_PORT") ]]; then
    echo "loadgen_vs_wrk.sh: error: port $NGINX_PORT (for nginx) is already in use:" >&2
    ss -ltnp "sport = :$NGINX_PORT" >&2 || true
    die "free it or pick another port with NGINX_PORT"
fi

# ---------------------------------------------------------------------------------------------------
# nginx: its own prefix and conf, nothing under /var/lib/nginx or /var/log.
NGX="$STATE/nginx"
mkdir -p "$NGX"
cat > "$NGX/nginx.conf" << EOF
worker_processes 1;
daemon off;
master_process on;
pid $NGX/nginx.pid;
error_log $NGX/error.log warn;
events { worker_connections 4096; }
http {
    client_body_temp_path $NGX/client_body;
    proxy_temp_path $NGX/proxy;
    fastcgi_temp_path $NGX/fastcgi;
    uwsgi_temp_path $NGX/uwsgi;
    scgi_temp_path $NGX/scgi;
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    server {
        listen 127.0.0.1:$NGINX_PORT backlog=4096;
        location / { return 200 "ok"; }
    }
}
EOF
# taskset execs nginx, so $! is the master's PID (its worker inherits the affinity).
taskset -c "$SERVER_CORE" nginx -p "$NGX" -c "$NGX/nginx.conf" < /dev/null > "$NGX/stdout.log" 2>&1 &
NGINX_PID=$!
for ((i = 0; i < START_POLLS; i++)); do
    alive "$NGINX_PID" || die "nginx exited during start-up: $(tail -n 5 "$NGX/stdout.log" "$NGX/error.log" 2> /dev/null)"
    [[ -n $(ss -Hltn "sport = :$NGINX_PORT") ]] && break
    sleep 0.1
done
[[ -n $(ss -Hltn "sport = :$NGINX_PORT") ]] || die "nginx not listening on $NGINX_PORT after $((START_POLLS / 10)) s"
URL="http://127.0.0.1:$NGINX_PORT/"

# ---------------------------------------------------------------------------------------------------
# Children's CPU via the shell's own `times` (getrusage RUSAGE_CHILDREN of this shell): it must run in
# this shell, not a subshell, which would start with zeroed child times. Second line: children's
# user and sys, e.g. "0m1.230s 0m0.450s". Printed in seconds (resolution: what getrusage gives).
children_cpu_to() { times > "$1"; }
parse_children_cpu() {
    awk 'NR == 2 {
        t = 0
        for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] }
        printf "%.3f\n", t
    }' "$1"
}
core_busy_and_total() { # core -> "busy total" ticks from /proc/stat
    awk -v c="cpu$1" '$1 == c { b = $2 + $3 + $4 + $7 + $8; print b, b + $5 + $6 + $9; exit }' /proc/stat
}

WRK_CMD=(taskset -c "$LOAD_CORE" wrk -t1 "-c$CONNS" "-d${DURATION}s" "$URL")
# Pinned by taskset, the same as wrk; --no-pin so loadgen does not re-pin its thread itself (it would
# pick the same, only allowed, CPU: this only keeps the two set-ups literally identical).
LG_CMD=(taskset -c "$LOAD_CORE" "$LOADGEN_BIN" run "$URL" -t 1 -c "$CONNS" -d "${DURATION}s" --no-pin)
OPEN_CMD=(taskset -c "$LOAD_CORE" "$LOADGEN_BIN" run "$URL" -t 1 -c "$CONNS" -d "${DURATION}s" --no-pin -R "$OPEN_RATE")

RAW="$STATE/raw.tsv"
printf 'tool\tround\trequests\twall_s\trps\tcpu_s\treq_per_cpu_s\tload_core_pct\tself_cpu_s\terrors\tforeign_pct\n' > "$RAW"

# one_run tool round: run one generator in the foreground, record requests and CPU.
one_run() {
    local tool=$1 round=$2 out t0 t1 foreign l0 lt0 l1 lt1 reqs wall cpu errs self="-"
    local -a cmd
    out="$STATE/$tool-$round.out"
    case "$tool" in
        wrk) cmd=("${WRK_CMD[@]}") ;;
        loadgen) cmd=("${LG_CMD[@]}" --json "$out.json") ;;
        loadgen-open) cmd=("${OPEN_CMD[@]}" --json "$out.json") ;;
        *) die "unknown tool $tool" ;;
    esac
    read -r l0 lt0 <<< "$(core_busy_and_total "$LOAD_CORE")"
    children_cpu_to "$STATE/times0"
    t0=$EPOCHREALTIME
    timeout --kill-after=5 $((DURATION + GEN_SLACK_S)) "${cmd[@]}" < /dev/null > "$out" 2> "$out.err" ||
        die "$tool failed (rc $?): $(tail -n 5 "$out.err" "$out")"
    t1=$EPOCHREALTIME
    children_cpu_to "$STATE/times1"
    read -r l1 lt1 <<< "$(core_busy_and_total "$LOAD_CORE")"
    alive "$NGINX_PID" || die "nginx died during the $tool run: $(tail -n 5 "$NGX/error.log")"
    cpu=$(awk -v a="$(parse_children_cpu "$STATE/times0")" -v b="$(parse_children_cpu "$STATE/times1")" \
        'BEGIN { printf "%.3f\n", b - a }')
    if [[ $tool == wrk ]]; then
        reqs=$(awk '/ requests in / { print $1; exit }' "$out")
        wall=$(awk '/ requests in / { sub(/s,$/, "", $4); print $4; exit }' "$out")
        errs=$(awk '/Socket errors:/ { gsub(/,/, ""); e += $4 + $6 + $8 + $10 }
                    /Non-2xx or 3xx responses:/ { e += $5 }
                    END { print e + 0 }' "$out")
    else
        reqs=$(jq -r '.responses' "$out.json")
        wall=$(jq -r '.window_seconds' "$out.json")
        errs=$(jq -r '.errors_total' "$out.json")
        self=$(jq -r '.cpu.cpu_seconds | . * 1000 | round / 1000' "$out.json")
    fi
    # Foreign: CPU on the load core not used by the generator (other tenants of this shared machine),
    # in % of the core over the run. /proc/stat is tick-sampled, so a few % either way is noise.
    foreign=$(awk -v b=$((l1 - l0)) -v hz="$CLK_TCK" -v c="$cpu" -v a="$t0" -v z="$t1" \
        'BEGIN { w = z - a; if (w > 0) printf "%.0f", (b / hz - c) * 100 / w; else print "nan" }')
    [[ -n $reqs && $reqs =~ ^[0-9]+$ && $reqs -gt 0 ]] || die "could not parse $tool output: $(head -c 2000 "$out")"
    awk -v c="$cpu" 'BEGIN { exit !(c > 0) }' || die "$tool used no measurable CPU (times: $(cat "$STATE/times1"))"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$round" "$reqs" "$wall" \
        "$(awk -v r="$reqs" -v w="$wall" 'BEGIN { printf "%.0f", r / w }')" "$cpu" \
        "$(awk -v r="$reqs" -v c="$cpu" 'BEGIN { printf "%.0f", r / c }')" \
        "$(awk -v b=$((l1 - l0)) -v t=$((lt1 - lt0)) 'BEGIN { if (t > 0) printf "%.0f", b * 100 / t; else print "nan" }')" \
        "$self" "$errs" "$foreign" >> "$RAW"
    log "$(tail -n 1 "$RAW" | awk -F'\t' '{ printf "%-12s round %s  %8s req/s  %8s requests  gen CPU %6s s  %7s req/CPU-s  load core %3s%% (foreign %3s%%)  errors %s", $1, $2, $5, $3, $6, $7, $8, $11, $10 }')"
}

log "nginx pid $NGINX_PID on core $SERVER_CORE, $URL; generators on core $LOAD_CORE; ${DURATION}s x $ROUNDS rounds, $CONNS connections"
# One short unrecorded warm-up of each, so neither pays for cold caches / first page faults alone.
timeout 20 taskset -c "$LOAD_CORE" wrk -t1 "-c$CONNS" -d1s "$URL" > /dev/null 2>&1 || die "warm-up wrk failed"
timeout 20 taskset -c "$LOAD_CORE" "$LOADGEN_BIN" run "$URL" -t 1 -c "$CONNS" -d 1s --no-pin > /dev/null 2>&1 ||
    die "warm-up loadgen failed"

for ((round = 1; round <= ROUNDS; round++)); do
    # Alternate which goes first, so neither always follows the other.
    if ((round % 2)); then
        one_run wrk "$round"
        one_run loadgen "$round"
    else
        one_run loadgen "$round"
        one_run wrk "$round"
    fi
done
if ((OPEN_RATE > 0)); then
    one_run loadgen-open 1
fi

# ---------------------------------------------------------------------------------------------------
# Report
median() { # tool column
    awk -F'\t' -v t="$1" -v c="$2" 'NR > 1 && $1 == t && $c != "-" { print $c }' "$RAW" |
        sort -g | awk '{ a[NR] = $1 } END {
            if (NR == 0) { print "-"; exit }
            print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
        }'
}

echo
echo "# loadgen vs wrk: requests per generator CPU-second ($(date -u '+%Y-%m-%d %H:%M UTC'))"
echo
echo "Command: \`$CMDLINE\`"
echo
echo "Versions: $("$LOADGEN_BIN" --version); $(wrk -v 2>&1 | head -n 1 | awk '{ print "wrk", $2 }'); $(nginx -v 2>&1 | sed 's/^nginx version: //'); kernel $(uname -r); $NCPU CPUs"
echo
echo "Server: nginx, 1 worker, \`location / { return 200 \"ok\"; }\`, access_log off, keepalive_requests 1000000, pinned to core $SERVER_CORE (taskset)."
echo
echo "Generators (pinned to core $LOAD_CORE, alternating, ${ROUNDS} round(s) of ${DURATION}s):"
echo
echo "    ${WRK_CMD[*]}"
echo "    ${LG_CMD[*]} --json FILE"
echo
echo "Generator CPU = user+system of the whole generator process (getrusage of the reaped child), start-up"
echo "and teardown included. req/CPU-s = requests completed / that CPU. Load core % = core $LOAD_CORE busy over"
echo "the run; foreign % = the part of it not used by the generator (other tenants: the generator could not"
echo "have its core to itself; /proc/stat is tick-sampled, a few % is noise). loadgen self CPU = its own report's figure (measured window)."
echo
echo "| run | round | req/s | requests | gen CPU s | req/CPU-s | load core % | foreign % | loadgen self CPU s | errors |"
echo "|---|---|---|---|---|---|---|---|---|---|"
awk -F'\t' 'NR > 1 && $1 != "loadgen-open" { printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $5, $3, $6, $7, $8, $11, $9, $10 }' "$RAW"
echo
echo "| medians | req/s | gen CPU s | req/CPU-s |"
echo "|---|---|---|---|"
for tool in wrk loadgen; do
    echo "| $tool | $(median "$tool" 5) | $(median "$tool" 6) | $(median "$tool" 7) |"
done
ratio=$(awk -v l="$(median loadgen 7)" -v w="$(median wrk 7)" 'BEGIN { printf "%.2f", l / w }')
echo
echo "**Ratio loadgen/wrk (median req per generator CPU-second): ${ratio}x** (goal >= 1.00x, project goal 1.20x)"
if ((OPEN_RATE > 0)); then
    echo
    echo "Open-loop reference (not part of the ratio; one run, same pinning):"
    echo
    echo "    ${OPEN_CMD[*]} --json FILE"
    echo
    f="$STATE/loadgen-open-1.out.json"
    awk -F'\t' -v rate="$OPEN_RATE" -v late="$(jq -r '.late_sends' "$f")" -v unsent="$(jq -r '.unsent' "$f")" \
        '$1 == "loadgen-open" { printf "loadgen OPEN LOOP -R %s: %s req/s achieved, %s requests, gen CPU %s s, %s req/CPU-s, load core %s%% (foreign %s%%), late sends (> 1 ms behind schedule) %s, unsent %s, errors %s\n", rate, $5, $3, $6, $7, $8, $11, late, unsent, $10 }' "$RAW"
fi
