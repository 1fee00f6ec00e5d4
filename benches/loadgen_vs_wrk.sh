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

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$SCRIPT_DIR/.." && pwd)"
readonly SCRIPT_DIR REPO_DIR
BENCH_NAME=loadgen_vs_wrk.sh
# shellcheck source=benches/lib.sh
. "$SCRIPT_DIR/lib.sh"
BENCH_TAG=loadgen-vs-wrk
CMDLINE="DURATION=${DURATION:-10} ROUNDS=${ROUNDS:-3} CONNS=${CONNS:-64} OPEN_RATE=${OPEN_RATE:-20000} benches/loadgen_vs_wrk.sh"

for arg in "$@"; do
    case "$arg" in
        -h | --help) bench_usage "${BASH_SOURCE[0]}"; exit 0 ;;
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
# A generator gets this much slack past -d before `timeout` kills it (connects, teardown, its own
# hard end of duration + per-request timeout).
readonly GEN_SLACK_S=30
# Upper bounds on the knobs, so a typo cannot start an hours-long loop.
readonly MAX_ROUNDS=20
readonly MAX_DURATION=600
readonly MAX_CONNS=10000
readonly MAX_OPEN_RATE=1000000

for v in DURATION ROUNDS CONNS NGINX_PORT OPEN_RATE; do
    is_uint "${!v}" || die "$v must be a non-negative integer, got '${!v}'"
done
((DURATION >= 1 && DURATION <= MAX_DURATION)) || die "DURATION must be 1..$MAX_DURATION"
((ROUNDS >= 1 && ROUNDS <= MAX_ROUNDS)) || die "ROUNDS must be 1..$MAX_ROUNDS"
((CONNS >= 1 && CONNS <= MAX_CONNS)) || die "CONNS must be 1..$MAX_CONNS"
((OPEN_RATE <= MAX_OPEN_RATE)) || die "OPEN_RATE must be 0..$MAX_OPEN_RATE"
((NGINX_PORT >= 1 && NGINX_PORT <= 65535)) || die "NGINX_PORT must be 1..65535"

bench_init
need wrk "apt-get install wrk"
need nginx "apt-get install nginx-light"
need jq "apt-get install jq (parses loadgen's --json report)"
[[ -x $LOADGEN_BIN ]] || die "loadgen binary '$LOADGEN_BIN' not found: run 'cargo build --release -p loadgen'"
(($(ulimit -n) >= CONNS + 64)) || die "open file limit $(ulimit -n) is too low for $CONNS connections"

# ---------------------------------------------------------------------------------------------------
# State, cleanup
bench_state_dir loadgen-vs-wrk

port_free_or_die "$NGINX_PORT" "nginx (NGINX_PORT)"

# ---------------------------------------------------------------------------------------------------
# nginx: its own prefix and conf, nothing under /var/lib/nginx or /var/log.
NGX="$STATE/nginx"
mkdir -p "$NGX"
{
    nginx_common "$NGX"
    echo "http {"
    nginx_temp_paths "$NGX"
    cat << EOF
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    server {
        listen 127.0.0.1:$NGINX_PORT backlog=4096;
        location / { return 200 "ok"; }
    }
}
EOF
} > "$NGX/nginx.conf"
# The master's PID (its worker inherits the affinity).
start_bg nginx "$SERVER_CORE" "$NGX/stdout.log" nginx -p "$NGX" -c "$NGX/nginx.conf"
wait_listening nginx "$NGINX_PORT" "$NGX/error.log"
NGINX_PID=${PID_OF[nginx]}
URL="http://127.0.0.1:$NGINX_PORT/"

# ---------------------------------------------------------------------------------------------------
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
    children_ticks_to "$STATE/times0"
    t0=$EPOCHREALTIME
    timeout --kill-after=5 $((DURATION + GEN_SLACK_S)) "${cmd[@]}" < /dev/null > "$out" 2> "$out.err" ||
        die "$tool failed (rc $?): $(tail -n 5 "$out.err" "$out")"
    t1=$EPOCHREALTIME
    children_ticks_to "$STATE/times1"
    read -r l1 lt1 <<< "$(core_busy_and_total "$LOAD_CORE")"
    alive "$NGINX_PID" || die "nginx died during the $tool run: $(tail -n 5 "$NGX/error.log")"
    cpu=$(awk -v a="$(parse_children_secs "$STATE/times0")" -v b="$(parse_children_secs "$STATE/times1")" \
        'BEGIN { printf "%.3f\n", b - a }')
    if [[ $tool == wrk ]]; then
        reqs=$(awk '/ requests in / { print $1; exit }' "$out")
        wall=$(awk '/ requests in / { sub(/s,$/, "", $4); print $4; exit }' "$out")
        errs=$(wrk_errors "$out")
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
    local m
    read -r m _ _ <<< "$(awk -F'\t' -v t="$1" -v c="$2" 'NR > 1 && $1 == t && $c != "-" { print $c }' "$RAW" |
        median_min_max)"
    echo "$m"
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
