#!/usr/bin/env bash
# The benchmark stack's database tier: a MariaDB primary and a GTID replica, two independent mariadbd
# processes on 127.0.0.1, each with its own config, datadir, unix socket, pid file and log under one
# state directory. Idempotent: `up` brings whatever is missing up (and says so when all is running),
# `down` stops only the processes this script started.
#
# Usage: loadgen/stack/mariadb.sh up|down [primary|replica]|status|purge|help
#   up       create (first time), start and wire up both servers; wait until the replica replicates
#   down     stop both servers (or just one: `down replica`); the data is kept for the next `up`
#   status   each server's state, the replication threads and lag; exit 0 only when all is healthy
#   purge    down, then delete the state directory
# Environment (defaults in brackets):
#   CORELB_STACK_DIR [/tmp/corelb-stack]   state directory (kept short: unix socket paths max 107 bytes)
#   CORELB_PRIMARY_PORT [13306]  CORELB_REPLICA_PORT [13307]
#   CORELB_DB_USER [corelb]  CORELB_DB_PASSWORD [corelb]   the app user (no SUPER, so read_only binds it)
#   CORELB_CHECK_USER [corelb_check]  CORELB_CHECK_PASSWORD [corelb_check]   the health-check user
#                                (only SLAVE MONITOR, for SHOW SLAVE STATUS; made on every `up`)
#   CORELB_SEED_ROWS [1000]      rows inserted into corelb.items when the primary is created
#   CORELB_STACK_TIMEOUT [60]    seconds to wait for a server to start, stop or replicate
# Needs mariadb-server and mariadb-client (Debian): it installs nothing itself.
set -euo pipefail

export LC_ALL=C
# mariadbd lives in /usr/sbin, which a non-root PATH on Debian lacks.
PATH="$PATH:/usr/sbin:/sbin:/usr/local/sbin"

STATE_DIR=${CORELB_STACK_DIR:-/tmp/corelb-stack}
PRIMARY_PORT=${CORELB_PRIMARY_PORT:-13306}
REPLICA_PORT=${CORELB_REPLICA_PORT:-13307}
APP_USER=${CORELB_DB_USER:-corelb}
APP_PASSWORD=${CORELB_DB_PASSWORD:-corelb}
CHECK_USER=${CORELB_CHECK_USER:-corelb_check}
CHECK_PASSWORD=${CORELB_CHECK_PASSWORD:-corelb_check}
SEED_ROWS=${CORELB_SEED_ROWS:-1000}
TIMEOUT=${CORELB_STACK_TIMEOUT:-60}
# The replication account only ever logs in from 127.0.0.1 to a loopback-only server.
REPL_USER=corelb_repl
REPL_PASSWORD=corelb_repl
INSTALL_CMD="apt-get update && apt-get install -y -o DPkg::Lock::Timeout=120 mariadb-server mariadb-client"
# Marks a directory as ours, so `purge` never deletes a directory this script did not create.
STATE_MARK=.corelb-stack
# ASCII unit separator: the field separator of slave_status.
US=$'\037'

die() {
    echo "mariadb.sh: $*" >&2
    exit 1
}
log() { echo "mariadb.sh: $*" >&2; }
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
for v in PRIMARY_PORT REPLICA_PORT SEED_ROWS TIMEOUT; do
    is_uint "${!v}" || die "$v must be a plain number, got '${!v}'"
done
((PRIMARY_PORT >= 1 && PRIMARY_PORT <= 65535 && REPLICA_PORT >= 1 && REPLICA_PORT <= 65535)) ||
    die "ports must be in 1..65535"
((PRIMARY_PORT != REPLICA_PORT)) || die "the primary and replica ports must differ"
# The names and passwords go into SQL string literals: allow only characters that need no quoting.
for v in APP_USER APP_PASSWORD CHECK_USER CHECK_PASSWORD; do
    [[ ${!v} =~ ^[A-Za-z0-9_]{1,32}$ ]] || die "$v must be 1-32 characters of [A-Za-z0-9_]"
done
# Relative paths would change meaning with the working directory of later commands.
[[ $STATE_DIR == /* ]] || die "CORELB_STACK_DIR must be an absolute path, got '$STATE_DIR'"

# ---- per-server paths --------------------------------------------------------------------------
dir_of() { echo "$STATE_DIR/$1"; }
cnf_of() { echo "$STATE_DIR/$1/my.cnf"; }
sock_of() { echo "$STATE_DIR/$1/sock"; }
pidfile_of() { echo "$STATE_DIR/$1/mariadbd.pid"; }
log_of() { echo "$STATE_DIR/$1/error.log"; }
port_of() { if [[ $1 == primary ]]; then echo "$PRIMARY_PORT"; else echo "$REPLICA_PORT"; fi; }
# Written only after the server's one-time setup (users, schema, replication) completed; without it
# the datadir is from an interrupted `up` and is created afresh.
ready_mark_of() { echo "$STATE_DIR/$1/setup-done"; }

need_binaries() {
    local missing=()
    for b in mariadbd mariadb-install-db mariadb mariadb-admin; do
        command -v "$b" > /dev/null 2>&1 || missing+=("$b")
    done
    if ((${#missing[@]} > 0)); then
        echo "mariadb.sh: ${missing[*]} not found: MariaDB is not installed. Install it with:" >&2
        if ((EUID == 0)); then
            echo "  $INSTALL_CMD" >&2
        else
            echo "  sudo sh -c '$INSTALL_CMD'" >&2
        fi
        exit 1
    fi
}

# As root mariadbd refuses to start without --user=root (it would otherwise switch to 'mysql').
user_args() { if ((EUID == 0)); then echo "--user=root"; fi; }

# PID of the running mariadbd this script started for server $1, or nothing. The pid file alone is
# not trusted: the PID must still belong to a mariadbd started with our config (PIDs get reused), and
# a zombie (state Z, seen for ~1.5 s after exit here) counts as stopped.
running_pid() {
    local pidfile pid cmdline state
    pidfile=$(pidfile_of "$1")
    [[ -r $pidfile ]] || return 0
    pid=$(< "$pidfile")
    is_uint "$pid" || return 0
    [[ -r /proc/$pid/cmdline ]] || return 0
    cmdline=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2> /dev/null) || return 0
    [[ $cmdline == *"--defaults-file=$(cnf_of "$1")"* ]] || return 0
    state=$(proc_state "$pid")
    [[ -n $state && $state != Z ]] || return 0
    echo "$pid"
}

# Field 3 of /proc/PID/stat; the command name (field 2) is in parentheses and may hold spaces.
proc_state() {
    local stat
    stat=$(cat "/proc/$1/stat" 2> /dev/null) || return 0
    stat=${stat##*) }
    echo "${stat%% *}"
}

# Fails with the holder's name when something already listens on 127.0.0.1:$1 (or on all addresses).
check_port_free() {
    local port=$1 holder
    if command -v ss > /dev/null 2>&1; then
        holder=$(ss -ltnpH "sport = :$port" 2> /dev/null || true)
        if [[ -n $holder ]]; then
            die "port $port is already taken: $(echo "$holder" | head -n 3 | tr -s ' ')
  (choose other ports with CORELB_PRIMARY_PORT / CORELB_REPLICA_PORT, or stop that process)"
        fi
    elif (: < "/dev/tcp/127.0.0.1/$port") 2> /dev/null; then
        die "port $port is already taken (install iproute2 so 'ss -ltnp' can say by whom)"
    fi
}

# Runs SQL as root over the server's unix socket (root has no password on these private servers).
sql() { # server sql...
    local server=$1
    shift
    mariadb --defaults-file="$(cnf_of "$server")" -uroot --batch --skip-column-names \
        --connect-timeout=5 -e "$*"
}

write_cnf() { # server server_id
    local server=$1 id=$2 dir
    dir=$(dir_of "$server")
    {
        echo "# Written by loadgen/stack/mariadb.sh; read only through --defaults-file."
        echo "[mysqld]"
        echo "datadir=$dir/data"
        echo "socket=$(sock_of "$server")"
        echo "pid-file=$(pidfile_of "$server")"
        echo "log-error=$(log_of "$server")"
        echo "port=$(port_of "$server")"
        echo "bind-address=127.0.0.1"
        echo "skip-name-resolve"
        # --defaults-file skips Debian's /etc/mysql config, and with it its utf8mb4 default.
        echo "character-set-server=utf8mb4"
        echo "collation-server=utf8mb4_general_ci"
        # 2 (the default) logs a warning for every TCP health check that hangs up after the greeting.
        echo "log_warnings=1"
        # Two app nodes x two pools x --db-pool connections, plus replication and admin sessions.
        echo "max_connections=512"
        echo "server_id=$id"
        echo "gtid_strict_mode=ON"
        if [[ $server == primary ]]; then
            echo "log_bin=$dir/data/binlog"
            echo "binlog_format=ROW"
        else
            echo "relay_log=$dir/data/relay"
            echo "read_only=ON"
        fi
        echo "[client]"
        echo "socket=$(sock_of "$server")"
        echo "port=$(port_of "$server")"
        echo "default-character-set=utf8mb4"
    } > "$(cnf_of "$server")"
}

# Creates the datadir of server $1 unless a completed one exists.
init_server() {
    local server=$1 id=$2 dir
    dir=$(dir_of "$server")
    if [[ -e $(ready_mark_of "$server") && -d $dir/data/mysql ]]; then
        write_cnf "$server" "$id"
        return 0
    fi
    log "$server: creating the datadir in $dir/data"
    rm -rf "$dir/data"
    mkdir -p "$dir/data"
    write_cnf "$server" "$id"
    # shellcheck disable=SC2046 # user_args is zero or one word
    if ! mariadb-install-db --defaults-file="$(cnf_of "$server")" $(user_args) \
        --auth-root-authentication-method=normal --skip-test-db > "$dir/install.log" 2>&1; then
        tail -n 20 "$dir/install.log" >&2 || true
        die "$server: mariadb-install-db failed (full log: $dir/install.log)"
    fi
}

start_server() { # server
    local server=$1 pid port deadline
    pid=$(running_pid "$server")
    if [[ -n $pid ]]; then
        log "$server: already running (pid $pid, port $(port_of "$server"))"
        return 0
    fi
    port=$(port_of "$server")
    check_port_free "$port"
    rm -f "$(pidfile_of "$server")" "$(sock_of "$server")"
    # Detached (own session, stdin from /dev/null, output to the log) so that no caller's pipe or
    # terminal stays tied to the server. --defaults-file must be the first argument.
    # shellcheck disable=SC2046 # user_args is zero or one word
    setsid mariadbd --defaults-file="$(cnf_of "$server")" $(user_args) \
        < /dev/null >> "$(dir_of "$server")/mariadbd.out" 2>&1 &
    local launched=$!
    deadline=$((SECONDS + TIMEOUT))
    while :; do
        pid=$(running_pid "$server")
        if [[ -n $pid ]] && mariadb-admin --defaults-file="$(cnf_of "$server")" -uroot \
            --connect-timeout=2 ping > /dev/null 2>&1; then
            break
        fi
        if [[ -z $pid ]] && ! kill -0 "$launched" 2> /dev/null; then
            tail -n 20 "$(log_of "$server")" >&2 || true
            die "$server: mariadbd exited during startup (log: $(log_of "$server"))"
        fi
        if ((SECONDS >= deadline)); then
            tail -n 20 "$(log_of "$server")" >&2 || true
            die "$server: not answering after ${TIMEOUT}s (log: $(log_of "$server"))"
        fi
        sleep 0.1
    done
    log "$server: started (pid $pid, 127.0.0.1:$port)"
}

# One-time setup of the primary: accounts (not replicated), then schema and seed rows (replicated).
setup_primary() {
    [[ -e $(ready_mark_of primary) ]] && return 0
    local values="" i
    for ((i = 1; i <= SEED_ROWS; i++)); do
        values+="${values:+,}('seed-$i')"
    done
    # RESET MASTER: whatever the datadir's creation may have logged must not replicate (the
    # replica creates its own system tables); the binary log starts empty here.
    sql primary "
        RESET MASTER;
        SET sql_log_bin=0;
        CREATE USER '$REPL_USER'@'127.0.0.1' IDENTIFIED BY '$REPL_PASSWORD';
        GRANT REPLICATION SLAVE ON *.* TO '$REPL_USER'@'127.0.0.1';
        CREATE USER '$APP_USER'@'127.0.0.1' IDENTIFIED BY '$APP_PASSWORD';
        CREATE USER '$APP_USER'@'localhost' IDENTIFIED BY '$APP_PASSWORD';
        GRANT SELECT, INSERT ON corelb.* TO '$APP_USER'@'127.0.0.1';
        GRANT SELECT, INSERT ON corelb.* TO '$APP_USER'@'localhost';
        SET sql_log_bin=1;
        CREATE DATABASE corelb CHARACTER SET utf8mb4;
        CREATE TABLE corelb.items (
            id BIGINT AUTO_INCREMENT PRIMARY KEY,
            name VARCHAR(64),
            created TIMESTAMP(6) DEFAULT CURRENT_TIMESTAMP(6)
        ) ENGINE=InnoDB;
        ${values:+INSERT INTO corelb.items (name) VALUES $values;}
    " || die "primary: setup failed"
    touch "$(ready_mark_of primary)"
}

# One-time setup of the replica: the app account (not replicated) and the GTID replication link.
setup_replica() {
    [[ -e $(ready_mark_of replica) ]] && return 0
    sql replica "
        SET sql_log_bin=0;
        CREATE USER '$APP_USER'@'127.0.0.1' IDENTIFIED BY '$APP_PASSWORD';
        CREATE USER '$APP_USER'@'localhost' IDENTIFIED BY '$APP_PASSWORD';
        GRANT SELECT, INSERT ON corelb.* TO '$APP_USER'@'127.0.0.1';
        GRANT SELECT, INSERT ON corelb.* TO '$APP_USER'@'localhost';
        SET sql_log_bin=1;
        CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$PRIMARY_PORT,
            MASTER_USER='$REPL_USER', MASTER_PASSWORD='$REPL_PASSWORD',
            MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1;
        START SLAVE;
    " || die "replica: replication setup failed"
    touch "$(ready_mark_of replica)"
}

# Prints "io sql lag last_io_error last_sql_error" from SHOW SLAVE STATUS, separated by $US: not a
# whitespace character, so that `read` keeps empty fields in place.
slave_status() {
    # With column names: \G prints "Name: value" lines only then.
    mariadb --defaults-file="$(cnf_of replica)" -uroot --connect-timeout=5 \
        -e "SHOW SLAVE STATUS\G" 2> /dev/null | awk -F': ' '
        { gsub(/^ +/, "", $1) }
        $1 == "Slave_IO_Running" { io = $2 }
        $1 == "Slave_SQL_Running" { sq = $2 }
        $1 == "Seconds_Behind_Master" { lag = $2 }
        $1 == "Last_IO_Error" { ioe = $2 }
        $1 == "Last_SQL_Error" { sqe = $2 }
        END { printf "%s\037%s\037%s\037%s\037%s\n", io, sq, lag, ioe, sqe }'
}

# The health-check account on server $1, made on every `up` (not only at creation) so that a pair
# created before it existed gets it too. Not replicated (sql_log_bin=0), like the app user: each
# server has its own. SLAVE MONITOR (alias REPLICA MONITOR) is all SHOW SLAVE STATUS needs in 10.11;
# @@read_only needs no privilege.
setup_check_user() {
    local server=$1 host stmts=""
    for host in 127.0.0.1 localhost; do
        stmts+="
        CREATE USER IF NOT EXISTS '$CHECK_USER'@'$host' IDENTIFIED BY '$CHECK_PASSWORD';
        ALTER USER '$CHECK_USER'@'$host' IDENTIFIED BY '$CHECK_PASSWORD';
        GRANT SLAVE MONITOR ON *.* TO '$CHECK_USER'@'$host';"
    done
    sql "$server" "SET sql_log_bin=0; $stmts SET sql_log_bin=1;" ||
        die "$server: creating the check user '$CHECK_USER' failed"
}

# Waits until both replication threads run, then until the replica has applied everything the
# primary had written when we asked (MASTER_GTID_WAIT), so that `up` returns with the seed rows
# readable on the replica.
wait_replicating() {
    local deadline=$((SECONDS + TIMEOUT)) st io sq pos waited
    while :; do
        st=$(slave_status)
        IFS=$US read -r io sq _ _ _ <<< "$st"
        [[ $io == Yes && $sq == Yes ]] && break
        if ((SECONDS >= deadline)); then
            die "replica: replication not running after ${TIMEOUT}s: $(echo "$st" | tr "$US" ' ')"
        fi
        sleep 0.1
    done
    pos=$(sql primary "SELECT @@gtid_binlog_pos") || die "primary: cannot read @@gtid_binlog_pos"
    waited=$(sql replica "SELECT MASTER_GTID_WAIT('$pos', $TIMEOUT)") ||
        die "replica: MASTER_GTID_WAIT failed"
    [[ $waited == 0 ]] || die "replica: did not reach the primary's position '$pos' in ${TIMEOUT}s"
    log "replica: replicating (Slave_IO_Running=Yes, Slave_SQL_Running=Yes, at GTID '${pos}')"
}

cmd_up() {
    need_binaries
    local sock_len=${#STATE_DIR}
    # "<dir>/replica/sock" must fit sun_path (108 bytes with the NUL).
    ((sock_len + 13 <= 107)) || die "CORELB_STACK_DIR is too long for a unix socket path: $STATE_DIR"
    mkdir -p "$STATE_DIR/primary" "$STATE_DIR/replica"
    touch "$STATE_DIR/$STATE_MARK"
    local p r
    p=$(running_pid primary)
    r=$(running_pid replica)
    if [[ -n $p && -n $r ]]; then
        log "already running: primary pid $p (127.0.0.1:$PRIMARY_PORT), replica pid $r (127.0.0.1:$REPLICA_PORT)"
        setup_check_user primary
        setup_check_user replica
        wait_replicating
        return 0
    fi
    # Ports first: refusing takes no time, creating datadirs takes seconds.
    [[ -n $p ]] || check_port_free "$PRIMARY_PORT"
    [[ -n $r ]] || check_port_free "$REPLICA_PORT"
    # A replica whose primary was recreated would hold the wrong data: start over with both.
    if [[ ! -e $(ready_mark_of primary) ]]; then
        [[ -z $r ]] || stop_server replica
        rm -f "$(ready_mark_of replica)"
    fi
    init_server primary 1
    init_server replica 2
    start_server primary
    setup_primary
    setup_check_user primary
    start_server replica
    setup_replica
    setup_check_user replica
    wait_replicating
    echo "primary 127.0.0.1:$PRIMARY_PORT  replica 127.0.0.1:$REPLICA_PORT  user $APP_USER  check user $CHECK_USER  database corelb"
}

# SIGTERM (a normal shutdown), then poll; a zombie counts as stopped. SIGKILL only after the timeout.
stop_server() {
    local server=$1 pid deadline
    pid=$(running_pid "$server")
    if [[ -z $pid ]]; then
        log "$server: not running"
        rm -f "$(pidfile_of "$server")"
        return 0
    fi
    kill -TERM "$pid" 2> /dev/null || true
    deadline=$((SECONDS + TIMEOUT))
    while [[ -n $(running_pid "$server") ]]; do
        if ((SECONDS >= deadline)); then
            log "$server: pid $pid still running ${TIMEOUT}s after SIGTERM: sending SIGKILL"
            kill -KILL "$pid" 2> /dev/null || true
            sleep 0.5
            [[ -z $(running_pid "$server") ]] || die "$server: pid $pid survived SIGKILL"
            break
        fi
        sleep 0.05
    done
    rm -f "$(pidfile_of "$server")"
    log "$server: stopped (pid $pid)"
}

cmd_down() {
    case "${1:-both}" in
        both)
            # The replica first, so it does not log a lost primary.
            stop_server replica
            stop_server primary
            ;;
        primary | replica) stop_server "$1" ;;
        *) die "down: unknown server '$1' (primary or replica)" ;;
    esac
}

cmd_status() {
    local healthy=1 server pid st io sq lag ioe sqe
    for server in primary replica; do
        pid=$(running_pid "$server")
        if [[ -n $pid ]]; then
            echo "$server: running (pid $pid, 127.0.0.1:$(port_of "$server"), socket $(sock_of "$server"))"
        else
            echo "$server: stopped"
            healthy=0
        fi
    done
    if [[ -n $(running_pid replica) ]] && command -v mariadb > /dev/null 2>&1; then
        st=$(slave_status)
        IFS=$US read -r io sq lag ioe sqe <<< "$st"
        echo "replication: Slave_IO_Running=${io:-?} Slave_SQL_Running=${sq:-?} lag=${lag:-?}s"
        [[ -z $ioe ]] || echo "  last IO error: $ioe"
        [[ -z $sqe ]] || echo "  last SQL error: $sqe"
        [[ $io == Yes && $sq == Yes ]] || healthy=0
        if [[ -n $(running_pid primary) ]]; then
            echo "gtid: primary $(sql primary "SELECT @@gtid_binlog_pos" 2> /dev/null || echo '?')," \
                "replica $(sql replica "SELECT @@gtid_slave_pos" 2> /dev/null || echo '?')"
        fi
    else
        echo "replication: replica not running"
    fi
    ((healthy == 1)) || return 3
}

cmd_purge() {
    cmd_down both
    if [[ -d $STATE_DIR ]]; then
        [[ -e $STATE_DIR/$STATE_MARK ]] ||
            die "$STATE_DIR has no $STATE_MARK marker: not deleting a directory this script did not create"
        rm -rf "$STATE_DIR"
        log "deleted $STATE_DIR"
    fi
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down "${2:-both}" ;;
    status) cmd_status ;;
    purge) cmd_purge ;;
    help | -h | --help) usage ;;
    *)
        usage >&2
        exit 2
        ;;
esac
