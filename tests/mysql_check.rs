//! The MySQL health check (`corelb::health::probe::probe` with `CheckKind::Mysql`) against a real
//! MariaDB primary and replica, started by `loadgen/stack/mariadb.sh` on free ports in a state
//! directory of this test's own and always purged at the end (a guard's Drop, so also on failure).
//!
//! Needs mariadb-server (Debian). Without it the test says SKIPPED and passes, except under CI
//! (CI=true), where a missing server is a failure (`corelb_testkit::require_or_skip`, as in loadgen's
//! stack tests).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use corelb::config::runtime::{CheckKind, MysqlCheck, MysqlLogin, MysqlRole};
use corelb::health::probe::{probe, Outcome, Verdict};
use corelb_testkit::mariadb::Pair;
use corelb_testkit::tools::processes_mentioning;
use corelb_testkit::{poll_until, require_or_skip};

/// The check account this test has the script create (not the defaults, so the variables are used).
const CHECK_USER: &str = "corelb_mc";
const CHECK_PASSWORD: &str = "mc_Pw_4711";
/// Each check's timeout: a loopback login and two queries take milliseconds.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// Replication threads restart within a second or two; polled up to this long.
const REPLICATION_DEADLINE: Duration = Duration::from_secs(20);
/// Bound on every blocking step of the HTTP mock.
const MOCK_IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Level-1 checks run back to back for the counter comparison.
const POLITE_ROUNDS: u64 = 3;

/// Runs one check on a fresh glommio executor, as a worker's owner task would.
fn check(check: MysqlCheck, addr: SocketAddr, backup: bool) -> Outcome {
    check_within(check, addr, backup, CHECK_TIMEOUT)
}

fn check_within(check: MysqlCheck, addr: SocketAddr, backup: bool, t: Duration) -> Outcome {
    let what = format!("{check:?} {addr} backup={backup}");
    let o = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(1 << 20)
        .spawn(move || async move {
            let kind = CheckKind::Mysql(check);
            probe(&kind, &[], addr, t, backup, &mut Vec::new()).await
        })
        .expect("executor")
        .join()
        .expect("join");
    // MysqlLogin's Debug hides the password.
    eprintln!(
        "check {what}: {:?} \"{}\" ({} ms)",
        o.verdict,
        o.detail,
        o.elapsed.as_millis()
    );
    o
}

fn greeting_only() -> MysqlCheck {
    MysqlCheck {
        login: None,
        role: MysqlRole::Any,
    }
}

fn login(password: &str, role: MysqlRole) -> MysqlCheck {
    MysqlCheck {
        login: Some(MysqlLogin {
            user: CHECK_USER.to_string(),
            password: password.to_string(),
        }),
        role,
    }
}

fn reader() -> MysqlRole {
    MysqlRole::Reader {
        max_lag: Duration::from_secs(10),
    }
}

fn assert_outcome(o: &Outcome, verdict: Verdict, detail_prefix: &str) {
    assert!(
        o.verdict == verdict && o.detail.starts_with(detail_prefix),
        "want {verdict:?} \"{detail_prefix}...\", got {o:?}"
    );
    assert!(o.elapsed < CHECK_TIMEOUT, "{o:?}");
}

/// An HTTP server on 127.0.0.1:0 for one connection: if `eager`, it answers 400 at once (as some
/// servers do to a client that stays silent); else it waits for a request that never comes.
fn http_mock(eager: bool) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let h = thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        conn.set_read_timeout(Some(MOCK_IO_TIMEOUT))
            .expect("timeout");
        conn.set_write_timeout(Some(MOCK_IO_TIMEOUT))
            .expect("timeout");
        if eager {
            let _ = conn.write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        } else {
            // Until the check closes (Ok(0)) or the mock's timeout.
            let _ = conn.read(&mut [0u8; 64]);
        }
    });
    (addr, h)
}

/// Pause between two checks while polling for a verdict (each is a login and two queries).
const VERDICT_POLL: Duration = Duration::from_millis(100);

/// Polls a check until it has `verdict`, failing after `deadline`; returns that outcome.
fn wait_for_verdict(
    what: &str,
    verdict: Verdict,
    deadline: Duration,
    mut run: impl FnMut() -> Outcome,
) -> Outcome {
    poll_until(
        deadline,
        VERDICT_POLL,
        format_args!("{what}: verdict {verdict:?}"),
        || {
            let o = run();
            if o.verdict == verdict {
                Ok(o)
            } else {
                Err(o)
            }
        },
    )
}

#[test]
fn mysql_check_against_mariadb_pair() {
    if !require_or_skip("mysql_check_against_mariadb_pair", &["mariadbd"]) {
        return;
    }
    let pair = Pair::up_with_check_account("mc", CHECK_USER, CHECK_PASSWORD);
    let dir = pair.dir.clone();
    let (primary, replica) = (pair.primary, pair.replica);

    // Level 1 on both; it ends with a refused login, never as a pre-auth abort (which would count
    // toward max_connect_errors): Aborted_connects_preauth stays, Access_denied_errors counts.
    let preauth = pair.counter("primary", "Aborted_connects_preauth");
    let denied = pair.counter("primary", "Access_denied_errors");
    for _ in 0..POLITE_ROUNDS {
        assert_outcome(
            &check(greeting_only(), primary, false),
            Verdict::Pass,
            "greeting from 10.",
        );
    }
    assert_outcome(
        &check(greeting_only(), replica, false),
        Verdict::Pass,
        "greeting from 10.",
    );
    assert_eq!(pair.counter("primary", "Aborted_connects_preauth"), preauth);
    assert_eq!(
        pair.counter("primary", "Access_denied_errors"),
        denied + POLITE_ROUNDS
    );

    // Level 2 leaves with COM_QUIT: no aborted connection or client at all.
    let aborted = (
        pair.counter("replica", "Aborted_connects"),
        pair.counter("replica", "Aborted_clients"),
    );
    assert_outcome(
        &check(login(CHECK_PASSWORD, MysqlRole::Any), replica, false),
        Verdict::Pass,
        "logged in to 10.",
    );
    assert_outcome(
        &check(login(CHECK_PASSWORD, reader()), replica, false),
        Verdict::Pass,
        "replica lag ",
    );
    assert_eq!(
        (
            pair.counter("replica", "Aborted_connects"),
            pair.counter("replica", "Aborted_clients")
        ),
        aborted
    );

    // A wrong password fails with the server's words, which never include the password.
    let wrong = check(login("not_the_password", MysqlRole::Any), primary, false);
    assert_outcome(
        &wrong,
        Verdict::Fail,
        &format!("MySQL error 1045: Access denied for user '{CHECK_USER}'@'127.0.0.1'"),
    );
    assert!(!wrong.detail.contains("not_the_password"), "{wrong:?}");

    // Writer: the primary only.
    assert_outcome(
        &check(login(CHECK_PASSWORD, MysqlRole::Writer), primary, false),
        Verdict::Pass,
        "read_only=0",
    );
    assert_outcome(
        &check(login(CHECK_PASSWORD, MysqlRole::Writer), replica, false),
        Verdict::Fail,
        "read_only=1",
    );

    // Reader: the replica; the primary only as a backup.
    assert_outcome(
        &check(login(CHECK_PASSWORD, reader()), replica, false),
        Verdict::Pass,
        "replica lag ",
    );
    assert_outcome(
        &check(login(CHECK_PASSWORD, reader()), primary, false),
        Verdict::Fail,
        "not a replica",
    );
    assert_outcome(
        &check(login(CHECK_PASSWORD, reader()), primary, true),
        Verdict::Pass,
        "logged in to 10.",
    );

    // The SQL thread stopped: the reader check names it; back after START SLAVE.
    pair.sql("replica", "STOP SLAVE SQL_THREAD");
    let stopped = wait_for_verdict(
        "reader on a stopped SQL thread",
        Verdict::Fail,
        REPLICATION_DEADLINE,
        || check(login(CHECK_PASSWORD, reader()), replica, false),
    );
    assert_eq!(stopped.detail, "replication SQL thread stopped");
    pair.sql("replica", "START SLAVE");
    let back = wait_for_verdict(
        "reader after START SLAVE",
        Verdict::Pass,
        REPLICATION_DEADLINE,
        || check(login(CHECK_PASSWORD, reader()), replica, false),
    );
    assert!(back.detail.starts_with("replica lag "), "{back:?}");

    // Not MySQL: an HTTP server that answers at once, and one that waits for a request.
    let (addr, h) = http_mock(true);
    assert_outcome(
        &check(greeting_only(), addr, false),
        Verdict::Fail,
        "not a MySQL greeting",
    );
    h.join().expect("mock");
    let (addr, h) = http_mock(false);
    let t = Duration::from_millis(300);
    let o = check_within(greeting_only(), addr, false, t);
    assert_eq!(
        (o.verdict, o.detail.as_str()),
        (Verdict::Fail, "timeout after 300ms")
    );
    assert!(o.elapsed < Duration::from_secs(2), "{o:?}");
    h.join().expect("mock");

    // Purge, then nothing of this test is left running.
    let needle = format!("{}/", dir.display());
    drop(pair);
    let left = processes_mentioning(&needle);
    assert!(left.is_empty(), "processes left after purge: {left:?}");
    assert!(!dir.exists(), "{} not deleted", dir.display());
}
