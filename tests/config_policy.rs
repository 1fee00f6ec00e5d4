//! The balancing and health options of a backend: their defaults, their validated values, and each
//! contradiction reported with its field path (the fixtures in configs/invalid cover one error of each
//! variant; this covers every case of the variants that have several).

use std::num::NonZeroU32;
use std::time::Duration;

use corelb::config::{self, *};

fn app(backend_extra: &str, server_extra: &str) -> String {
    format!(
        "[[frontend]]\nname = \"www\"\nbind = [\"127.0.0.1:8080\"]\ndefault_backend = \"app\"\n\n\
         [[backend]]\nname = \"app\"\n{backend_extra}\n\
         [[backend.server]]\nname = \"a\"\naddress = \"127.0.0.1:9001\"\n{server_extra}\n\
         [[backend.server]]\nname = \"b\"\naddress = \"127.0.0.1:9002\"\n"
    )
}

fn backend_of(text: &str) -> Backend {
    match config::from_toml(text) {
        Ok(c) => c.backends[0].clone(),
        Err(e) => panic!("{e}\n{text}"),
    }
}

/// (field, variant name) of every error.
fn errors(text: &str) -> Vec<(String, String)> {
    match config::from_toml(text) {
        Ok(c) => panic!("validated: {c:?}\n{text}"),
        Err(e) => e
            .iter()
            .map(|e| {
                let variant = format!("{e:?}");
                let variant = variant
                    .split([' ', '{', '('])
                    .next()
                    .unwrap_or("")
                    .to_owned();
                (e.field().to_owned(), variant)
            })
            .collect(),
    }
}

fn one_error(text: &str, field: &str, variant: &str) {
    assert_eq!(
        errors(text),
        [(field.to_owned(), variant.to_owned())],
        "{text}"
    );
}

#[test]
fn algorithms_and_hash_keys() {
    for (text, want) in [
        ("", Algorithm::RoundRobin),
        ("algorithm = \"roundrobin\"", Algorithm::RoundRobin),
        ("algorithm = \"leastconn\"", Algorithm::LeastConn),
        ("algorithm = \"random\"", Algorithm::Random),
        ("algorithm = \"first\"", Algorithm::First),
        (
            "algorithm = \"hash\"\nhash_key = \"source\"",
            Algorithm::Hash(HashKey::Source),
        ),
        (
            "algorithm = \"hash\"\nhash_key = \"uri\"",
            Algorithm::Hash(HashKey::Uri),
        ),
        (
            "algorithm = \"hash\"\nhash_key = \"header:X-User\"",
            Algorithm::Hash(HashKey::Header("x-user".into())),
        ),
        (
            "algorithm = \"hash\"\nhash_key = \"cookie:Sess\"",
            Algorithm::Hash(HashKey::Cookie("Sess".into())),
        ),
    ] {
        assert_eq!(backend_of(&app(text, "")).algorithm, want, "{text}");
    }
    let f = r#"backend["app"].hash_key"#;
    one_error(&app("algorithm = \"hash\"", ""), f, "Inconsistent");
    one_error(&app("hash_key = \"uri\"", ""), f, "Inconsistent");
    one_error(
        &app("algorithm = \"hash\"\nhash_key = \"header:\"", ""),
        f,
        "InvalidHashKey",
    );
    one_error(
        &app("algorithm = \"hash\"\nhash_key = \"body\"", ""),
        f,
        "InvalidHashKey",
    );
}

#[test]
fn check_defaults_and_values() {
    let b = backend_of(&app("[backend.check]", ""));
    assert_eq!(
        b.check,
        Some(Check {
            kind: CheckKind::Tcp,
            interval: Duration::from_secs(2),
            fastinter: Duration::from_millis(500),
            jitter_percent: 10,
            timeout: Duration::from_secs(1),
            rise: NonZeroU32::new(2).unwrap(),
            fall: NonZeroU32::new(3).unwrap(),
            start_down: false,
        })
    );
    // fastinter never defaults above interval.
    let b = backend_of(&app("[backend.check]\nstart_down = true", ""));
    assert!(b.check.unwrap().start_down);
    let b = backend_of(&app("[backend.check]\ninterval = \"100ms\"", ""));
    assert_eq!(b.check.unwrap().fastinter, Duration::from_millis(100));
    let b = backend_of(&app(
        "[backend.check]\ntype = \"http\"\nmethod = \"HEAD\"\npath = \"/h?x=1\"\nhost = \"app1:8080\"\n\
         expect_status = \"204\"\nexpect_body = \"OK\"\ndisable_on_404 = true",
        "",
    ));
    assert_eq!(
        b.check.unwrap().kind,
        CheckKind::Http(HttpCheck {
            method: "HEAD".into(),
            path: "/h?x=1".into(),
            host: Some("app1:8080".into()),
            expect_status: (204, 204),
            expect_body: Some("OK".into()),
            disable_on_404: true,
        })
    );
    let b = backend_of(&app("[backend.check]\ntype = \"http\"", ""));
    match b.check.unwrap().kind {
        CheckKind::Http(h) => {
            assert_eq!((h.method.as_str(), h.path.as_str()), ("GET", "/"));
            assert_eq!(h.expect_status, (200, 399));
        }
        k => panic!("{k:?}"),
    }
}

#[test]
fn check_errors() {
    let c = r#"backend["app"].check"#;
    for (line, field, variant) in [
        ("type = \"ldap\"", "type", "UnknownCheckType"),
        ("user = \"u\"", "user", "Inconsistent"),
        ("type = \"mysql\"\npath = \"/\"", "path", "Inconsistent"),
        (
            "type = \"mysql\"\nrole = \"writer\"",
            "role",
            "Inconsistent",
        ),
        (
            "type = \"mysql\"\npassword = \"p\"",
            "password",
            "Inconsistent",
        ),
        (
            "type = \"mysql\"\nuser = \"u\"\nrole = \"writer\"\nmax_replication_lag = \"5s\"",
            "max_replication_lag",
            "Inconsistent",
        ),
        (
            "type = \"mysql\"\nuser = \"u\"\nrole = \"boss\"",
            "role",
            "UnknownMysqlRole",
        ),
        (
            "type = \"mysql\"\nuser = \"a b\"",
            "user",
            "InvalidCheckRequest",
        ),
        ("path = \"/x\"", "path", "Inconsistent"),
        (
            "type = \"http\"\nmethod = \"get\"",
            "method",
            "InvalidCheckRequest",
        ),
        (
            "type = \"http\"\npath = \"health\"",
            "path",
            "InvalidCheckRequest",
        ),
        (
            "type = \"http\"\nhost = \"a b\"",
            "host",
            "InvalidCheckRequest",
        ),
        (
            "type = \"http\"\nexpect_body = \"\"",
            "expect_body",
            "InvalidCheckRequest",
        ),
        (
            "type = \"http\"\nexpect_status = \"2xx\"",
            "expect_status",
            "InvalidStatusRange",
        ),
        ("rise = 0", "rise", "OutOfRange"),
        ("fall = 101", "fall", "OutOfRange"),
        ("jitter_percent = 51", "jitter_percent", "OutOfRange"),
        ("interval = \"0s\"", "interval", "DurationOutOfRange"),
        ("timeout = \"soon\"", "timeout", "InvalidDuration"),
    ] {
        one_error(
            &app(&format!("[backend.check]\n{line}"), ""),
            &format!("{c}.{field}"),
            variant,
        );
    }
}

#[test]
fn mysql_checks() {
    let kind = |lines: &str| match backend_of(&app(
        &format!("[backend.check]\ntype = \"mysql\"\n{lines}"),
        "",
    ))
    .check
    .unwrap()
    .kind
    {
        CheckKind::Mysql(m) => m,
        k => panic!("{k:?}"),
    };
    assert_eq!(
        kind(""),
        MysqlCheck {
            login: None,
            role: MysqlRole::Any
        }
    );
    let m =
        kind("user = \"chk\"\npassword = \"pw\"\nrole = \"reader\"\nmax_replication_lag = \"3s\"");
    assert_eq!(
        m.role,
        MysqlRole::Reader {
            max_lag: Duration::from_secs(3)
        }
    );
    let login = m.login.unwrap();
    assert_eq!(
        (login.user.as_str(), login.password.as_str()),
        ("chk", "pw")
    );
    assert!(
        !format!("{login:?}").contains("pw"),
        "the password is never printed"
    );
    assert_eq!(
        kind("user = \"chk\"\nrole = \"reader\"").role,
        MysqlRole::Reader {
            max_lag: Duration::from_secs(10)
        }
    );
    assert_eq!(
        kind("user = \"chk\"\nrole = \"writer\"").role,
        MysqlRole::Writer
    );
}

#[test]
fn passive_and_cookie() {
    let b = backend_of(&app(
        "[backend.passive]\n[backend.cookie]\nname = \"SRV\"",
        "",
    ));
    assert_eq!(
        b.passive,
        Some(Passive {
            error_limit: NonZeroU32::new(5).unwrap(),
            eject: Duration::from_secs(10),
            max_eject: Duration::from_secs(300),
        })
    );
    assert_eq!(b.cookie, Some(StickyCookie { name: "SRV".into() }));
    // A long eject raises the default max_eject with it.
    let b = backend_of(&app("[backend.passive]\neject = \"10m\"", ""));
    assert_eq!(b.passive.unwrap().max_eject, Duration::from_secs(600));
    one_error(
        &app("[backend.passive]\neject = \"10s\"\nmax_eject = \"5s\"", ""),
        r#"backend["app"].passive.max_eject"#,
        "Inconsistent",
    );
    one_error(
        &app("[backend.passive]\nerror_limit = 0", ""),
        r#"backend["app"].passive.error_limit"#,
        "OutOfRange",
    );
    one_error(
        &app("[backend.cookie]\nname = \"\"", ""),
        r#"backend["app"].cookie.name"#,
        "InvalidCookie",
    );
}

#[test]
fn server_options() {
    let b = backend_of(&app(
        "allbackups = true\nslowstart = \"20s\"",
        "backup = true\nstate = \"drain\"\nmaxconn = 7\ncookie = \"a1\"",
    ));
    assert!(b.allbackups);
    assert_eq!(b.slowstart, Some(Duration::from_secs(20)));
    let a = &b.servers[0];
    assert!(a.backup);
    assert_eq!(a.admin, AdminState::Drain);
    assert_eq!(a.maxconn, NonZeroU32::new(7));
    assert_eq!(a.cookie, "a1");
    let s = &b.servers[1];
    assert!(!s.backup && s.admin == AdminState::Up && s.maxconn.is_none());
    assert_eq!(s.cookie, config::policy::default_cookie("app", "b"));
    assert!(!s.cookie.contains("127.0.0.1"));
    assert_eq!(
        backend_of(&app("", "state = \"maint\"")).servers[0].admin,
        AdminState::Maint
    );

    let a = r#"backend["app"].server["a"]"#;
    one_error(
        &app("", "state = \"off\""),
        &format!("{a}.state"),
        "UnknownServerState",
    );
    one_error(
        &app("", "maxconn = 0"),
        &format!("{a}.maxconn"),
        "OutOfRange",
    );
    one_error(
        &app("", "cookie = \"a b\""),
        &format!("{a}.cookie"),
        "InvalidCookie",
    );
    one_error(
        &app("slowstart = \"-1s\"", ""),
        r#"backend["app"].slowstart"#,
        "InvalidDuration",
    );
    // Two servers with one cookie value cannot be told apart, but only matters with persistence on.
    let dup = |cookie_section: &str| {
        format!(
            "[[frontend]]\nname = \"www\"\nbind = [\"127.0.0.1:8080\"]\ndefault_backend = \"app\"\n\n\
             [[backend]]\nname = \"app\"\n{cookie_section}\n\
             [[backend.server]]\nname = \"a\"\naddress = \"127.0.0.1:9001\"\ncookie = \"x\"\n\
             [[backend.server]]\nname = \"b\"\naddress = \"127.0.0.1:9002\"\ncookie = \"x\"\n"
        )
    };
    backend_of(&dup(""));
    one_error(
        &dup("[backend.cookie]\nname = \"SRV\""),
        r#"backend["app"].server["b"].cookie"#,
        "Inconsistent",
    );
}

fn tcp(frontend_extra: &str, backend_extra: &str) -> String {
    format!(
        "[[frontend]]\nname = \"db\"\nmode = \"tcp\"\nbind = [\"127.0.0.1:3306\"]\ndefault_backend = \"app\"\n\
         {frontend_extra}\n[[backend]]\nname = \"app\"\n{backend_extra}\n\
         [[backend.server]]\nname = \"a\"\naddress = \"127.0.0.1:9001\"\nsend_proxy = \"v2\"\n"
    )
}

#[test]
fn tcp_mode_and_proxy_protocol() {
    let c = config::from_toml(&tcp(
        "accept_proxy = true\ntrusted_proxies = [\"10.0.0.0/8\"]",
        "",
    ))
    .unwrap();
    let f = &c.frontends[0];
    assert_eq!(f.mode, Mode::Tcp);
    assert!(f.accept_proxy);
    assert_eq!(f.timeouts.idle, Duration::from_secs(3600));
    assert_eq!(
        c.backends[0].servers[0].send_proxy,
        Some(corelb::proxy_protocol::Version::V2)
    );
    let c = config::from_toml(&tcp(
        "[frontend.timeouts]\nidle = \"5m\"",
        "algorithm = \"hash\"\nhash_key = \"source\"",
    ))
    .unwrap();
    assert_eq!(c.frontends[0].timeouts.idle, Duration::from_secs(300));

    let fe = r#"frontend["db"]"#;
    for (frontend, backend, field) in [
        ("accept_proxy = true", "", "accept_proxy"),
        (
            "[[frontend.route]]\nhost = \"a\"\nbackend = \"app\"",
            "",
            "route",
        ),
        ("[frontend.limits]\nmax_headers = 10", "", "limits"),
        (
            "[frontend.timeouts]\nclient_header = \"1s\"",
            "",
            "timeouts.client_header",
        ),
        ("", "[backend.cookie]\nname = \"S\"", "default_backend"),
        (
            "",
            "algorithm = \"hash\"\nhash_key = \"uri\"",
            "default_backend",
        ),
    ] {
        assert_eq!(
            errors(&tcp(frontend, backend)),
            [(format!("{fe}.{field}"), "Inconsistent".to_owned())],
            "{frontend} / {backend}"
        );
    }
    // `idle` is for TCP mode only.
    one_error(
        &app("", "").replace(
            "default_backend = \"app\"\n",
            "default_backend = \"app\"\n[frontend.timeouts]\nidle = \"1s\"\n",
        ),
        r#"frontend["www"].timeouts.idle"#,
        "Inconsistent",
    );
    one_error(
        &tcp("", "").replace("mode = \"tcp\"", "mode = \"udp\""),
        &format!("{fe}.mode"),
        "UnknownMode",
    );
    one_error(
        &tcp("", "").replace("send_proxy = \"v2\"", "send_proxy = \"2\""),
        r#"backend["app"].server["a"].send_proxy"#,
        "UnknownProxyVersion",
    );
}
