#!/usr/bin/env bash
# The seed-stack benchmark: MariaDB primary + replica, two app nodes, and a load balancer in front
# (corelb, HAProxy or nginx, round robin with keep-alive to the app nodes), driven by loadgen with the
# standard scenario (90 % GET /items/{id} from the replica, 10 % POST /items to the primary).
# Per balancer: closed-loop runs (-c 64) find the maximum throughput, then open-loop runs at 50 %
# and 80 % of its median measure latency without coordinated omission. The balancer's CPU per request
# is its utime+stime (/proc/PID/stat, all its processes and threads) over the measured window.
# Noise discipline of benches/compare.sh: ROUNDS rounds with the balancers interleaved (corelb haproxy
# nginx, corelb haproxy nginx, ...), first the closed-loop runs, then the open-loop runs; before each
# run a wait for other tenants to go quiet; each run's foreign CPU (not ours) and steal recorded, a
# noisy run redone and the quieter attempt kept; medians (min-max) over the rounds reported.
#
# Usage: loadgen/stack/bench.sh [--balancer corelb|haproxy|nginx]... [--quick] [--keep] [--down] [--help]
#   --balancer B   balancer(s) to measure, repeatable or a comma list (default corelb)
#   --quick        DURATION=3 ROUNDS=1 (overriding both) and one open-loop run at 50 %
#   --keep         leave the stack (MariaDB, app nodes, balancers) running on exit; the next run
#                  stops the kept app nodes and balancers first (their PIDs are in the state dir)
#   --down         stop what a --keep run left (app nodes, balancers, MariaDB pair) and exit
#   --db-direct    app nodes connect straight to MariaDB; by default they go through a corelb of the
#                  database tier (configs/mysql.toml: TCP frontends with MySQL-aware checks, writes to
#                  the writable server, reads to replicas within the lag bound), pinned with the app nodes
# Environment (defaults in brackets):
#   DURATION [10]  measured seconds per run       WARMUP [2]  unrecorded seconds before each
#   ROUNDS [3]     interleaved rounds (medians over them)
#   NOISE_PCT [10]  foreign+steal CPU (% of one core) above which a run is redone
#   MAX_REDO [1]    redos per run when noisy (the quieter attempt is kept)
#   QUIET_WAIT [20] before each run, wait up to this many seconds for other tenants to go quiet
#   RESULTS_DIR [target/stack-bench/<timestamp>]  JSON, .hgrm, CSV, SVG and text reports
#   CORELB_STACK_DIR [/tmp/corelb-bench-stack]   MariaDB state (see loadgen/stack/mariadb.sh)
#   CORELB_PRIMARY_PORT [13316] CORELB_REPLICA_PORT [13317]
#   APP1_PORT [18101] APP2_PORT [18102] APP_THREADS [600]
#   CORELB_PORT [18110] HAPROXY_PORT [18111] NGINX_PORT [18112]
#   DB_WRITER_PORT [18120] DB_READER_PORT [18121]  the database tier corelb's frontends
#   OPEN_CONNS [128]  connection pool of the open-loop runs
#   CORELB_BIN, LOADGEN_BIN, APPNODE_BIN  binaries to run, all three or none [target/release/*, built
#                  with 'cargo build --release --workspace' when missing]
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$SCRIPT_DIR/../.." && pwd)"
readonly SCRIPT_DIR REPO_DIR
# Process start/stop, CPU accounting, noise and medians: the helpers of benches/compare.sh.
BENCH_NAME=bench.sh
# shellcheck source=benches/lib.sh
. "$REPO_DIR/benches/lib.sh"
# App nodes connect to the database before they listen.
BENCH_START_POLLS=150 # 15 s for a server to start listening
# Unpinned on 1 CPU (figures indicative only) rather than refusing to run.
BENCH_MIN_CPUS=1

QUICK=0
KEEP=0
DOWN=0
DB_DIRECT=0
BALANCERS=()
while (($# > 0)); do
    case "$1" in
        --quick) QUICK=1 ;;
        --keep) KEEP=1 ;;
        --down) DOWN=1 ;;
        --db-direct) DB_DIRECT=1 ;;
        --balancer)
            (($# >= 2)) || die "--balancer needs a value (corelb, haproxy or nginx)"
            IFS=',' read -r -a more <<< "$2"
            BALANCERS+=("${more[@]}")
            shift
            ;;
        --balancer=*)
            IFS=',' read -r -a more <<< "${1#--balancer=}"
            BALANCERS+=("${more[@]}")
            ;;
        -h | --help) bench_usage "${BASH_SOURCE[0]}"; exit 0 ;;
        *) die "unknown argument '$1' (try --help)" ;;
    esac
    shift
done
((${#BALANCERS[@]} > 0)) || BALANCERS=(corelb)
# Deduplicate, keep the order given.
declare -A SEEN=()
UNIQ=()
for b in "${BALANCERS[@]}"; do
    case "$b" in corelb | haproxy | nginx) ;; *) die "unknown balancer '$b' (use corelb, haproxy, nginx)" ;; esac
    [[ -n ${SEEN[$b]:-} ]] && continue
    SEEN[$b]=1
    UNIQ+=("$b")
done
BALANCERS=("${UNIQ[@]}")

if ((QUICK)); then
    DURATION=3
    ROUNDS=1
    LOADS=(50)
else
    LOADS=(50 80)
fi
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
NOISE_PCT=${NOISE_PCT:-10}
MAX_REDO=${MAX_REDO:-1}
QUIET_WAIT=${QUIET_WAIT:-20}
WARMUP=${WARMUP:-2}
export CORELB_STACK_DIR=${CORELB_STACK_DIR:-/tmp/corelb-bench-stack}
export CORELB_PRIMARY_PORT=${CORELB_PRIMARY_PORT:-13316}
export CORELB_REPLICA_PORT=${CORELB_REPLICA_PORT:-13317}
APP1_PORT=${APP1_PORT:-18101}
APP2_PORT=${APP2_PORT:-18102}
APP_THREADS=${APP_THREADS:-600}
CORELB_PORT=${CORELB_PORT:-18110}
DB_WRITER_PORT=${DB_WRITER_PORT:-18120}
DB_READER_PORT=${DB_READER_PORT:-18121}
HAPROXY_PORT=${HAPROXY_PORT:-18111}
NGINX_PORT=${NGINX_PORT:-18112}
OPEN_CONNS=${OPEN_CONNS:-128}
# The closed loop's concurrency: enough to saturate a 2-core stack, few enough to keep the app
# nodes' worker pools (APP_THREADS) far from full.
readonly CLOSED_CONNS=64
# Bounds on the knobs, so a typo cannot start an hours-long run.
readonly MAX_DURATION=600
readonly MAX_ROUNDS=20
# Bound on the replication wait: polls of 0.1 s.
readonly REPL_POLLS=300 # 30 s for the replica to catch up with the run's writes
# loadgen gets this much slack past warm-up + duration before `timeout` kills it (its own hard end
# is duration + request timeout).
readonly LOADGEN_SLACK_S=30

for v in DURATION ROUNDS NOISE_PCT MAX_REDO QUIET_WAIT WARMUP APP1_PORT APP2_PORT APP_THREADS CORELB_PORT HAPROXY_PORT NGINX_PORT OPEN_CONNS \
    DB_WRITER_PORT DB_READER_PORT; do
    is_uint "${!v}" || die "$v must be a non-negative integer, got '${!v}'"
done
((DURATION >= 1 && DURATION <= MAX_DURATION)) || die "DURATION must be 1..$MAX_DURATION"
((WARMUP <= 60)) || die "WARMUP must be 0..60"
((ROUNDS >= 1 && ROUNDS <= MAX_ROUNDS)) || die "ROUNDS must be 1..$MAX_ROUNDS"
((MAX_REDO <= 3)) || die "MAX_REDO must be 0..3"
((QUIET_WAIT <= 600)) || die "QUIET_WAIT must be 0..600"
((OPEN_CONNS >= 1 && OPEN_CONNS < APP_THREADS)) || die "OPEN_CONNS must be 1..$((APP_THREADS - 1))"

has_balancer() { [[ " ${BALANCERS[*]} " == *" $1 "* ]]; }

# ---------------------------------------------------------------------------------------------------
# Tools and binaries
bench_init
need jq "install it with: apt-get install -y jq"
need mariadb "install it with: apt-get install -y mariadb-server mariadb-client"
has_balancer haproxy && need haproxy "install it with: apt-get install -y haproxy"
has_balancer nginx && need nginx "install it with: apt-get install -y nginx-light"

RELEASE="$REPO_DIR/target/release"
if [[ -n ${CORELB_BIN:-}${LOADGEN_BIN:-}${APPNODE_BIN:-} ]]; then
    # Binaries given (the stack-bench test runs its debug builds): used as they are, never built here.
    for v in CORELB_BIN LOADGEN_BIN APPNODE_BIN; do
        [[ -x ${!v:-} ]] || die "$v='${!v:-}' is not an executable (set all three, or none for $RELEASE)"
    done
    log "using the binaries given: $CORELB_BIN $LOADGEN_BIN $APPNODE_BIN"
elif [[ -x $RELEASE/corelb && -x $RELEASE/loadgen && -x $RELEASE/appnode ]]; then
    log "using the existing release binaries in $RELEASE (run 'cargo build --release --workspace' to refresh them)"
else
    need cargo "https://rustup.rs (then rerun)"
    log "release binaries missing: running 'cargo build --release --workspace'"
    (cd "$REPO_DIR" && cargo build --release --workspace)
fi
CORELB_BIN=${CORELB_BIN:-$RELEASE/corelb}
LOADGEN_BIN=${LOADGEN_BIN:-$RELEASE/loadgen}
APPNODE_BIN=${APPNODE_BIN:-$RELEASE/appnode}
readonly CORELB_BIN LOADGEN_BIN APPNODE_BIN

# The balancer gets a core to itself; load generator, app nodes and MariaDB share the other.
readonly LB_CORE=1
readonly LOAD_CORE=0
PIN=$BENCH_PIN

# ---------------------------------------------------------------------------------------------------
# State and cleanup
TS=$(date -u +%Y%m%dT%H%M%SZ)
RESULTS_DIR=${RESULTS_DIR:-"$REPO_DIR/target/stack-bench/$TS"}
if ((DOWN == 0)); then
    mkdir -p "$RESULTS_DIR"
    RESULTS_DIR=$(cd "$RESULTS_DIR" && pwd)
fi
STATE="$RESULTS_DIR/state"
if ((DOWN == 0)); then
    mkdir -p "$STATE"
    # nginx workers may drop to 'nobody' when started as root.
    chmod 0755 "$STATE"
fi

LOADGEN_PID=""       # the loadgen run in progress, if any
DB_STARTED=0         # 1 when this script brought MariaDB up (then it takes it down)

CLEANED=0
cleanup() {
    ((CLEANED)) && return 0
    CLEANED=1
    local name
    # An interrupted run: its loadgen (under `timeout`) is ours too.
    [[ -z $LOADGEN_PID ]] || stop_pid loadgen "$LOADGEN_PID"
    if ((KEEP)); then
        if [[ -d $CORELB_STACK_DIR ]]; then
            for name in "${STARTED_ORDER[@]}"; do
                echo "$name ${PID_OF[$name]} $(tr '\0' ' ' < "/proc/${PID_OF[$name]}/cmdline" 2> /dev/null | cut -d' ' -f1-3)"
                # Whether the MariaDB pair was brought up by bench.sh (then a later run takes it down).
                echo "mariadb-pair $DB_STARTED"
            done > "$KEPT_FILE" || true
        fi
        echo "[bench] --keep: leaving running (stop with: $0 --down):" >&2
        for name in "${STARTED_ORDER[@]}"; do echo "[bench]   $name pid ${PID_OF[$name]}" >&2; done
        echo "[bench]   MariaDB pair in $CORELB_STACK_DIR (stop: CORELB_STACK_DIR=$CORELB_STACK_DIR $SCRIPT_DIR/mariadb.sh down)" >&2
        return 0
    fi
    bench_stop_started
    if ((DB_STARTED)); then
        "$SCRIPT_DIR/mariadb.sh" down >&2 || echo "[bench] mariadb.sh down failed" >&2
    fi
}
trap 'echo "bench.sh: error: command failed (exit $?) at line $LINENO: $BASH_COMMAND" >&2' ERR
trap cleanup EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM

# ---------------------------------------------------------------------------------------------------
# What an earlier --keep run left: stopped by PID, only when the PID still runs the same command.
KEPT_FILE="$CORELB_STACK_DIR/bench-kept.pids"
stop_kept() {
    local name pid cmd now
    [[ -r $KEPT_FILE ]] || return 0
    while read -r name pid cmd; do
        if [[ $name == mariadb-pair ]]; then
            [[ $pid == 1 ]] && DB_KEPT=1
            continue
        fi
        is_uint "$pid" || continue
        now=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2> /dev/null | cut -d' ' -f1-3) || continue
        if [[ -n $cmd && $now == "$cmd" ]]; then
            log "stopping $name (pid $pid) left by an earlier --keep run"
            stop_pid "$name" "$pid"
        fi
    done < "$KEPT_FILE"
    rm -f "$KEPT_FILE"
}
DB_KEPT=0
stop_kept
if ((DOWN)); then
    "$SCRIPT_DIR/mariadb.sh" down
    exit 0
fi

# ---------------------------------------------------------------------------------------------------
# Ports
port_free_or_die "$APP1_PORT" "app node app1 (APP1_PORT)"
port_free_or_die "$APP2_PORT" "app node app2 (APP2_PORT)"
has_balancer corelb && port_free_or_die "$CORELB_PORT" "corelb (CORELB_PORT)"
has_balancer haproxy && port_free_or_die "$HAPROXY_PORT" "haproxy (HAPROXY_PORT)"
has_balancer nginx && port_free_or_die "$NGINX_PORT" "nginx (NGINX_PORT)"
((DB_DIRECT)) || port_free_or_die "$DB_WRITER_PORT" "the database tier corelb (DB_WRITER_PORT)"
((DB_DIRECT)) || port_free_or_die "$DB_READER_PORT" "the database tier corelb (DB_READER_PORT)"
ALL_PORTS="$CORELB_PRIMARY_PORT $CORELB_REPLICA_PORT $APP1_PORT $APP2_PORT $CORELB_PORT $HAPROXY_PORT $NGINX_PORT"
ALL_PORTS+=" $DB_WRITER_PORT $DB_READER_PORT"
[[ $(tr ' ' '\n' <<< "$ALL_PORTS" | sort | uniq -d) == "" ]] || die "two services share a port: $ALL_PORTS"

# pin core cmd...: taskset when the machine has 2+ CPUs, else plain.
pin() {
    local core=$1
    shift
    if ((PIN)); then
        taskset -c "$core" "$@"
    else
        "$@"
    fi
}

# ---------------------------------------------------------------------------------------------------
# Configurations
write_corelb_cfg() {
    # configs/stack.toml is the stack's corelb configuration; only its addresses follow the ports here.
    sed -e "s/127\.0\.0\.1:18110/127.0.0.1:$CORELB_PORT/" \
        -e "s/127\.0\.0\.1:18101/127.0.0.1:$APP1_PORT/" \
        -e "s/127\.0\.0\.1:18102/127.0.0.1:$APP2_PORT/" \
        "$REPO_DIR/configs/stack.toml"
}

write_haproxy_cfg() {
    haproxy_http_cfg "$HAPROXY_PORT"
    cat << EOF
    # The same health check as configs/stack.toml's [backend.check].
    option httpchk GET /healthz
    server app1 127.0.0.1:$APP1_PORT check inter 2s
    server app2 127.0.0.1:$APP2_PORT check inter 2s
EOF
}

NGINX_PREFIX="$STATE/nginx"
write_nginx_cfg() {
    nginx_proxy_cfg "$NGINX_PREFIX" "$NGINX_PORT" "127.0.0.1:$APP1_PORT" "127.0.0.1:$APP2_PORT"
}

# The standard scenario: reads 90 %, writes 10 %. Seed ids are 1..1000, so every read finds a row.
SCENARIO="$RESULTS_DIR/scenario.toml"
cat > "$SCENARIO" << 'EOF'
[[kind]]
name = "read"
weight = 9
method = "GET"
path = "/items/{rand:1-1000}"

[[kind]]
name = "write"
weight = 1
method = "POST"
path = "/items"
headers = { Content-Type = "application/json" }
body = '{"name":"bench"}'
EOF

balancer_port() {
    case "$1" in
        corelb) echo "$CORELB_PORT" ;;
        haproxy) echo "$HAPROXY_PORT" ;;
        nginx) echo "$NGINX_PORT" ;;
    esac
}

# ---------------------------------------------------------------------------------------------------
# Start the stack.
echo "== corelb seed-stack benchmark =="
echo "balancers: ${BALANCERS[*]}; ${DURATION}s per run after ${WARMUP}s warm-up, $ROUNDS interleaved round(s); open loop at ${LOADS[*]} % of the median closed-loop max"
echo "results: $RESULTS_DIR"

if "$SCRIPT_DIR/mariadb.sh" status > /dev/null 2>&1; then
    if ((DB_KEPT)); then
        log "MariaDB pair left running by an earlier --keep run: using it"
        DB_STARTED=1
    else
        log "MariaDB pair already running in $CORELB_STACK_DIR: using it (and leaving it up)"
    fi
else
    log "MariaDB pair: mariadb.sh up (state $CORELB_STACK_DIR, ports $CORELB_PRIMARY_PORT/$CORELB_REPLICA_PORT)"
    DB_STARTED=1
    pin "$LOAD_CORE" "$SCRIPT_DIR/mariadb.sh" up
fi
DB_PIDS=()
for server in primary replica; do
    pf="$CORELB_STACK_DIR/$server/mariadbd.pid"
    [[ -r $pf ]] || die "no pid file $pf after mariadb.sh up"
    DB_PIDS+=("$(< "$pf")")
done
# Pin every thread of both servers, also when they were already running before this script.
if ((PIN)); then
    for pid in "${DB_PIDS[@]}"; do taskset -a -p -c "$LOAD_CORE" "$pid" > /dev/null; done
fi

replica_sql() { # query -> single value
    mariadb -h127.0.0.1 -P"$CORELB_REPLICA_PORT" -u"${CORELB_DB_USER:-corelb}" -p"${CORELB_DB_PASSWORD:-corelb}" \
        --connect-timeout=5 --batch --skip-column-names -e "$1" "${CORELB_DB_NAME:-corelb}"
}
primary_sql() {
    mariadb -h127.0.0.1 -P"$CORELB_PRIMARY_PORT" -u"${CORELB_DB_USER:-corelb}" -p"${CORELB_DB_PASSWORD:-corelb}" \
        --connect-timeout=5 --batch --skip-column-names -e "$1" "${CORELB_DB_NAME:-corelb}"
}
ROWS_BEFORE_PRIMARY=$(primary_sql "SELECT COUNT(*) FROM items")
ROWS_BEFORE_REPLICA=$(replica_sql "SELECT COUNT(*) FROM items")

# The database tier's own corelb (configs/mysql.toml, addresses rewritten to this run's ports), on
# the core of the app nodes and MariaDB so that the balancer under test keeps its core to itself.
if ((DB_DIRECT)); then
    DB_WRITER="127.0.0.1:$CORELB_PRIMARY_PORT"
    DB_READER="127.0.0.1:$CORELB_REPLICA_PORT"
    log "app nodes -> MariaDB directly (--db-direct)"
else
    sed -e "s/127\.0\.0\.1:13306/127.0.0.1:$CORELB_PRIMARY_PORT/" \
        -e "s/127\.0\.0\.1:13307/127.0.0.1:$CORELB_REPLICA_PORT/" \
        -e "s/127\.0\.0\.1:13400/127.0.0.1:$DB_WRITER_PORT/" \
        -e "s/127\.0\.0\.1:13401/127.0.0.1:$DB_READER_PORT/" \
        "$REPO_DIR/configs/mysql.toml" > "$STATE/corelb-db.toml"
    "$CORELB_BIN" check -c "$STATE/corelb-db.toml" > "$STATE/corelb-db-check.log" 2>&1 ||
        die "corelb rejected $STATE/corelb-db.toml: $(cat "$STATE/corelb-db-check.log")"
    start_bg dbtier "$LOAD_CORE" "$STATE/corelb-db.log" "$CORELB_BIN" run -c "$STATE/corelb-db.toml" --workers 1
    wait_listening dbtier "$DB_WRITER_PORT" "${LOG_OF[dbtier]}"
    wait_listening dbtier "$DB_READER_PORT" "${LOG_OF[dbtier]}"
    # Its servers start down (start_down): wait until the checks found the writer and a reader.
    for ((i = 0; i < BENCH_START_POLLS; i++)); do
        grep -q "server writer/primary is UP" "$STATE/corelb-db.log" &&
            grep -q "server reader/.* is UP" "$STATE/corelb-db.log" && break
        sleep 0.1
    done
    grep -q "server writer/primary is UP" "$STATE/corelb-db.log" ||
        die "the database tier corelb found no writable server; log: $(tail -n 20 "$STATE/corelb-db.log")"
    DB_WRITER="127.0.0.1:$DB_WRITER_PORT"
    DB_READER="127.0.0.1:$DB_READER_PORT"
    log "app nodes -> corelb TCP frontends writer $DB_WRITER, reader $DB_READER (pid ${PID_OF[dbtier]}) -> MariaDB"
fi
for app in app1 app2; do
    if [[ $app == app1 ]]; then port=$APP1_PORT; else port=$APP2_PORT; fi
    start_bg "$app" "$LOAD_CORE" "$STATE/$app.log" "$APPNODE_BIN" --listen "127.0.0.1:$port" --name "$app" \
        --primary "$DB_WRITER" --replica "$DB_READER" --threads "$APP_THREADS"
done
wait_listening app1 "$APP1_PORT" "${LOG_OF[app1]}"
wait_listening app2 "$APP2_PORT" "${LOG_OF[app2]}"

start_balancer() { # name
    case "$1" in
        corelb)
            write_corelb_cfg > "$STATE/corelb.toml"
            "$CORELB_BIN" check -c "$STATE/corelb.toml" > "$STATE/corelb-check.log" 2>&1 ||
                die "corelb rejected $STATE/corelb.toml: $(cat "$STATE/corelb-check.log")"
            start_bg corelb "$LB_CORE" "$STATE/corelb.log" "$CORELB_BIN" run -c "$STATE/corelb.toml" --workers 1
            ;;
        haproxy)
            write_haproxy_cfg > "$STATE/haproxy.cfg"
            haproxy -c -q -f "$STATE/haproxy.cfg" || die "haproxy rejected $STATE/haproxy.cfg"
            start_bg haproxy "$LB_CORE" "$STATE/haproxy.log" haproxy -db -f "$STATE/haproxy.cfg"
            ;;
        nginx)
            mkdir -p "$NGINX_PREFIX"
            write_nginx_cfg > "$NGINX_PREFIX/nginx.conf"
            start_bg nginx "$LB_CORE" "$STATE/nginx.log" \
                nginx -p "$NGINX_PREFIX" -e "$NGINX_PREFIX/error.log" -c "$NGINX_PREFIX/nginx.conf"
            ;;
    esac
    wait_listening "$1" "$(balancer_port "$1")" "${LOG_OF[$1]}"
}
for b in "${BALANCERS[@]}"; do start_balancer "$b"; done

echo "pinning:"
if ((PIN)); then
    echo "  balancer(s) ${BALANCERS[*]}: core $LB_CORE (taskset -c $LB_CORE; corelb with --workers 1, haproxy nbthread 1, nginx 1 worker)"
    echo "  loadgen (1 thread), app1/app2 (pids ${PID_OF[app1]} ${PID_OF[app2]}), mariadbd (pids ${DB_PIDS[*]}): core $LOAD_CORE"
else
    echo "  nothing pinned: only $NCPU CPU online"
fi

# Health: both nodes must reach both databases before measuring.
health() { # port -> status code
    # shellcheck disable=SC2016 # $1 expands in the inner bash, on purpose
    timeout 5 bash -c 'exec 3<> "/dev/tcp/127.0.0.1/$1" || exit 1
        printf "GET /healthz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n" >&3
        head -c 12 <&3' _ "$1" 2> /dev/null | awk '{ print $2 }'
}
for port in "$APP1_PORT" "$APP2_PORT"; do
    [[ $(health "$port") == 200 ]] || die "app node on $port is not healthy (GET /healthz); see $STATE/app*.log"
done
for b in "${BALANCERS[@]}"; do
    [[ $(health "$(balancer_port "$b")") == 200 ]] || die "$b on $(balancer_port "$b") does not answer GET /healthz with 200"
done
log "app nodes and balancer(s) healthy"

# ---------------------------------------------------------------------------------------------------
# One run: loadgen in the background; the balancer's CPU is sampled at the end of the warm-up and
# after the run, so the µs/req covers the measured window only. Noise is sampled over the whole
# loadgen run (warm-up included): the machine's busy CPU minus ours (every process this script
# started or uses: balancers, app nodes, the DB-tier corelb, mariadbd, loadgen and our own tools).
SUMMARY="$STATE/summary.tsv"
# Columns: balancer run round attempt req/s p50 p99 p99.9 p99-uncorr errors X-Served-By cpu_us/req
#          note foreign_pct steal_pct rate(0 = closed) report-prefix app-nodes-cpu_us/req
: > "$SUMMARY"

own_ticks() { # -> utime+stime of every long-running process of the stack
    local name
    local -a pids=("${DB_PIDS[@]}")
    for name in "${STARTED_ORDER[@]}"; do mapfile -t -O "${#pids[@]}" pids < <(pids_of "$name"); done
    cpu_ticks "${pids[@]}"
}

# us_per_req ticks json -> CPU µs per measured response. The ticks run from the end of the warm-up
# (as this script sleeps it; loadgen's own start adds milliseconds) to loadgen's exit, so they also
# cover responses that arrived after the nominal window (an open loop that fell behind its schedule),
# and the idle tail after the last response costs no CPU.
us_per_req() {
    jq -r --arg t "$1" --arg hz "$CLK_TCK" \
        'if .responses > 0 then (($t | tonumber) * 1e6 / ($hz | tonumber) / .responses * 100 | round / 100)
         else "nan" end' "$2"
}

one_run() { # balancer label rate(0 = closed) round attempt -> appends a summary row
    local b=$1 label=$2 rate=$3 round=$4 attempt=$5 port prefix json c0 c1 rc=0 lpid cpu_us
    local o0 o1 a0 a1 app_us
    local -a args pids apids
    port=$(balancer_port "$b")
    # Per run files: <balancer>-<run>-r<round>, and -a<attempt> for a redo.
    prefix="$RESULTS_DIR/$b-$label-r$round"
    ((attempt == 1)) || prefix+="-a$attempt"
    json="$prefix.json"
    args=(run "http://127.0.0.1:$port/" --scenario "$SCENARIO" -d "${DURATION}s" --warmup "${WARMUP}s"
        --json "$json" --hgrm "$prefix.hgrm" --csv "$prefix.csv" --svg "$prefix")
    if ((rate > 0)); then
        args+=(-R "$rate" -c "$OPEN_CONNS")
    else
        args+=(-c "$CLOSED_CONNS")
    fi
    wait_quiet
    mapfile -t pids < <(pids_of "$b")
    # The app tier must not be the bottleneck: its CPU per request is in the report too.
    mapfile -t apids < <(pids_of app1 && pids_of app2)
    o0=$(own_ticks)
    noise_begin "$LOAD_CORE"
    timeout "$((WARMUP + DURATION + LOADGEN_SLACK_S))" taskset -c "$LOAD_CORE" \
        "$LOADGEN_BIN" "${args[@]}" < /dev/null > "$prefix.txt" 2>&1 &
    lpid=$!
    LOADGEN_PID=$lpid
    sleep "$WARMUP"
    c0=$(cpu_ticks "${pids[@]}")
    a0=$(cpu_ticks "${apids[@]}")
    wait "$lpid" || rc=$?
    LOADGEN_PID=""
    c1=$(cpu_ticks "${pids[@]}")
    a1=$(cpu_ticks "${apids[@]}")
    noise_end "$LOAD_CORE"
    o1=$(own_ticks)
    ((rc == 0)) || die "loadgen failed for $b $label (exit $rc): $(tail -n 5 "$prefix.txt")"
    alive "${PID_OF[$b]}" || die "$b died during the run; log: $(tail -n 5 "${LOG_OF[$b]}")"
    [[ -s $json ]] || die "loadgen wrote no JSON for $b $label: $(tail -n 5 "$prefix.txt")"
    noise_pcts $((o1 - o0))
    cpu_us=$(us_per_req $((c1 - c0)) "$json")
    app_us=$(us_per_req $((a1 - a0)) "$json")
    jq -r --arg b "$b" --arg l "$label" --arg r "$round" --arg at "$attempt" --arg cpu "$cpu_us" \
        --arg f "$NOISE_FOREIGN_PCT" --arg st "$NOISE_STEAL_PCT" --arg rate "$rate" --arg pre "${prefix##*/}" --arg app "$app_us" '
        # Open loop: the rate really offered (first intended to last actual send), below the target
        # when the stack could not keep up and requests queued in the generator; then a note says so.
        (if .mode == "open" and .achieved_send_rps != null then .achieved_send_rps else .throughput_rps end) as $rps
        | [$b, $l, $r, $at, ($rps | . * 10 | round / 10),
         .latency_corrected.p50_ms, .latency_corrected.p99_ms, .latency_corrected.p999_ms,
         .latency_uncorrected.p99_ms, .errors_total,
         ([.backends | to_entries[] | "\(.key)=\(.value)"] | join(" ")), $cpu,
         ([(if .cpu.saturated then "generator-saturated" else empty end),
           (if .mode == "open" and $rps < 0.99 * .target_rate
            then "behind schedule (\(.late_sends) of \(.sent) sends late, max \(.max_send_lag_ms | round) ms)"
            else empty end)] | join("; ")),
         $f, $st, $rate, $pre, $app] | @tsv' "$json" >> "$SUMMARY"
    log "$b $label round $round.$attempt: $(tail -n 1 "$SUMMARY" | cut -f5) req/s, $cpu_us us/req balancer CPU, $app_us us/req app nodes, foreign ${NOISE_FOREIGN_PCT}%, steal ${NOISE_STEAL_PCT}% (report: $prefix.txt)"
}

# A noisy run (other tenants plus steal above NOISE_PCT of a core) is redone up to MAX_REDO times
# (run_redo); per (balancer, run, round) the quietest attempt counts, in $KEPT.
KEPT="$STATE/kept.tsv"
keep_kept() { keep_quietest "$SUMMARY" 14 15 0 | sort -t$'\t' -k1,1 -k2,2 -k3,3n > "$KEPT"; }
# stats balancer run column -> "median min max" over the kept rounds.
stats() {
    awk -F'\t' -v b="$1" -v l="$2" -v c="$3" '$1 == b && $2 == l && $c != "" && $c != "nan" { print $c }' "$KEPT" |
        median_min_max
}

T_START=$EPOCHREALTIME
for ((round = 1; round <= ROUNDS; round++)); do
    for b in "${BALANCERS[@]}"; do
        log "round $round/$ROUNDS, $b: closed loop, $CLOSED_CONNS connections"
        run_redo one_run "$b" closed 0 "$round"
    done
done
# Each balancer's open-loop rates follow its own median closed-loop throughput.
keep_kept
declare -A MAX_RPS=()
for b in "${BALANCERS[@]}"; do
    read -r med _ _ <<< "$(stats "$b" closed 5)"
    MAX_RPS[$b]=$med
done
for pct in "${LOADS[@]}"; do
    for ((round = 1; round <= ROUNDS; round++)); do
        for b in "${BALANCERS[@]}"; do
            rate=$(awk -v m="${MAX_RPS[$b]}" -v p="$pct" 'BEGIN { printf "%d\n", m * p / 100 }')
            ((rate >= 1)) || die "$b: closed-loop throughput ${MAX_RPS[$b]} is too low for an open-loop run"
            log "round $round/$ROUNDS, $b: open loop at $pct % = $rate req/s, pool of $OPEN_CONNS connections"
            run_redo one_run "$b" "open$pct" "$rate" "$round"
        done
    done
done
keep_kept
T_END=$EPOCHREALTIME

# ---------------------------------------------------------------------------------------------------
# Replication check: every row the run wrote on the primary must show up on the replica.
ROWS_AFTER_PRIMARY=$(primary_sql "SELECT COUNT(*) FROM items")
ROWS_AFTER_REPLICA=""
for ((i = 0; i < REPL_POLLS; i++)); do
    ROWS_AFTER_REPLICA=$(replica_sql "SELECT COUNT(*) FROM items")
    [[ $ROWS_AFTER_REPLICA == "$ROWS_AFTER_PRIMARY" ]] && break
    sleep 0.1
done
WRITTEN=$((ROWS_AFTER_PRIMARY - ROWS_BEFORE_PRIMARY))
SEEN_REPLICA=$((ROWS_AFTER_REPLICA - ROWS_BEFORE_REPLICA))
if ((WRITTEN > 0 && SEEN_REPLICA == WRITTEN)); then
    REPL="OK: $WRITTEN rows written on the primary during the run, all $SEEN_REPLICA visible on the replica ($ROWS_AFTER_REPLICA rows in total)"
    REPL_OK=1
else
    REPL="FAILED: $WRITTEN rows written on the primary, $SEEN_REPLICA visible on the replica after $((REPL_POLLS / 10)) s"
    REPL_OK=0
fi

# ---------------------------------------------------------------------------------------------------
# Report
REPORT="$RESULTS_DIR/report.md"
# fmt_mmm "median min max" -> "median (min-max)", or "-" when there were no figures.
fmt_mmm() {
    local m lo hi
    read -r m lo hi <<< "$1"
    if [[ $m == - ]]; then echo "-"; elif ((ROUNDS == 1)); then echo "$m"; else echo "$m ($lo-$hi)"; fi
}
{
    echo "# corelb seed-stack benchmark, $TS"
    echo
    echo "Command: \`DURATION=$DURATION WARMUP=$WARMUP ROUNDS=$ROUNDS loadgen/stack/bench.sh --balancer $(IFS=,; echo "${BALANCERS[*]}")$( ((QUICK)) && echo " --quick")\`"
    echo
    echo "Scenario: 90 % GET /items/{1-1000} (replica), 10 % POST /items (primary). Closed loop with $CLOSED_CONNS connections," \
        "then open loop (pool of $OPEN_CONNS) at ${LOADS[*]} % of its median throughput; ${DURATION}s measured after ${WARMUP}s warm-up." \
        "$ROUNDS round(s), balancers interleaved (${BALANCERS[*]}), closed-loop runs first, then the open-loop runs;" \
        "figures are medians over the rounds, (min-max) beside." \
        "Latencies in ms; corrected = from the intended send time; in the closed loop there is no schedule" \
        "and both columns are the response time. req/s: responses per second in the closed loop; in the open loop the" \
        "achieved send rate (first intended to last actual send), below the target when the stack fell behind and requests" \
        "queued in loadgen (then noted: the corrected latencies include that queueing)." \
        "Balancer CPU = utime+stime of all its processes from the end of the warm-up to loadgen's exit / measured responses;" \
        "app nodes CPU the same for both app nodes together (the app tier shares the load core with loadgen and MariaDB)." \
        "Foreign % = CPU used on the machine by processes other than the stack's and loadgen, in % of one core, over the" \
        "whole loadgen run; steal % = hypervisor steal, same unit (max over the kept runs; runs with foreign+steal above" \
        "${NOISE_PCT}% were redone up to ${MAX_REDO}x, the quieter kept)."
    echo
    if ((PIN)); then
        echo "Pinning: balancer on core $LB_CORE; loadgen, app nodes and MariaDB on core $LOAD_CORE."
    else
        echo "Pinning: none ($NCPU CPU)."
    fi
    echo
    echo "| balancer | run | req/s | p50 corr | p99 corr | p99.9 corr | p99 uncorr | errors | X-Served-By | balancer CPU us/req | app nodes CPU us/req | foreign % (max) | steal % (max) | note |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    for b in "${BALANCERS[@]}"; do
        for label in closed $(printf 'open%s ' "${LOADS[@]}"); do
            read -r p50 _ _ <<< "$(stats "$b" "$label" 6)"
            read -r p999 _ _ <<< "$(stats "$b" "$label" 8)"
            read -r p99u _ _ <<< "$(stats "$b" "$label" 9)"
            read -r _ _ fmax <<< "$(stats "$b" "$label" 14)"
            read -r _ _ smax <<< "$(stats "$b" "$label" 15)"
            # Errors and the X-Served-By split summed over the kept rounds; a note if any round had it.
            IFS='|' read -r errs served note <<< "$(awk -F'\t' -v b="$b" -v l="$label" '$1 == b && $2 == l {
                    e += $10
                    n = split($11, kv, " ")
                    for (i = 1; i <= n; i++) { split(kv[i], p, "="); if (!(p[1] in c)) o[++k] = p[1]; c[p[1]] += p[2] }
                    if ($13 != "") note = $13
                } END {
                    s = ""
                    for (i = 1; i <= k; i++) s = s (i > 1 ? " " : "") o[i] "=" c[o[i]]
                    printf "%d|%s|%s\n", e, s, note
                }' "$KEPT")"
            printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$b" "$label" \
                "$(fmt_mmm "$(stats "$b" "$label" 5)")" "$p50" "$(fmt_mmm "$(stats "$b" "$label" 7)")" "$p999" "$p99u" \
                "$errs" "$served" "$(fmt_mmm "$(stats "$b" "$label" 12)")" "$(fmt_mmm "$(stats "$b" "$label" 18)")" \
                "$fmax" "$smax" "$note"
        done
    done
    if ((${#BALANCERS[@]} > 1)); then
        echo
        echo "Side by side (medians: req/s; p99 corrected ms, the response p99 in the closed loop; balancer CPU us/req):"
        echo
        printf '| run |'
        for b in "${BALANCERS[@]}"; do printf ' %s req/s | %s p99 | %s us/req |' "$b" "$b" "$b"; done
        echo
        printf '|---|'
        for _ in "${BALANCERS[@]}"; do printf -- '---|---|---|'; done
        echo
        for label in closed $(printf 'open%s ' "${LOADS[@]}"); do
            printf '| %s |' "$label"
            for b in "${BALANCERS[@]}"; do
                read -r r _ _ <<< "$(stats "$b" "$label" 5)"
                read -r p99 _ _ <<< "$(stats "$b" "$label" 7)"
                read -r c _ _ <<< "$(stats "$b" "$label" 12)"
                printf ' %s | %s | %s |' "$r" "$p99" "$c"
            done
            echo
        done
    fi
    # Every run, when there is more than the table above shows (rounds, redos).
    if ((ROUNDS > 1 || BENCH_RUNS > $(wc -l < "$KEPT"))); then
        echo
        echo "Every run, in the order run (open-loop rate in req/s; a redone run's noisier attempt marked \"not kept\"):"
        echo
        echo "| balancer | run | round | rate | req/s | p50 corr | p99 corr | p99.9 corr | p99 uncorr | errors | X-Served-By | balancer CPU us/req | app nodes CPU us/req | foreign % | steal % | note |"
        echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        awk -F'\t' 'NR == FNR { kept[$17] = 1; next } {
            note = $13
            if (!($17 in kept)) note = note (note == "" ? "" : "; ") "not kept"
            printf "| %s | %s | %s.%s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
                $1, $2, $3, $4, ($16 > 0) ? $16 : "-", $5, $6, $7, $8, $9, $10, $11, $12, $18, $14, $15, note
        }' "$KEPT" "$SUMMARY"
    fi
    noisy=$(awk -F'\t' -v n="$NOISE_PCT" '$14 + $15 > n { c++ } END { print c + 0 }' "$KEPT")
    if ((noisy > 0)); then
        echo
        echo "**Noisy:** $noisy kept run(s) had other tenants plus steal using more than ${NOISE_PCT}% of a core;" \
            "their figures (CPU/req included: caches and scheduling suffer) are not trustworthy. Rerun on a quiet machine."
    fi
    echo
    echo "Replication: $REPL"
    echo
    echo "Files: per run \`<balancer>-<run>-r<round>.{txt,json,hgrm,csv}\` (\`-a<attempt>\` added for a redo) and" \
        "\`-latency.svg\`/\`-timeseries.svg\`; configs in \`state/\`, all runs in \`state/summary.tsv\`."
} > "$REPORT"

echo
cat "$REPORT"
echo
log "$BENCH_RUNS measured runs took $(awk -v a="$T_START" -v b="$T_END" 'BEGIN { printf "%.0f", b - a }') s; report: $REPORT"
((REPL_OK)) || exit 1
