//! The MySQL tier through corelb, for real: a MariaDB primary and replica (loadgen/stack/mariadb.sh,
//! free ports, this test's own state directory, purged at the end), corelb with two TCP frontends
//! (writer and reader backends with `check = "mysql"` roles, as in configs/mysql.toml), and the
//! `mariadb` command-line client connecting through them. Writes land on the primary, reads are served
//! by the replica (told apart by @@server_id); reads fail over to the primary when the replica stops or
//! its SQL thread stops, or it lags past max_replication_lag (MASTER_DELAY), and come back; flipping read_only moves the writer role.
//!
//! Needs mariadb-server and mariadb-client (Debian). Without them the test says SKIPPED and passes,
//! except under CI (CI=true), where that is a failure.

use std::time::{Duration, Instant};

use corelb_testkit::mariadb::{Pair, CHECK_PASSWORD, CHECK_USER};
use corelb_testkit::process::Corelb;
use corelb_testkit::{poll_until, require_or_skip};

/// Check cadence of the test config: state changes within fall x interval (+ one check's time).
const INTERVAL_MS: u64 = 200;
const FALL: u64 = 2;
const RISE: u64 = 2;
/// The bound asserted for a role change: fall (or rise) x interval, a check timeout's worth of slack
/// for a check in flight, one control tick of propagation, and generous CI noise.
const ROLE_CHANGE_BOUND: Duration = Duration::from_millis(FALL * INTERVAL_MS + 1000 + 50 + 2000);
/// The reader backend's lag bound, and the delay the test imposes on the replica (MASTER_DELAY) to
/// push its Seconds_Behind_Master past it.
const MAX_LAG_S: u64 = 2;
const DELAY_S: u64 = 8;
/// Stopping or starting a server, or replication catching up, takes seconds.
const SERVER_DEADLINE: Duration = Duration::from_secs(30);
/// Pause between two queries while polling (each one starts a `mariadb` client process).
const SQL_POLL: Duration = Duration::from_millis(50);

/// One TCP-mode backend with the test's MySQL check cadence; `role_lines` and `servers` differ.
fn db_backend(name: &str, algorithm: &str, role_lines: &str, servers: &str) -> String {
    format!(
        r#"
[[backend]]
name = "{name}"
algorithm = "{algorithm}"
  [backend.timeouts]
  connect = "1s"
  [backend.check]
  type = "mysql"
  user = "{CHECK_USER}"
  password = "{CHECK_PASSWORD}"
  {role_lines}
  start_down = true
  interval = "{INTERVAL_MS}ms"
  fastinter = "{INTERVAL_MS}ms"
  timeout = "1s"
  jitter_percent = 0
  fall = {FALL}
  rise = {RISE}
{servers}"#
    )
}

fn tier_config(pair: &Pair) -> String {
    let (primary, replica) = (pair.primary, pair.replica);
    let frontends = r#"[global]
grace = "1s"

[[frontend]]
name = "fe"
mode = "tcp"
bind = ["127.0.0.1:0"]
default_backend = "writer"

[[frontend]]
name = "reader"
mode = "tcp"
bind = ["127.0.0.1:0"]
default_backend = "reader"
"#;
    let writer = db_backend(
        "writer",
        "first",
        "role = \"writer\"",
        &format!(
            "  [[backend.server]]\n  name = \"primary\"\n  address = \"{primary}\"\n\
             [[backend.server]]\n  name = \"replica\"\n  address = \"{replica}\"\n"
        ),
    );
    let reader = db_backend(
        "reader",
        "leastconn",
        &format!("role = \"reader\"\n  max_replication_lag = \"{MAX_LAG_S}s\""),
        &format!(
            "  [[backend.server]]\n  name = \"replica\"\n  address = \"{replica}\"\n\
             [[backend.server]]\n  name = \"primary\"\n  address = \"{primary}\"\n  backup = true\n"
        ),
    );
    format!("{frontends}{writer}{reader}")
}

/// The server id that answers a query sent through `port`, or the client's error.
fn server_id_via(pair: &Pair, port: u16) -> Result<String, String> {
    pair.app_sql_via(port, "SELECT @@server_id")
        .map(|s| s.trim().to_string())
}

/// Polls until queries through `port` are answered by `want` (a server id), within `bound`.
fn wait_served_by(pair: &Pair, port: u16, want: &str, bound: Duration, what: &str) -> Duration {
    let start = Instant::now();
    poll_until(
        bound,
        SQL_POLL,
        format_args!("{what}: served by server_id {want}"),
        || match server_id_via(pair, port) {
            Ok(got) if got == want => Ok(()),
            other => Err(other),
        },
    );
    start.elapsed()
}

#[test]
fn mysql_tier_through_corelb() {
    if !require_or_skip("mysql_tier_through_corelb", &["mariadbd", "mariadb"]) {
        return;
    }
    let pair = Pair::up("tier");
    let primary_id = pair.sql("primary", "SELECT @@server_id").trim().to_string();
    let replica_id = pair.sql("replica", "SELECT @@server_id").trim().to_string();
    assert_ne!(primary_id, replica_id);

    let lb = Corelb::start_toml(&tier_config(&pair), 2);
    let writer = lb.addr.port();
    let reader = lb
        .binds
        .iter()
        .find(|(name, _)| name == "reader")
        .map(|(_, a)| a.port())
        .expect("reader frontend");
    // Servers start down (start_down): wait for the first verdicts.
    wait_served_by(
        &pair,
        writer,
        &primary_id,
        SERVER_DEADLINE,
        "writer at start",
    );
    wait_served_by(
        &pair,
        reader,
        &replica_id,
        SERVER_DEADLINE,
        "reader at start",
    );
    assert!(
        corelb_testkit::wait_for(SERVER_DEADLINE, || lb
            .logs()
            .contains("server writer/primary is UP")),
        "start_down: the primary comes up through its checks: {}",
        lb.logs()
    );
    assert!(
        !lb.logs().contains("server writer/replica is UP"),
        "a read-only server never joins the writer backend: {}",
        lb.logs()
    );

    // Writes through the writer land on the primary and replicate; reads through the reader come from
    // the replica, every time, over many connections.
    let marker = format!("tier-{}", std::process::id());
    pair.app_sql_via(
        writer,
        &format!("INSERT INTO items (name) VALUES ('{marker}')"),
    )
    .expect("insert through the writer frontend");
    assert_eq!(
        pair.sql(
            "primary",
            &format!("SELECT COUNT(*) FROM corelb.items WHERE name = '{marker}'")
        )
        .trim(),
        "1"
    );
    for i in 0..20 {
        assert_eq!(
            server_id_via(&pair, writer).as_deref(),
            Ok(primary_id.as_str()),
            "writer {i}"
        );
        assert_eq!(
            server_id_via(&pair, reader).as_deref(),
            Ok(replica_id.as_str()),
            "reader {i}"
        );
    }
    poll_until(
        SERVER_DEADLINE,
        SQL_POLL,
        "the write reaching the replica",
        || match pair.app_sql_via(
            reader,
            &format!("SELECT COUNT(*) FROM items WHERE name = '{marker}'"),
        ) {
            Ok(n) if n.trim() == "1" => Ok(()),
            other => Err(other),
        },
    );

    // The replica stops: reads fail over to the primary (the reader backend's backup) within the bound.
    pair.script_ok(&["down", "replica"]);
    let t = wait_served_by(
        &pair,
        reader,
        &primary_id,
        ROLE_CHANGE_BOUND,
        "replica stopped",
    );
    eprintln!("reads failed over to the primary in {t:?}");
    pair.script_ok(&["up"]);
    let t = wait_served_by(
        &pair,
        reader,
        &replica_id,
        SERVER_DEADLINE,
        "replica started",
    );
    eprintln!("reads returned to the replica {t:?} after `up` returned");

    // The replica stops applying (SQL thread stopped) while the primary takes writes: it leaves the
    // read pool; when it resumes and catches up, it returns.
    pair.sql("replica", "STOP SLAVE SQL_THREAD");
    pair.app_sql_via(writer, "INSERT INTO items (name) VALUES ('while-stopped')")
        .expect("write while the replica is stopped");
    let t = wait_served_by(
        &pair,
        reader,
        &primary_id,
        ROLE_CHANGE_BOUND,
        "SQL thread stopped",
    );
    eprintln!("reads left the stopped replica in {t:?}");
    assert!(
        lb.logs().contains("server reader/replica is DOWN"),
        "{}",
        lb.logs()
    );
    pair.sql("replica", "START SLAVE SQL_THREAD");
    wait_served_by(
        &pair,
        reader,
        &replica_id,
        SERVER_DEADLINE,
        "SQL thread resumed",
    );

    // Real lag: the replica applies events DELAY_S late (MASTER_DELAY); after a write its
    // Seconds_Behind_Master climbs past max_replication_lag and it leaves the read pool, then returns
    // once it has applied the write.
    pair.sql(
        "replica",
        &format!("STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = {DELAY_S}; START SLAVE"),
    );
    let written = Instant::now();
    pair.app_sql_via(writer, "INSERT INTO items (name) VALUES ('lagging')")
        .expect("write for the lag test");
    wait_served_by(
        &pair,
        reader,
        &primary_id,
        Duration::from_secs(MAX_LAG_S) + ROLE_CHANGE_BOUND,
        "replica lagging",
    );
    eprintln!(
        "reads left the lagging replica {:?} after the write (lag bound {MAX_LAG_S} s)",
        written.elapsed()
    );
    assert!(
        corelb_testkit::wait_for(Duration::from_secs(5), || lb
            .logs()
            .contains("server reader/replica is DOWN: check replica lag")),
        "the DOWN reason names the lag: {}",
        lb.logs()
    );
    wait_served_by(
        &pair,
        reader,
        &replica_id,
        SERVER_DEADLINE,
        "replica caught up",
    );
    eprintln!(
        "reads returned to the replica {:?} after the write (delay {DELAY_S} s)",
        written.elapsed()
    );
    pair.sql(
        "replica",
        "STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = 0; START SLAVE",
    );

    // Promote by hand: the replica becomes writable and the primary read-only; the writer role moves.
    pair.sql("primary", "SET GLOBAL read_only = 1");
    pair.sql("replica", "SET GLOBAL read_only = 0");
    let t = wait_served_by(&pair, writer, &replica_id, ROLE_CHANGE_BOUND, "promotion");
    eprintln!("the writer role moved in {t:?}");
    // And back.
    pair.sql("replica", "SET GLOBAL read_only = 1");
    pair.sql("primary", "SET GLOBAL read_only = 0");
    wait_served_by(&pair, writer, &primary_id, ROLE_CHANGE_BOUND, "demotion");
}
