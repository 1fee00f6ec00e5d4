//! Backend health end to end: active checks (owned by one worker per server), passive ejection,
//! backups, admin states, slow start and drain-on-404, against backends that really die and come back.
//!
//! Timing assertions are bounds computed from the configuration plus a named CI slack; waiting for a
//! state uses `wait_for` with such a bound, never a bare sleep. The only fixed waits are the design
//! bound under test itself ("within one control tick of the log line, every worker knows").

use corelb_testkit::client::{Client, Response};
use corelb_testkit::controlled::Controlled;
use corelb_testkit::process::{Cfg, Corelb};
use corelb_testkit::{assert_local_error, wait_for};
use std::collections::HashMap;
use std::thread;
use std::time::{Duration, Instant};

/// corelb's control tick: a published health change reaches every worker within it (design fact).
const TICK: Duration = Duration::from_millis(50);
/// Extra time allowed for scheduling on a loaded 2-core CI machine running a debug build: the check
/// task, the log pipe, the stderr reader thread and our 10 ms polling all add latency.
const SLACK: Duration = Duration::from_millis(400);
/// How long after a log line every worker must route by it: one tick plus scheduling slack for a
/// worker whose control tick was delayed by load.
const PROPAGATION: Duration = Duration::from_millis(50 + 200);
/// The check settings most tests use (fast, so the suite stays short).
const INTERVAL: Duration = Duration::from_millis(100);
const FASTINTER: Duration = Duration::from_millis(50);
const FALL: u32 = 2;
const RISE: u32 = 2;
/// Fresh connections used to probe routing: enough that both workers (connections are spread by the
/// kernel) and both round-robin slots are hit many times.
const PROBES: usize = 30;
/// Pause between paced requests in the long loops, so they do not load the CPU for nothing.
const PACE: Duration = Duration::from_millis(10);

// ---- helpers ----

/// HTTP checks on /health with the given timing and no jitter (so counts are predictable), plus
/// `extra` lines.
fn checked_with(
    cfg: Cfg,
    interval: Duration,
    fastinter: Duration,
    rise: u32,
    fall: u32,
    extra: &[&str],
) -> Cfg {
    let mut lines = vec![
        "type = \"http\"".to_string(),
        "path = \"/health\"".to_string(),
        format!("interval = \"{}ms\"", interval.as_millis()),
        format!("fastinter = \"{}ms\"", fastinter.as_millis()),
        "timeout = \"500ms\"".to_string(),
        "jitter_percent = 0".to_string(),
        format!("rise = {rise}"),
        format!("fall = {fall}"),
    ];
    lines.extend(extra.iter().map(|l| l.to_string()));
    let refs: Vec<&str> = lines.iter().map(|s| s.as_str()).collect();
    cfg.backend_table("backend.check", &refs)
}

fn checked(cfg: Cfg) -> Cfg {
    checked_with(cfg, INTERVAL, FASTINTER, RISE, FALL, &[])
}

/// Time to notice a dead server: the next regular check, then fall-1 more at fastinter.
fn down_bound() -> Duration {
    INTERVAL * FALL + FASTINTER * 2 + SLACK
}

/// Time to bring a server back: rise checks, each at most one interval apart.
fn up_bound() -> Duration {
    INTERVAL * RISE + SLACK
}

/// The `server be/NAME is STATE:` lines logged so far.
fn state_lines(lb: &Corelb, server: &str, state: &str) -> Vec<String> {
    let prefix = format!("corelb: server be/{server} is {state}:");
    lb.logs()
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .map(String::from)
        .collect()
}

/// All `server be/NAME is ...` lines (any state).
fn transitions(lb: &Corelb, server: &str) -> Vec<String> {
    let prefix = format!("corelb: server be/{server} is ");
    lb.logs()
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .map(String::from)
        .collect()
}

/// Wait (up to `bound` after `since`) for the `n`th (1-based) `STATE` line of `server`. Returns the
/// line and when it was seen; panics with the whole log if it does not come in time.
fn wait_line(
    lb: &Corelb,
    server: &str,
    state: &str,
    n: usize,
    since: Instant,
    bound: Duration,
) -> (String, Instant) {
    let left = (since + bound).saturating_duration_since(Instant::now());
    let ok = wait_for(left, || state_lines(lb, server, state).len() >= n);
    let seen = Instant::now();
    assert!(
        ok,
        "no {state} line #{n} for be/{server} within {bound:?} ({:?} elapsed); log:\n{}",
        seen - since,
        lb.logs()
    );
    (state_lines(lb, server, state)[n - 1].clone(), seen)
}

/// Sleep until `t`: only used to reach the instant at which a design bound says a state must hold.
fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        thread::sleep(t - now);
    }
}

fn get_req_close(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n\r\n").into_bytes()
}

/// One GET on a fresh connection (a fresh balancing decision, on whichever worker the kernel picks).
fn fresh_get(lb: &Corelb, path: &str) -> Response {
    let mut c = Client::connect(lb.addr);
    c.send(&get_req_close(path));
    c.read_response()
}

/// One GET on a fresh connection with a Cookie header.
fn fresh_get_cookie(lb: &Corelb, path: &str, cookie: &str) -> Response {
    let mut c = Client::connect(lb.addr);
    c.send(
        format!(
            "GET {path} HTTP/1.1\r\nHost: test.local\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    c.read_response()
}

fn served_by(r: &Response) -> String {
    r.header("x-served-by").unwrap_or("<none>").to_string()
}

/// `n` GETs on fresh connections, each must be a 200; returns how many each server served.
fn spread(lb: &Corelb, n: usize, path: &str) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for i in 0..n {
        let r = fresh_get(lb, &format!("{path}/{i}"));
        assert_eq!(
            r.status,
            200,
            "request {i} of {path}: {}{}\nlog:\n{}",
            r.head.raw_str(),
            r.body_str(),
            lb.logs()
        );
        *m.entry(served_by(&r)).or_insert(0) += 1;
    }
    m
}

fn count(m: &HashMap<String, usize>, name: &str) -> usize {
    m.get(name).copied().unwrap_or(0)
}

// ---- tests ----

/// (1) A killed server leaves rotation within fall x interval (+ fastinter) and comes back within
/// rise x interval of its restart, with exactly one DOWN and one UP line, each with its reason.
#[test]
fn killed_server_goes_down_and_comes_back() {
    let s1 = Controlled::start("s1");
    let s2 = Controlled::start("s2");
    let lb = Corelb::start(&checked(Cfg::new(&[("s1", s1.addr), ("s2", s2.addr)])), 2);

    let m = spread(&lb, PROBES, "/warm");
    assert!(
        count(&m, "s1") > 0 && count(&m, "s2") > 0,
        "both serve: {m:?}"
    );

    let t_kill = Instant::now();
    s1.kill();
    let (line, seen) = wait_line(&lb, "s1", "DOWN", 1, t_kill, down_bound());
    eprintln!(
        "DOWN seen {:?} after the kill (bound {:?})",
        seen - t_kill,
        down_bound()
    );
    assert!(
        line.contains(": check connect") && line.contains("refused"),
        "DOWN reason: {line}"
    );
    assert!(
        line.ends_with("; 1 of 2 servers of the backend up"),
        "DOWN line: {line}"
    );
    // After the bound every request (many fresh connections, so both workers) is served by s2.
    sleep_until(seen + PROPAGATION);
    let m = spread(&lb, PROBES, "/after-kill");
    assert_eq!(count(&m, "s2"), PROBES, "{m:?}");

    // Fresh requests while it restarts: none may reach it before `rise` checks have passed (this is
    // where "out of rotation" is observable: refused connects leave no trace).
    let h_restart = s1.health_reqs();
    let reqs_restart = s1.reqs();
    let t_restart = Instant::now();
    s1.restart();
    let mut i = 0;
    while state_lines(&lb, "s1", "UP").is_empty() && t_restart.elapsed() < up_bound() {
        let r = fresh_get(&lb, &format!("/restarting/{i}"));
        assert_eq!(r.status, 200, "{}", r.head.raw_str());
        i += 1;
    }
    let (line, seen) = wait_line(&lb, "s1", "UP", 1, t_restart, up_bound());
    eprintln!(
        "UP seen {:?} after the restart (bound {:?})",
        seen - t_restart,
        up_bound()
    );
    assert!(line.contains(": check HTTP 200 ("), "UP reason: {line}");
    assert!(
        line.ends_with("; 2 of 2 servers of the backend up"),
        "UP line: {line}"
    );
    sleep_until(seen + PROPAGATION);
    let before = s1.reqs();
    let m = spread(&lb, PROBES, "/after-restart");
    assert!(
        count(&m, "s1") > 0 && count(&m, "s2") > 0,
        "both serve again: {m:?}"
    );
    assert_eq!(s1.reqs() - before, count(&m, "s1"));
    let first_back = s1.arrivals()[reqs_restart];
    assert!(
        first_back.1 >= h_restart + RISE as usize,
        "traffic reached the restarted server after {} checks, before rise = {RISE}",
        first_back.1 - h_restart
    );

    // A few more checks, so a flap would show, then exactly one line per transition.
    let h = s1.health_reqs();
    assert!(
        wait_for(INTERVAL * 3 + SLACK, || s1.health_reqs() >= h + 3),
        "checks continue after UP"
    );
    let lines = transitions(&lb, "s1");
    assert_eq!(lines.len(), 2, "one DOWN and one UP line: {lines:#?}");
    assert!(transitions(&lb, "s2").is_empty(), "{}", lb.logs());
}

/// (2) Each server is checked by one worker: with 2 workers the check rate is 1/interval, not 2/interval.
#[test]
fn checks_run_once_per_server_not_per_worker() {
    let s1 = Controlled::start("s1");
    let s2 = Controlled::start("s2");
    let lb = Corelb::start(&checked(Cfg::new(&[("s1", s1.addr), ("s2", s2.addr)])), 2);
    assert!(
        wait_for(Duration::from_secs(3), || s1.health_reqs() >= 1
            && s2.health_reqs() >= 1),
        "first checks never came; log:\n{}",
        lb.logs()
    );
    const WINDOW: Duration = Duration::from_secs(1);
    let (a0, b0) = (s1.health_reqs(), s2.health_reqs());
    let t0 = Instant::now();
    thread::sleep(WINDOW); // The measurement window itself.
    let took = t0.elapsed();
    let (a, b) = (s1.health_reqs() - a0, s2.health_reqs() - b0);
    eprintln!("checks in {took:?}: s1 {a}, s2 {b}");
    // Expected ~10 each (interval 100 ms, no jitter). Once per worker would be ~20.
    let expected = (took.as_millis() / INTERVAL.as_millis()) as usize;
    for (name, n) in [("s1", a), ("s2", b)] {
        assert!(
            (expected / 2..16).contains(&n),
            "{name}: {n} checks in {took:?} (expected ~{expected}, once per worker would be ~{})",
            expected * 2
        );
    }
    assert!(transitions(&lb, "s1").is_empty() && transitions(&lb, "s2").is_empty());
}

/// (3) A failing check status takes the server down (it still answers traffic, so "out of rotation"
/// is observable) and a passing one brings it back.
#[test]
fn check_status_503_takes_server_down_and_200_brings_it_back() {
    let s1 = Controlled::start("s1");
    let s2 = Controlled::start("s2");
    let lb = Corelb::start(&checked(Cfg::new(&[("s1", s1.addr), ("s2", s2.addr)])), 2);
    let m = spread(&lb, PROBES, "/warm");
    assert!(count(&m, "s1") > 0, "{m:?}");

    let t0 = Instant::now();
    s1.set_health(503);
    let (line, seen) = wait_line(&lb, "s1", "DOWN", 1, t0, down_bound());
    assert!(line.contains(": check HTTP 503 ("), "DOWN reason: {line}");
    sleep_until(seen + PROPAGATION);
    let before = s1.reqs();
    let m = spread(&lb, PROBES, "/down");
    assert_eq!(count(&m, "s2"), PROBES, "{m:?}");
    assert_eq!(s1.reqs(), before, "a DOWN server got traffic");

    let t1 = Instant::now();
    s1.set_health(200);
    let (line, seen) = wait_line(&lb, "s1", "UP", 1, t1, up_bound());
    assert!(line.contains(": check HTTP 200 ("), "UP reason: {line}");
    sleep_until(seen + PROPAGATION);
    let m = spread(&lb, PROBES, "/up");
    assert!(
        count(&m, "s1") > 0 && count(&m, "s2") > 0,
        "both serve: {m:?}"
    );
    let lines = transitions(&lb, "s1");
    assert_eq!(lines.len(), 2, "{lines:#?}");
}

/// (4) A server dying under an in-flight request: the client gets a clean 502 or a 200 retried on the
/// other server, promptly; a POST is never sent twice.
#[test]
fn in_flight_requests_when_a_server_dies() {
    const SLOW_MS: u64 = 1500;
    let a = Controlled::start("a");
    let b = Controlled::start("b");
    let cfg = Cfg::new(&[("a", a.addr), ("b", b.addr)]).backend_timeout("response = \"10s\"");
    let lb = Corelb::start(&cfg, 1);
    // How long after the kill an answer may take: a retry waits SLOW_MS on the other server.
    let answer_bound = Duration::from_millis(SLOW_MS) + SLACK * 2;

    // GET.
    let mut c = Client::connect(lb.addr);
    c.send(&get_req_close(&format!("/slow/{SLOW_MS}")));
    assert!(
        wait_for(Duration::from_secs(5), || a.reqs() + b.reqs() == 1),
        "the GET reached no server"
    );
    let (victim, other) = if a.reqs() == 1 { (&a, &b) } else { (&b, &a) };
    let t = Instant::now();
    victim.kill();
    let r = c
        .try_read_response(false, answer_bound)
        .unwrap_or_else(|e| {
            panic!(
                "GET in flight on a killed server: no clean answer within {answer_bound:?}: {e}\nlog:\n{}",
                lb.logs()
            )
        });
    eprintln!(
        "GET in flight on a killed server: {} after {:?}",
        r.status,
        t.elapsed()
    );
    match r.status {
        200 => {
            assert_eq!(served_by(&r), other.name(), "{}", r.head.raw_str());
            assert_eq!(
                r.body_str(),
                format!("{} GET /slow/{SLOW_MS}", other.name())
            );
        }
        502 => assert_local_error(&r, 502),
        s => panic!(
            "GET in flight: want 502 or a retried 200, got {s}:\n{}",
            r.head.raw_str()
        ),
    }
    assert!(t.elapsed() < answer_bound, "{:?}", t.elapsed());

    // POST: restart the victim (no checks configured: it is in rotation at once).
    victim.restart();
    let posts = |s: &Controlled| s.requests().iter().filter(|r| r.method() == "POST").count();
    let mut c = Client::connect(lb.addr);
    c.send(
        format!(
            "POST /slow/{SLOW_MS} HTTP/1.1\r\nHost: test.local\r\nContent-Length: 4\r\nConnection: close\r\n\r\nonce"
        )
        .as_bytes(),
    );
    assert!(
        wait_for(Duration::from_secs(5), || posts(&a) + posts(&b) == 1),
        "the POST reached no server"
    );
    let (victim, other) = if posts(&a) == 1 { (&a, &b) } else { (&b, &a) };
    let t = Instant::now();
    victim.kill();
    let r = c
        .try_read_response(false, answer_bound)
        .unwrap_or_else(|e| panic!("POST in flight on a killed server: no clean answer: {e}"));
    assert_local_error(&r, 502);
    assert!(t.elapsed() < SLACK * 2, "502 took {:?}", t.elapsed());
    assert_eq!(posts(other), 0, "the POST was sent twice");
    assert_eq!(posts(victim), 1);
}

/// (5) With every server down the answer is an immediate 503 with retry-after: no connect attempt, no
/// waiting for a connect timeout.
#[test]
fn all_servers_down_is_an_immediate_503() {
    let s1 = Controlled::start("s1");
    let s2 = Controlled::start("s2");
    let cfg =
        checked(Cfg::new(&[("s1", s1.addr), ("s2", s2.addr)])).backend_timeout("connect = \"2s\"");
    let lb = Corelb::start(&cfg, 2);
    // s1 dies; s2 fails its check but would still serve traffic, which shows no attempt is made.
    let t0 = Instant::now();
    s1.kill();
    s2.set_health(503);
    let (_, seen1) = wait_line(&lb, "s1", "DOWN", 1, t0, down_bound());
    let (_, seen2) = wait_line(&lb, "s2", "DOWN", 1, t0, down_bound());
    let all = state_lines(&lb, "s1", "DOWN")
        .into_iter()
        .chain(state_lines(&lb, "s2", "DOWN"))
        .any(|l| l.ends_with("; 0 of 2 servers of the backend up"));
    assert!(all, "no line says 0 of 2 up:\n{}", lb.logs());
    sleep_until(seen1.max(seen2) + PROPAGATION);
    let before = s2.reqs();
    for i in 0..10 {
        let t = Instant::now();
        let r = fresh_get(&lb, &format!("/none/{i}"));
        let took = t.elapsed();
        assert_local_error(&r, 503);
        assert!(
            r.header("retry-after").is_some(),
            "503 without retry-after:\n{}",
            r.head.raw_str()
        );
        assert!(
            took < Duration::from_millis(200),
            "503 took {took:?} (connect timeout is 2 s)"
        );
    }
    assert_eq!(s2.reqs(), before, "a DOWN server was tried");
}

/// (6a) A backup serves only while no normal server is up, and hands back as soon as one returns.
#[test]
fn backup_serves_only_when_all_normal_servers_are_down() {
    let s1 = Controlled::start("s1");
    let s2 = Controlled::start("s2");
    let bk = Controlled::start("bk");
    let cfg = checked(Cfg::new(&[
        ("s1", s1.addr),
        ("s2", s2.addr),
        ("bk", bk.addr),
    ]))
    .server_line("bk", "backup = true");
    let lb = Corelb::start(&cfg, 2);
    let m = spread(&lb, PROBES, "/normal");
    assert_eq!(
        count(&m, "bk"),
        0,
        "backup used while normals are up: {m:?}"
    );
    assert!(count(&m, "s1") > 0 && count(&m, "s2") > 0, "{m:?}");

    let t0 = Instant::now();
    s1.kill();
    s2.kill();
    let (_, seen1) = wait_line(&lb, "s1", "DOWN", 1, t0, down_bound());
    let (_, seen2) = wait_line(&lb, "s2", "DOWN", 1, t0, down_bound());
    sleep_until(seen1.max(seen2) + PROPAGATION);
    let m = spread(&lb, PROBES, "/backup");
    assert_eq!(count(&m, "bk"), PROBES, "{m:?}");

    let t1 = Instant::now();
    s1.restart();
    let (_, seen) = wait_line(&lb, "s1", "UP", 1, t1, up_bound());
    sleep_until(seen + PROPAGATION);
    let before = bk.reqs();
    let m = spread(&lb, PROBES, "/back");
    assert_eq!(count(&m, "s1"), PROBES, "{m:?}");
    assert_eq!(
        bk.reqs(),
        before,
        "backup still used with a normal server up"
    );
}

/// Normal s1 fails its check; two backups. Returns what each server served afterwards.
fn backups_with(allbackups: bool) -> HashMap<String, usize> {
    let s1 = Controlled::start("s1");
    let b1 = Controlled::start("b1");
    let b2 = Controlled::start("b2");
    let mut cfg = checked(Cfg::new(&[
        ("s1", s1.addr),
        ("b1", b1.addr),
        ("b2", b2.addr),
    ]))
    .server_line("b1", "backup = true")
    .server_line("b2", "backup = true");
    if allbackups {
        cfg = cfg.backend_line("allbackups = true");
    }
    let lb = Corelb::start(&cfg, 2);
    let t0 = Instant::now();
    s1.set_health(503);
    let (_, seen) = wait_line(&lb, "s1", "DOWN", 1, t0, down_bound());
    sleep_until(seen + PROPAGATION);
    let before = s1.reqs();
    let m = spread(&lb, PROBES, "/b");
    assert_eq!(s1.reqs(), before, "DOWN normal server got traffic");
    m
}

/// (6b) Only the first backup takes over, unless allbackups = true.
#[test]
fn first_backup_only_unless_allbackups() {
    let m = backups_with(false);
    assert_eq!(count(&m, "b1"), PROBES, "only the first backup: {m:?}");
    let m = backups_with(true);
    assert!(
        count(&m, "b1") > 0 && count(&m, "b2") > 0 && count(&m, "b1") + count(&m, "b2") == PROBES,
        "allbackups: both backups: {m:?}"
    );
}

/// Send paced fresh GETs (any status accepted) until `cond` holds or `bound` passes; returns whether
/// it held. Every response must be a well-formed 200 or 500.
fn traffic_until(lb: &Corelb, bound: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + bound;
    let mut i = 0usize;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        let r = fresh_get(lb, &format!("/t/{i}"));
        assert!(
            r.status == 200 || r.status == 500,
            "unexpected {}: {}",
            r.status,
            r.head.raw_str()
        );
        i += 1;
        thread::sleep(PACE);
    }
}

/// Parses "... ejected for N ms; ..." from a passive DOWN line.
fn ejected_ms(line: &str) -> u64 {
    let rest = line
        .split("ejected for ")
        .nth(1)
        .unwrap_or_else(|| panic!("no ejection time in {line}"));
    rest.split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("bad ejection time in {line}"))
}

/// (7) Passive ejection without active checks: error_limit 5xx eject at once, for `eject`, then the
/// server returns; a back-to-back ejection lasts twice as long.
#[test]
fn passive_ejection_without_checks() {
    const EJECT: Duration = Duration::from_secs(1);
    let bad = Controlled::start("bad");
    let good = Controlled::start("good");
    bad.set_status(500);
    let cfg = Cfg::new(&[("bad", bad.addr), ("good", good.addr)]).backend_table(
        "backend.passive",
        &["error_limit = 3", "eject = \"1s\"", "max_eject = \"10s\""],
    );
    let lb = Corelb::start(&cfg, 1);

    let t0 = Instant::now();
    assert!(
        traffic_until(&lb, Duration::from_secs(5), || !state_lines(
            &lb, "bad", "DOWN"
        )
        .is_empty()),
        "never ejected; bad got {} requests; log:\n{}",
        bad.reqs(),
        lb.logs()
    );
    let (line, _) = wait_line(&lb, "bad", "DOWN", 1, t0, Duration::from_secs(5));
    assert!(
        line.contains(": passive: 3 consecutive errors on a worker, ejected for 1000 ms;"),
        "{line}"
    );
    // One worker: ejected on the third error, before any further request could reach it.
    assert_eq!(bad.reqs(), 3, "requests after the third error reached it");
    let ejected_at = bad.arrivals()[2].0;

    // Traffic keeps flowing to `good` until the ejection ends and `bad` is back.
    let (up, up_seen) = {
        let ok = traffic_until(&lb, EJECT + SLACK * 2, || {
            !state_lines(&lb, "bad", "UP").is_empty()
        });
        assert!(ok, "never returned; log:\n{}", lb.logs());
        (state_lines(&lb, "bad", "UP")[0].clone(), Instant::now())
    };
    assert!(up.contains("passive ejection ended"), "{up}");
    let held = up_seen - ejected_at;
    eprintln!("passive: first ejection held {held:?}");
    assert!(
        held >= EJECT - TICK && held <= EJECT + SLACK,
        "ejection lasted {held:?}, want ~{EJECT:?}"
    );
    // No request reached it during the ejection (allowing the return's own tick).
    let early: Vec<_> = bad
        .arrivals()
        .iter()
        .skip(3)
        .map(|(t, _)| *t - ejected_at)
        .filter(|d| *d < EJECT - TICK)
        .collect();
    assert!(early.is_empty(), "traffic during the ejection at {early:?}");

    // It gets traffic again, fails again: a back-to-back ejection doubles to 2000 ms.
    let t1 = Instant::now();
    assert!(
        traffic_until(&lb, Duration::from_secs(5), || state_lines(
            &lb, "bad", "DOWN"
        )
        .len()
            >= 2),
        "not ejected again; log:\n{}",
        lb.logs()
    );
    let (line2, _) = wait_line(&lb, "bad", "DOWN", 2, t1, Duration::from_secs(1));
    assert_eq!(ejected_ms(&line2), 2000, "{line2}");
    assert_eq!(bad.reqs(), 6, "{}", lb.logs());
    assert!(good.reqs() > 0);
}

/// (8) Passive ejection with an active check: the server returns only after `rise` passing checks,
/// which start when the ejection ends.
#[test]
fn passive_ejection_with_checks_needs_rise_passes() {
    const RISE3: u32 = 3;
    const EJECT: Duration = Duration::from_millis(500);
    let bad = Controlled::start("bad");
    let good = Controlled::start("good");
    bad.set_status(500);
    let cfg = checked_with(
        Cfg::new(&[("bad", bad.addr), ("good", good.addr)]),
        INTERVAL,
        FASTINTER,
        RISE3,
        FALL,
        &[],
    )
    .backend_table(
        "backend.passive",
        &[
            "error_limit = 3",
            "eject = \"500ms\"",
            "max_eject = \"10s\"",
        ],
    );
    let lb = Corelb::start(&cfg, 1);
    assert!(
        traffic_until(&lb, Duration::from_secs(5), || !state_lines(
            &lb, "bad", "DOWN"
        )
        .is_empty()),
        "never ejected; log:\n{}",
        lb.logs()
    );
    let down = state_lines(&lb, "bad", "DOWN")[0].clone();
    assert!(down.contains(": passive: 3 consecutive errors"), "{down}");
    assert_eq!(bad.reqs(), 3);
    // Checks pause during the ejection (a running one finishes before the ejection is processed), so
    // this is the count at the ejection: we saw the line well within EJECT.
    let h0 = bad.health_reqs();
    bad.set_status(200);

    let t0 = Instant::now();
    let bound = EJECT + INTERVAL * RISE3 + SLACK;
    assert!(
        traffic_until(&lb, bound, || !state_lines(&lb, "bad", "UP").is_empty()),
        "not back within {bound:?}; log:\n{}",
        lb.logs()
    );
    let up = state_lines(&lb, "bad", "UP")[0].clone();
    assert!(up.contains(": check HTTP 200 ("), "{up}");
    assert!(
        t0.elapsed() >= EJECT - TICK * 2,
        "back after {:?}",
        t0.elapsed()
    );
    // Now traffic reaches it again, and its first request came after `rise` checks since ejection.
    assert!(
        traffic_until(&lb, PROPAGATION + SLACK, || bad.reqs() > 3),
        "no traffic after UP"
    );
    let first_back = bad.arrivals()[3];
    assert!(
        first_back.1 >= h0 + RISE3 as usize,
        "returned after {} checks, want {RISE3}",
        first_back.1 - h0
    );
    assert_eq!(state_lines(&lb, "bad", "DOWN").len(), 1, "{}", lb.logs());
}

/// (9) Slow start: a returning server gets a small share at first, about half after the period.
#[test]
fn slow_start_ramps_a_returning_server() {
    const SLOWSTART: Duration = Duration::from_secs(2);
    const EARLY: Duration = Duration::from_millis(300);
    let s1 = Controlled::start("s1");
    let s2 = Controlled::start("s2");
    let cfg =
        checked(Cfg::new(&[("s1", s1.addr), ("s2", s2.addr)])).backend_line("slowstart = \"2s\"");
    let lb = Corelb::start(&cfg, 1);
    let t0 = Instant::now();
    s1.set_health(503);
    let (_, seen) = wait_line(&lb, "s1", "DOWN", 1, t0, down_bound());
    sleep_until(seen + PROPAGATION);
    let t1 = Instant::now();
    s1.set_health(200);
    let (_, up_seen) = wait_line(&lb, "s1", "UP", 1, t1, up_bound());

    // Keep-alive requests as fast as they go for EARLY after the UP line.
    let mut c = Client::connect(lb.addr);
    let mut early = HashMap::new();
    let mut i = 0;
    while Instant::now() < up_seen + EARLY && i < 10_000 {
        let r = c.get(&format!("/early/{i}"));
        assert_eq!(r.status, 200);
        *early.entry(served_by(&r)).or_insert(0usize) += 1;
        i += 1;
    }
    let n: usize = early.values().sum();
    assert!(n >= 20, "too few requests to judge: {early:?}");
    let share = count(&early, "s1") as f64 / n as f64;
    eprintln!("slow start, first {EARLY:?}: {early:?}");
    assert!(
        share < 0.30,
        "s1 got {:.0} % in the first {EARLY:?} of its slow start: {early:?}",
        share * 100.0
    );

    sleep_until(up_seen + SLOWSTART + Duration::from_millis(500));
    let mut late = HashMap::new();
    for i in 0..100 {
        let r = c.get(&format!("/late/{i}"));
        assert_eq!(r.status, 200);
        *late.entry(served_by(&r)).or_insert(0usize) += 1;
    }
    let share = count(&late, "s1") as f64 / 100.0;
    eprintln!("slow start, after the ramp: {late:?}");
    assert!(
        (0.40..=0.60).contains(&share),
        "after the ramp s1 should get ~50 %: {late:?}"
    );
}

/// (10) Admin states from the config: maint gets neither traffic nor checks; drain gets no new
/// traffic, even while its checks pass.
#[test]
fn maint_and_drain_from_config() {
    let m1 = Controlled::start("m1");
    let s2 = Controlled::start("s2");
    let d3 = Controlled::start("d3");
    let cfg = checked(Cfg::new(&[
        ("m1", m1.addr),
        ("s2", s2.addr),
        ("d3", d3.addr),
    ]))
    .server_line("m1", "state = \"maint\"")
    .server_line("d3", "state = \"drain\"");
    let lb = Corelb::start(&cfg, 2);
    // Several check rounds, so a passing check had every chance to (wrongly) undo the drain.
    assert!(
        wait_for(Duration::from_secs(3), || s2.health_reqs() >= 5),
        "checks are not running; log:\n{}",
        lb.logs()
    );
    let m = spread(&lb, PROBES, "/admin");
    assert_eq!(count(&m, "s2"), PROBES, "{m:?}");
    assert_eq!(
        m1.conns(),
        0,
        "a maint server was connected to (checks or traffic)"
    );
    assert_eq!(m1.health_reqs(), 0);
    assert_eq!(d3.reqs(), 0, "a draining server got new traffic");
}

/// (11) disable_on_404: a 404 on the check drains the server (one DRAIN line): fresh clients no longer
/// reach it, cookie-sticky ones still do; a 200 brings it back.
#[test]
fn check_404_drains_with_disable_on_404() {
    let s1 = Controlled::start("s1");
    let s2 = Controlled::start("s2");
    let cfg = checked_with(
        Cfg::new(&[("s1", s1.addr), ("s2", s2.addr)]),
        INTERVAL,
        FASTINTER,
        RISE,
        FALL,
        &["disable_on_404 = true"],
    )
    .backend_table("backend.cookie", &["name = \"SRV\""])
    .server_line("s1", "cookie = \"c1\"");
    let lb = Corelb::start(&cfg, 2);
    let m = spread(&lb, PROBES, "/warm");
    assert!(count(&m, "s1") > 0, "{m:?}");

    let t0 = Instant::now();
    s1.set_health(404);
    // Drain takes one check (no fall count): the next regular check.
    let (line, seen) = wait_line(&lb, "s1", "DRAIN", 1, t0, INTERVAL + SLACK);
    assert!(line.contains(": check HTTP 404 ("), "{line}");
    sleep_until(seen + PROPAGATION);
    let before = s1.reqs();
    let m = spread(&lb, PROBES, "/drained");
    assert_eq!(count(&m, "s2"), PROBES, "{m:?}");
    assert_eq!(s1.reqs(), before, "a draining server got a new session");
    for i in 0..5 {
        let r = fresh_get_cookie(&lb, &format!("/sticky/{i}"), "SRV=c1");
        assert_eq!(r.status, 200);
        assert_eq!(
            served_by(&r),
            "s1",
            "a sticky client left a draining server"
        );
    }

    let t1 = Instant::now();
    s1.set_health(200);
    let (line, seen) = wait_line(&lb, "s1", "UP", 1, t1, INTERVAL + SLACK);
    assert!(line.contains(": check HTTP 200 ("), "{line}");
    sleep_until(seen + PROPAGATION);
    let m = spread(&lb, PROBES, "/undrained");
    assert!(count(&m, "s1") > 0, "{m:?}");
    assert_eq!(state_lines(&lb, "s1", "DRAIN").len(), 1, "{}", lb.logs());
    assert!(state_lines(&lb, "s1", "DOWN").is_empty(), "{}", lb.logs());
}

/// `start_down`: servers take no traffic before `rise` passing checks; a server whose checks fail
/// never takes any, and never logs a transition (it was down from the start).
#[test]
fn start_down_waits_for_rise_passing_checks() {
    let s1 = Controlled::start("s1");
    let s2 = Controlled::start("s2");
    s2.set_health(503);
    let cfg = checked_with(
        Cfg::new(&[("s1", s1.addr), ("s2", s2.addr)]),
        Duration::from_millis(300),
        Duration::from_millis(300),
        RISE,
        FALL,
        &["start_down = true"],
    );
    let lb = Corelb::start(&cfg, 2);
    // Before any check has passed: no server is up, the answer is the immediate 503.
    let r = fresh_get(&lb, "/early");
    if s1.health_reqs() == 0 {
        assert_eq!(
            r.status,
            503,
            "served before any check: {}",
            r.head.raw_str()
        );
    }
    let started = Instant::now();
    let (up, _) = wait_line(&lb, "s1", "UP", 1, started, Duration::from_secs(5));
    eprintln!("s1 came up: {up}");
    assert!(
        s1.health_reqs() >= RISE as usize,
        "UP after {} checks, rise is {RISE}",
        s1.health_reqs()
    );
    // The design bound under test: within PROPAGATION of the log line, every worker routes by it.
    thread::sleep(PROPAGATION);
    let m = spread(&lb, PROBES, "/after");
    assert_eq!(count(&m, "s1"), PROBES, "{m:?}");
    assert_eq!(s2.reqs(), 0, "a server whose checks fail took traffic");
    assert!(
        transitions(&lb, "s2").is_empty(),
        "{:?}",
        transitions(&lb, "s2")
    );
    // The first coming up is not a return: no slow start, no back-off state to reset.
    assert_eq!(
        transitions(&lb, "s1").len(),
        1,
        "{:?}",
        transitions(&lb, "s1")
    );
}
