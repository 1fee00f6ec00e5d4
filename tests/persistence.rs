//! Cookie persistence end to end ([backend.cookie]): the inserted cookie and its attributes, the
//! cookie hidden from the servers, stickiness across connections and workers, moving off a down
//! server, garbage values, explicit server cookies, and drain (by health check and by config).

use corelb_testkit::backends::Backend;
use corelb_testkit::client::{Client, Response};
use corelb_testkit::cluster::{checked, config, served_by, wait_log};
use corelb_testkit::process::Corelb;
use corelb_testkit::wait_for;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Health checks fast enough that a state change happens within a fraction of a second, with a
/// timeout generous enough that a loaded machine does not fail a check spuriously.
const CHECK: &str = "[backend.check]\ntype = \"http\"\npath = \"/health\"\ninterval = \"200ms\"\n\
                     fastinter = \"50ms\"\ntimeout = \"1s\"\nrise = 2\nfall = 2\n";
const COOKIE: &str = "[backend.cookie]\nname = \"SERVERID\"\n";
/// How long a health state change may take to be logged (fall checks on a loaded machine).
const STATE_CHANGE_DEADLINE: Duration = Duration::from_secs(10);
/// How long a logged state change may take to reach every worker (documented as 50 ms).
const PROPAGATION_DEADLINE: Duration = Duration::from_secs(5);

/// GET `path`, with `Cookie: cookie` when given, on `c`.
fn get_cookie(c: &mut Client, path: &str, cookie: Option<&str>) -> Response {
    let extra = cookie.map_or(String::new(), |v| format!("Cookie: {v}\r\n"));
    c.send(format!("GET {path} HTTP/1.1\r\nHost: test.local\r\n{extra}\r\n").as_bytes());
    c.read_response()
}

/// The SERVERID value a response sets, after checking the exact attributes and `Cache-Control:
/// private`; None if it sets no cookie.
fn set_serverid(r: &Response) -> Option<String> {
    let sets = r.head.headers_named("set-cookie");
    if sets.is_empty() {
        return None;
    }
    assert_eq!(sets.len(), 1, "several Set-Cookie: {}", r.head.raw_str());
    let v = sets[0];
    let value = v
        .strip_prefix("SERVERID=")
        .and_then(|rest| rest.strip_suffix("; Path=/; HttpOnly"))
        .unwrap_or_else(|| panic!("unexpected Set-Cookie {v:?}"));
    assert!(
        !value.is_empty() && value.bytes().all(|c| c.is_ascii_graphic() && c != b';'),
        "cookie value {value:?} is not a token"
    );
    assert!(
        r.head.list_contains("cache-control", "private"),
        "a response setting the cookie lacks Cache-Control: private:\n{}",
        r.head.raw_str()
    );
    Some(value.to_string())
}

/// From fresh clients (no cookie), the cookie value each of `names` gets. Panics if some server is
/// never chosen within a bounded number of tries.
fn learn_cookies(addr: SocketAddr, names: &[&str]) -> Vec<String> {
    /// Round robin reaches every server within a few requests per worker.
    const TRIES: usize = 64;
    let mut found: Vec<Option<String>> = vec![None; names.len()];
    for i in 0..TRIES {
        if found.iter().all(Option::is_some) {
            break;
        }
        let r = get_cookie(&mut Client::connect(addr), &format!("/learn{i}"), None);
        let who = served_by(&r);
        let value = set_serverid(&r)
            .unwrap_or_else(|| panic!("first response without the cookie:\n{}", r.head.raw_str()));
        let idx = names
            .iter()
            .position(|n| *n == who)
            .unwrap_or_else(|| panic!("unknown server {who}"));
        if let Some(prev) = &found[idx] {
            assert_eq!(prev, &value, "{who} got two different cookie values");
        }
        found[idx] = Some(value);
    }
    found
        .into_iter()
        .zip(names)
        .map(|(v, n)| v.unwrap_or_else(|| panic!("{n} never chosen in {TRIES} fresh requests")))
        .collect()
}

/// Real requests (not health checks) a mock received.
fn real_requests(b: &Backend) -> Vec<corelb_testkit::backends::Request> {
    b.requests()
        .into_iter()
        .filter(|r| r.target() != "/health")
        .collect()
}

#[test]
fn cookie_is_inserted_sticky_and_hidden_from_the_server() {
    /// Connections the sticky client spreads its requests over (they land on both workers).
    const CONNS: usize = 10;
    const PER_CONN: usize = 100;
    let a = Backend::echo("s1");
    let b = Backend::echo("s2");
    let toml = config(&[], COOKIE, &[("s1", a.addr, ""), ("s2", b.addr, "")]);
    let lb = Corelb::start_toml(&toml, 2);
    let values = learn_cookies(lb.addr, &["s1", "s2"]);
    assert_ne!(values[0], values[1], "both servers share a cookie value");
    for (v, srv) in values.iter().zip([&a, &b]) {
        // The default is a 16-hex-digit hash of the names: never the address.
        assert!(
            v.len() == 16 && v.bytes().all(|c| c.is_ascii_hexdigit()),
            "default cookie value {v:?} is not 16 hex digits"
        );
        assert!(
            !v.contains(&srv.addr.port().to_string()) && !v.contains("127.0.0.1"),
            "cookie value {v:?} reveals the address {}",
            srv.addr
        );
    }
    // A client stuck to s2 (so that round robin would otherwise send half its requests to s1).
    let cookie = format!("a=1; SERVERID={}; b=2", values[1]);
    let before = b.reqs();
    for conn in 0..CONNS {
        let mut c = Client::connect(lb.addr);
        for i in 0..PER_CONN {
            let r = get_cookie(&mut c, &format!("/sticky{conn}-{i}"), Some(&cookie));
            assert_eq!(served_by(&r), "s2", "sticky request left its server");
            assert!(
                !r.has("set-cookie"),
                "a request with a valid cookie got a new one:\n{}",
                r.head.raw_str()
            );
        }
    }
    assert_eq!(b.reqs() - before, CONNS * PER_CONN);
    // The servers never see SERVERID, and do see the client's other cookies.
    let sticky: Vec<_> = real_requests(&b)
        .into_iter()
        .filter(|r| r.target().starts_with("/sticky"))
        .collect();
    assert_eq!(sticky.len(), CONNS * PER_CONN);
    for r in real_requests(&a).iter().chain(&real_requests(&b)) {
        for v in r.head.headers_named("cookie") {
            assert!(!v.contains("SERVERID"), "the server saw {v:?}");
        }
    }
    for r in &sticky {
        let cookies: Vec<&str> = r
            .head
            .headers_named("cookie")
            .iter()
            .flat_map(|v| v.split(';'))
            .map(str::trim)
            .collect();
        assert!(
            cookies.contains(&"a=1") && cookies.contains(&"b=2"),
            "the client's other cookies were lost: {}",
            r.head.raw_str()
        );
    }
}

#[test]
fn sticky_client_moves_when_its_server_goes_down() {
    let (a, sa) = checked("s1");
    let (b, _sb) = checked("s2");
    let toml = config(
        &[],
        &format!("{CHECK}{COOKIE}"),
        &[("s1", a.addr, ""), ("s2", b.addr, "")],
    );
    let lb = Corelb::start_toml(&toml, 2);
    let values = learn_cookies(lb.addr, &["s1", "s2"]);
    let mut c = Client::connect(lb.addr);
    let old = format!("SERVERID={}", values[0]);
    for i in 0..10 {
        assert_eq!(
            served_by(&get_cookie(&mut c, &format!("/pre{i}"), Some(&old))),
            "s1"
        );
    }
    sa.store(500, Ordering::SeqCst);
    wait_log(&lb, "server be/s1 is DOWN", STATE_CHANGE_DEADLINE);
    // Until the change reaches this connection's worker, s1 (still serving) may answer.
    let mut moved = None;
    assert!(
        wait_for(PROPAGATION_DEADLINE, || {
            let r = get_cookie(&mut c, "/moving", Some(&old));
            if served_by(&r) == "s2" {
                moved = Some(r);
                true
            } else {
                assert!(!r.has("set-cookie"), "{}", r.head.raw_str());
                false
            }
        }),
        "the sticky client still reaches s1 after it was logged DOWN"
    );
    let r = moved.unwrap();
    let new = set_serverid(&r).unwrap_or_else(|| {
        panic!(
            "rebalanced request got no new cookie:\n{}",
            r.head.raw_str()
        )
    });
    assert_eq!(new, values[1], "the new cookie does not name s2");
    // Then it stays on s2, on this and new connections, with no further cookie.
    let cookie = format!("SERVERID={new}");
    for i in 0..20 {
        let mut fresh = Client::connect(lb.addr);
        for c in [&mut c, &mut fresh] {
            let r = get_cookie(c, &format!("/post{i}"), Some(&cookie));
            assert_eq!(served_by(&r), "s2");
            assert!(!r.has("set-cookie"), "{}", r.head.raw_str());
        }
    }
}

#[test]
fn garbage_or_unknown_cookie_is_rebalanced_and_explicit_values_are_used() {
    let a = Backend::echo("s1");
    let b = Backend::echo("s2");
    let toml = config(
        &[],
        COOKIE,
        &[
            ("s1", a.addr, "cookie = \"a1\""),
            ("s2", b.addr, "cookie = \"b2\""),
        ],
    );
    let lb = Corelb::start_toml(&toml, 1);
    let values = learn_cookies(lb.addr, &["s1", "s2"]);
    assert_eq!(values, ["a1", "b2"], "explicit server cookies not used");
    // The explicit values are honoured.
    let mut c = Client::connect(lb.addr);
    for i in 0..10 {
        for (v, who) in [("a1", "s1"), ("b2", "s2")] {
            let r = get_cookie(&mut c, &format!("/x{i}"), Some(&format!("SERVERID={v}")));
            assert_eq!(served_by(&r), who);
            assert!(!r.has("set-cookie"), "{}", r.head.raw_str());
        }
    }
    // Garbage, unknown, empty, and a value that only prefixes a real one: each balanced normally
    // (round robin: both servers get some) with a fresh cookie naming the server that answered.
    let mut seen = Vec::new();
    for bad in ["garbage", "0123456789abcdef", "", "a", "a1x", "%00%ff"] {
        for i in 0..2 {
            let r = get_cookie(
                &mut c,
                &format!("/bad{i}"),
                Some(&format!("x=y; SERVERID={bad}")),
            );
            let who = served_by(&r);
            let v = set_serverid(&r).unwrap_or_else(|| {
                panic!("cookie {bad:?} got no fresh cookie:\n{}", r.head.raw_str())
            });
            let want = if who == "s1" { "a1" } else { "b2" };
            assert_eq!(
                v, want,
                "cookie {bad:?}: fresh cookie names the wrong server"
            );
            seen.push(who);
        }
    }
    assert!(
        seen.iter().any(|s| s == "s1") && seen.iter().any(|s| s == "s2"),
        "bad cookies were not balanced: {seen:?}"
    );
}

#[test]
fn drain_by_health_check_keeps_sticky_clients_only() {
    /// New clients after the drain, none of which may reach s1.
    const NEW_CLIENTS: usize = 200;
    let (a, sa) = checked("s1");
    let (b, _sb) = checked("s2");
    let check = format!("{CHECK}disable_on_404 = true\n");
    let toml = config(
        &[],
        &format!("{check}{COOKIE}"),
        &[("s1", a.addr, ""), ("s2", b.addr, "")],
    );
    let lb = Corelb::start_toml(&toml, 2);
    let values = learn_cookies(lb.addr, &["s1", "s2"]);
    let sticky = format!("SERVERID={}", values[0]);
    // Sticky clients on s1, connected before the drain.
    let mut clients: Vec<Client> = (0..4).map(|_| Client::connect(lb.addr)).collect();
    for c in &mut clients {
        assert_eq!(served_by(&get_cookie(c, "/before", Some(&sticky))), "s1");
    }
    sa.store(404, Ordering::SeqCst);
    wait_log(&lb, "server be/s1 is DRAIN", STATE_CHANGE_DEADLINE);
    // Until every worker knows: a batch of new clients on fresh connections all avoid s1.
    assert!(
        wait_for(PROPAGATION_DEADLINE, || (0..10).all(|i| {
            let r = get_cookie(&mut Client::connect(lb.addr), &format!("/probe{i}"), None);
            served_by(&r) == "s2"
        })),
        "new clients still reach s1 after it was logged DRAIN"
    );
    let a_before = real_requests(&a).len();
    for i in 0..NEW_CLIENTS {
        let r = get_cookie(&mut Client::connect(lb.addr), &format!("/new{i}"), None);
        assert_eq!(
            served_by(&r),
            "s2",
            "new client {i} reached the draining s1"
        );
        assert_eq!(set_serverid(&r).as_deref(), Some(values[1].as_str()));
    }
    assert_eq!(real_requests(&a).len(), a_before);
    // Sticky clients, old connections and new ones, still reach s1, with no new cookie.
    for _ in 0..10 {
        clients.push(Client::connect(lb.addr));
    }
    for (n, c) in clients.iter_mut().enumerate() {
        for i in 0..5 {
            let r = get_cookie(c, &format!("/sticky{n}-{i}"), Some(&sticky));
            assert_eq!(served_by(&r), "s1", "a sticky client left the draining s1");
            assert!(!r.has("set-cookie"), "{}", r.head.raw_str());
        }
    }
}

#[test]
fn drain_in_config_takes_only_sticky_clients() {
    const NEW_CLIENTS: usize = 200;
    let a = Backend::echo("s1");
    let b = Backend::echo("s2");
    let toml = config(
        &[],
        COOKIE,
        &[
            ("s1", a.addr, "state = \"drain\"\ncookie = \"a1\""),
            ("s2", b.addr, "cookie = \"b2\""),
        ],
    );
    let lb = Corelb::start_toml(&toml, 2);
    for i in 0..NEW_CLIENTS {
        let r = get_cookie(&mut Client::connect(lb.addr), &format!("/new{i}"), None);
        assert_eq!(
            served_by(&r),
            "s2",
            "new client {i} reached the draining s1"
        );
        assert_eq!(set_serverid(&r).as_deref(), Some("b2"));
    }
    assert_eq!(a.reqs(), 0, "the draining server got new clients");
    for conn in 0..10 {
        let mut c = Client::connect(lb.addr);
        for i in 0..5 {
            let r = get_cookie(&mut c, &format!("/sticky{conn}-{i}"), Some("SERVERID=a1"));
            assert_eq!(
                served_by(&r),
                "s1",
                "a client with s1's cookie did not reach it"
            );
            assert!(!r.has("set-cookie"), "{}", r.head.raw_str());
        }
    }
    assert_eq!(a.reqs(), 50);
}
