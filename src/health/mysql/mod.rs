//! The MySQL/MariaDB check (HAProxy `option mysql-check`, plus writer/reader roles), on glommio's
//! TcpStream like the other checks, bounded by the check's deadline and by the named limits below.
//!
//! Level 1 (no login) passes on a protocol-10 greeting. It then ends the session with a login
//! attempt as [`GREETING_USER`] (no password), not by hanging up, because of what MariaDB 10.11 does
//! with a client that hangs up after the greeting (observed on 10.11.14, `log_warnings=2`, the
//! default): it counts `Aborted_connects` (and `Aborted_connects_preauth`), logs "Aborted connection
//! N to db: 'unconnected' user: 'unauthenticated' ... (This connection closed normally without
//! authentication)", and, worse, counts a handshake error against the client host: with
//! `max_connect_errors=3` and name resolution on, the 4th greeting-only check from the same address
//! got "MySQL error 1129: Host is blocked because of many connection errors" (FIN, RST and a
//! COM_QUIT in place of the handshake response all did the same). A load balancer never logs in
//! from its own address otherwise, so nothing resets that count: the check would take its own
//! server down after `max_connect_errors` (default 100) checks. A refused login is an
//! authentication error instead, which never blocks the host (five in a row, then a login: fine);
//! it costs one `Aborted_connects`, one `Access_denied_errors` and one "Access denied for user
//! 'corelb-greeting-only'" warning (self-explanatory in the log). Loopback clients and
//! `skip-name-resolve` servers are never blocked, but the log line is the same either way. No
//! log line and no counter at all needs a login: level 2, or create `corelb-greeting-only` without
//! password or privileges, which level 1 then logs in as and leaves with COM_QUIT.
//!
//! Level 2 (with a login) answers the greeting with a HandshakeResponse41 (no TLS, no database),
//! authenticates with mysql_native_password or the fast path of caching_sha2_password (switching
//! between them on request), reads what the role needs with COM_QUERY (text protocol), and leaves
//! with COM_QUIT, which the server counts as a normal disconnect. caching_sha2_password's full
//! authentication would send the password in clear without TLS: the check fails instead.
//!
//! Layout: packets in `wire`, the connection phase (greeting, scrambles, auth switch) in `auth`,
//! result sets in `result_set`, the writer/reader rules in `role`; this file is the driver, the
//! socket sequence of one check.
//!
//! Control plane, like the rest of `probe`: it allocates (details, column names), but every packet,
//! column count, row count and login round is bounded, and the password never reaches a detail.

mod auth;
#[cfg(test)]
mod captures;
mod result_set;
mod role;
mod wire;

use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use glommio::net::TcpStream;

use super::check_io::{
    connect, read_some, scratch_window, write_all, CheckError, Checked, Deadline, Verdict,
    SCRATCH_LEN,
};
use crate::config::runtime::{MysqlCheck, MysqlRole};
use auth::{
    handshake_response, parse_auth_switch, parse_greeting, Greeting, LoginEnd, Plugin,
    CACHING_SHA2, NATIVE_PASSWORD,
};
use result_set::{ResultParser, ResultSet, MAX_RESULT_PACKETS};
use role::{replica_verdict, writer_verdict, READER_QUERY, WRITER_QUERY};
use wire::{frame, parse_header, server_error, text, COM_QUERY, COM_QUIT, HEADER_LEN};

pub use auth::{caching_sha2_scramble, native_password_scramble, NONCE_LEN};
pub use result_set::{MAX_COLUMNS, MAX_ROWS};
pub use wire::MAX_PACKET;

// Every packet, header included, fits the check's scratch buffer.
const _: () = assert!(HEADER_LEN + MAX_PACKET <= SCRATCH_LEN);
/// Login replies handled: an auth switch, caching_sha2's fast-auth result, then OK or ERR.
const MAX_AUTH_ROUNDS: usize = 4;
/// The user a level-1 check tries to log in as, without password (see the module doc): meant to
/// exist nowhere, so the server answers "Access denied", which never blocks the check's host.
pub const GREETING_USER: &str = "corelb-greeting-only";
/// The greeting's stage name in errors: framing errors there mean "not MySQL at all".
const GREETING: &str = "greeting";

/// Runs one MySQL check of `addr` within `deadline` (see the module doc). `backup` is the server's
/// `backup` flag: a reader check passes a backup that is alive and logged in.
pub(super) async fn mysql_check(
    check: &MysqlCheck,
    backup: bool,
    addr: SocketAddr,
    deadline: &Deadline,
    scratch: &mut Vec<u8>,
) -> Checked {
    let stream = connect(addr, deadline).await?;
    let mut w = Conn {
        s: stream,
        buf: scratch_window(scratch),
        start: 0,
        end: 0,
        seq: 0,
        deadline,
    };
    let r = w.packet(GREETING).await?;
    let g = parse_greeting(&w.buf[r]).map_err(CheckError::Other)?;
    let version = text(g.version.strip_prefix("5.5.5-").unwrap_or(&g.version));

    let Some(login) = &check.login else {
        // Level 1: the greeting decides; the login attempt only ends the session politely.
        if g.can_login() {
            if let LoginEnd::LoggedIn = w.login(&g, GREETING_USER, b"").await? {
                w.quit().await;
            }
        }
        return Ok((Verdict::Pass, format!("greeting from {version}")));
    };
    if !g.can_login() {
        return Ok((
            Verdict::Fail,
            "the server lacks CLIENT_PROTOCOL_41 or CLIENT_SECURE_CONNECTION (pre-4.1?)".into(),
        ));
    }
    match w.login(&g, &login.user, login.password.as_bytes()).await? {
        LoginEnd::LoggedIn => {}
        LoginEnd::Refused(why) | LoginEnd::Stopped(why) => return Ok((Verdict::Fail, why)),
    }
    let verdict = match check.role {
        MysqlRole::Any => Ok((Verdict::Pass, format!("logged in to {version}"))),
        MysqlRole::Reader { .. } if backup => Ok((
            Verdict::Pass,
            format!("logged in to {version} (backup server: takes reads when no replica does)"),
        )),
        MysqlRole::Writer => w.writer().await,
        MysqlRole::Reader { max_lag } => w.reader(max_lag).await,
    };
    // Also after a failed query: after an ERR packet the session is still in step, so the server
    // sees a normal quit; after a framing or socket error, COM_QUIT is at worst ignored.
    w.quit().await;
    verdict
}

/// The connection: packet framing over a buffered read window of the check's scratch buffer.
struct Conn<'a> {
    s: TcpStream,
    buf: &'a mut [u8],
    /// Unconsumed bytes are buf[start..end].
    start: usize,
    end: usize,
    /// Sequence id of the next packet, either way.
    seq: u8,
    deadline: &'a Deadline,
}

impl Conn<'_> {
    /// Reads the next packet and returns its payload's range in `buf`, valid until the next read.
    async fn packet(&mut self, what: &'static str) -> Result<Range<usize>, CheckError> {
        self.fill(HEADER_LEN, what).await?;
        let mut h = [0u8; HEADER_LEN];
        h.copy_from_slice(&self.buf[self.start..self.start + HEADER_LEN]);
        let (len, seq) = parse_header(h);
        if len > MAX_PACKET {
            return Err(framing(
                what,
                format!("packet of {len} bytes, limit {MAX_PACKET}"),
            ));
        }
        if seq != self.seq {
            return Err(framing(
                what,
                format!(
                    "packet out of order (sequence {seq}, expected {})",
                    self.seq
                ),
            ));
        }
        self.fill(HEADER_LEN + len, what).await?;
        let payload = self.start + HEADER_LEN..self.start + HEADER_LEN + len;
        self.start = payload.end;
        self.seq = seq.wrapping_add(1);
        Ok(payload)
    }

    /// Reads until `need` unconsumed bytes are buffered (`need` <= buf.len()).
    async fn fill(&mut self, need: usize, what: &'static str) -> Result<(), CheckError> {
        if self.start + need > self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        // Bounded: each pass reads at least one byte into the fixed-size buffer, or returns.
        while self.end - self.start < need {
            let n = read_some(&mut self.s, &mut self.buf[self.end..], self.deadline).await?;
            if n == 0 {
                return Err(CheckError::Other(if what == GREETING {
                    "connection closed before a MySQL greeting".to_string()
                } else {
                    format!("connection closed by the server in the {what}")
                }));
            }
            self.end += n;
        }
        Ok(())
    }

    /// Sends one packet with the next sequence id.
    async fn send(&mut self, payload: &[u8]) -> Result<(), CheckError> {
        if payload.len() > MAX_PACKET {
            // Unreachable with validated configs (user <= 80 bytes, fixed queries).
            return Err(CheckError::Other("request packet too large".into()));
        }
        let pkt = frame(self.seq, payload);
        self.seq = self.seq.wrapping_add(1);
        write_all(&mut self.s, &pkt, self.deadline).await
    }

    /// Logs in as `user`; protocol and socket failures are errors, a refusal is a [`LoginEnd`].
    async fn login(
        &mut self,
        g: &Greeting,
        user: &str,
        password: &[u8],
    ) -> Result<LoginEnd, CheckError> {
        // Start with the server's default plugin when it is one of ours (MySQL 8: caching_sha2);
        // otherwise native, and the server asks for a switch if the account uses another.
        let mut plugin = match g.plugin.as_deref() {
            Some(CACHING_SHA2) => Plugin::CachingSha2,
            _ => Plugin::Native,
        };
        let auth = plugin.scramble(password, &g.nonce);
        self.send(&handshake_response(g.capabilities, user, plugin, &auth))
            .await?;
        let mut switched = false;
        const WHAT: &str = "login reply";
        for _ in 0..MAX_AUTH_ROUNDS {
            let r = self.packet(WHAT).await?;
            let p = &self.buf[r];
            match p.first().copied() {
                Some(0x00) => return Ok(LoginEnd::LoggedIn),
                Some(0xff) => return Ok(LoginEnd::Refused(server_error(p))),
                Some(0xfe) => {
                    if switched {
                        return Err(CheckError::Other("second auth switch request".into()));
                    }
                    switched = true;
                    let (new, name, nonce) = match parse_auth_switch(p) {
                        Ok(s) => s,
                        Err(why) => return Ok(LoginEnd::Stopped(why)),
                    };
                    let Some(new) = new else {
                        return Ok(LoginEnd::Stopped(format!(
                            "the account uses auth plugin \"{name}\"; the check supports \
                             {NATIVE_PASSWORD} and {CACHING_SHA2}"
                        )));
                    };
                    plugin = new;
                    let auth = plugin.scramble(password, &nonce);
                    self.send(&auth).await?;
                }
                Some(0x01) if plugin == Plugin::CachingSha2 => match p.get(1) {
                    // Fast authentication succeeded; an OK packet follows.
                    Some(3) => {}
                    Some(4) => {
                        return Ok(LoginEnd::Stopped(
                            "caching_sha2_password asks for full authentication, which would \
                             send the password in clear without TLS: log the check user in once \
                             over TLS or the unix socket (fills the server's cache), or use \
                             mysql_native_password"
                                .into(),
                        ))
                    }
                    _ => {
                        return Err(CheckError::Other(
                            "unexpected caching_sha2_password reply".into(),
                        ))
                    }
                },
                Some(b) => {
                    return Err(CheckError::Other(format!(
                        "unexpected login reply (0x{b:02x})"
                    )))
                }
                None => return Err(CheckError::Other("empty login reply".into())),
            }
        }
        Err(CheckError::Other(format!(
            "login not done after {MAX_AUTH_ROUNDS} replies"
        )))
    }

    /// Runs `sql` (COM_QUERY) and reads its text-protocol result set.
    async fn query(&mut self, sql: &str) -> Result<ResultSet, CheckError> {
        let mut cmd = Vec::with_capacity(1 + sql.len());
        cmd.push(COM_QUERY);
        cmd.extend_from_slice(sql.as_bytes());
        self.seq = 0;
        self.send(&cmd).await?;
        let mut parser = ResultParser::default();
        for _ in 0..MAX_RESULT_PACKETS {
            let r = self.packet("query result").await?;
            let done = parser
                .feed(&self.buf[r])
                .map_err(|e| CheckError::Other(format!("{e} (in `{sql}`)")))?;
            if done {
                return Ok(parser.set);
            }
        }
        // The parser's own bounds trip first; this keeps the loop visibly finite.
        Err(CheckError::Other(format!("result of `{sql}` too long")))
    }

    /// Role writer: `@@read_only` must be off.
    async fn writer(&mut self) -> Checked {
        let rs = self.query(WRITER_QUERY).await?;
        Ok(writer_verdict(&rs))
    }

    /// Role reader on a normal server: a replica with both threads running, lagging at most
    /// `max_lag`.
    async fn reader(&mut self, max_lag: Duration) -> Checked {
        let rs = self.query(READER_QUERY).await?;
        Ok(replica_verdict(&rs, max_lag))
    }

    /// COM_QUIT, best effort: the server closes without answering; the check drops its end then.
    async fn quit(&mut self) {
        self.seq = 0;
        let _ = self.send(&[COM_QUIT]).await;
    }
}

/// A framing error's detail: in the greeting it means "not MySQL".
fn framing(what: &'static str, why: String) -> CheckError {
    CheckError::Other(if what == GREETING {
        format!("not a MySQL greeting ({why})")
    } else {
        format!("{why} in the {what}")
    })
}

#[cfg(test)]
mod tests {
    use super::auth::{
        CLIENT_LONG_PASSWORD, CLIENT_PLUGIN_AUTH, CLIENT_PROTOCOL_41, CLIENT_SECURE_CONNECTION,
    };
    use super::captures::{
        payloads, GREETING_BYTES, NONCE, READ_ONLY_REPLICA, SLAVE_STATUS_PRIMARY,
        SLAVE_STATUS_REPLICA,
    };
    use super::result_set::{parse_column_name, parse_row};
    use super::wire::Reader;
    use super::*;
    use crate::config::runtime::{CheckKind, MysqlLogin};
    use crate::health::probe::{probe, Outcome};
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream as StdStream};
    use std::thread::JoinHandle;
    use std::time::Instant;

    /// Bound on every blocking step of a mock server, so a broken test fails instead of hanging.
    const MOCK_IO_TIMEOUT: Duration = Duration::from_secs(5);
    const T: Duration = Duration::from_secs(3);
    /// Random packets fed to each parser by the garbage test.
    const FUZZ_ROUNDS: usize = 20_000;

    /// xorshift64: deterministic garbage without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// Runs every parser on `p`: none may panic, whatever the bytes.
    fn parse_everything(p: &[u8]) {
        let _ = parse_greeting(p);
        let _ = parse_auth_switch(p);
        let _ = server_error(p);
        let _ = parse_column_name(p);
        let _ = parse_row(p, 3);
        let mut parser = ResultParser::default();
        // The same bytes as every packet of a result set, up to the parser's own bounds.
        for _ in 0..MAX_RESULT_PACKETS {
            match parser.feed(p) {
                Ok(false) => {}
                Ok(true) | Err(_) => break,
            }
        }
    }

    #[test]
    fn garbage_and_truncated_packets_never_panic() {
        for capture in [
            GREETING_BYTES,
            READ_ONLY_REPLICA,
            SLAVE_STATUS_REPLICA,
            SLAVE_STATUS_PRIMARY,
        ] {
            for cut in 0..=capture.len() {
                parse_everything(&capture[..cut]);
                parse_everything(&capture[cut..]);
            }
        }
        let packets: Vec<&[u8]> = [GREETING_BYTES, SLAVE_STATUS_REPLICA]
            .iter()
            .flat_map(|c| {
                payloads(
                    c,
                    if c.len() == GREETING_BYTES.len() {
                        0
                    } else {
                        1
                    },
                )
            })
            .collect();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut buf = Vec::new();
        for round in 0..FUZZ_ROUNDS {
            buf.clear();
            if round % 2 == 0 {
                // Pure noise, biased to the protocol's marker bytes.
                let len = (rng.next() % 300) as usize;
                for _ in 0..len {
                    let r = rng.next();
                    buf.push(match r % 4 {
                        0 => [0x00, 0x0a, 0xfb, 0xfc, 0xfd, 0xfe, 0xff][(r >> 8) as usize % 7],
                        _ => (r >> 16) as u8,
                    });
                }
            } else {
                // A real packet with a few bytes flipped and maybe cut.
                let src = packets[(rng.next() % packets.len() as u64) as usize];
                buf.extend_from_slice(src);
                for _ in 0..1 + rng.next() % 4 {
                    if !buf.is_empty() {
                        let i = (rng.next() % buf.len() as u64) as usize;
                        buf[i] = rng.next() as u8;
                    }
                }
                let keep = (rng.next() % (buf.len() as u64 + 1)) as usize;
                buf.truncate(keep);
            }
            parse_everything(&buf);
        }
    }

    // ---- the check over a socket, against scripted servers -----------------------------------

    /// One connection of a scripted server: the script's result is joined by the test.
    fn mock<R: Send + 'static>(
        script: impl FnOnce(&mut StdStream) -> R + Send + 'static,
    ) -> (SocketAddr, JoinHandle<R>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let h = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            conn.set_read_timeout(Some(MOCK_IO_TIMEOUT)).unwrap();
            conn.set_write_timeout(Some(MOCK_IO_TIMEOUT)).unwrap();
            script(&mut conn)
        });
        (addr, h)
    }

    fn send(c: &mut StdStream, seq: u8, payload: &[u8]) {
        let mut p = (payload.len() as u32).to_le_bytes()[..3].to_vec();
        p.push(seq);
        p.extend_from_slice(payload);
        c.write_all(&p).unwrap();
    }

    /// Reads one packet: (sequence id, payload); None at EOF or timeout.
    fn recv(c: &mut StdStream) -> Option<(u8, Vec<u8>)> {
        let mut h = [0u8; 4];
        c.read_exact(&mut h).ok()?;
        let len = usize::from(h[0]) | (usize::from(h[1]) << 8) | (usize::from(h[2]) << 16);
        let mut p = vec![0u8; len];
        c.read_exact(&mut p).ok()?;
        Some((h[3], p))
    }

    /// Everything the client sends until it closes.
    fn rest(c: &mut StdStream) -> Vec<u8> {
        let mut all = Vec::new();
        let _ = c.read_to_end(&mut all);
        all
    }

    fn greeting(plugin: &str) -> Vec<u8> {
        let caps = CLIENT_LONG_PASSWORD
            | CLIENT_PROTOCOL_41
            | CLIENT_SECURE_CONNECTION
            | CLIENT_PLUGIN_AUTH;
        let mut g = vec![10];
        g.extend_from_slice(b"5.5.5-10.11.99-MariaDB\0");
        g.extend_from_slice(&7u32.to_le_bytes());
        g.extend_from_slice(&NONCE[..8]);
        g.push(0);
        g.extend_from_slice(&(caps as u16).to_le_bytes());
        g.push(33);
        g.extend_from_slice(&2u16.to_le_bytes());
        g.extend_from_slice(&((caps >> 16) as u16).to_le_bytes());
        g.push(21);
        g.extend_from_slice(&[0; 10]);
        g.extend_from_slice(&NONCE[8..]);
        g.push(0);
        g.extend_from_slice(plugin.as_bytes());
        g.push(0);
        g
    }

    /// User, auth response and plugin of a HandshakeResponse41.
    fn response_fields(p: &[u8]) -> (String, Vec<u8>, String) {
        let mut r = Reader(&p[32..]);
        let user = String::from_utf8(r.nul_terminated().unwrap().to_vec()).unwrap();
        let n = usize::from(r.u8().unwrap());
        let auth = r.take(n).unwrap().to_vec();
        let plugin = String::from_utf8(r.nul_terminated().unwrap().to_vec()).unwrap();
        (user, auth, plugin)
    }

    const OK: &[u8] = &[0, 0, 0, 2, 0, 0, 0];

    fn run(check: MysqlCheck, backup: bool, addr: SocketAddr, timeout: Duration) -> Outcome {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(1 << 20)
            .spawn(move || async move {
                let mut scratch = Vec::new();
                let kind = CheckKind::Mysql(check);
                let o = probe(&kind, &[], addr, timeout, backup, &mut scratch).await;
                assert!(scratch.len() <= SCRATCH_LEN);
                o
            })
            .unwrap()
            .join()
            .unwrap()
    }

    fn with_login(password: &str, role: MysqlRole) -> MysqlCheck {
        MysqlCheck {
            login: Some(MysqlLogin {
                user: "corelb_check".into(),
                password: password.into(),
            }),
            role,
        }
    }

    const LEVEL1: MysqlCheck = MysqlCheck {
        login: None,
        role: MysqlRole::Any,
    };

    #[test]
    fn level1_passes_and_leaves_with_a_refused_login() {
        let (addr, h) = mock(|c| {
            send(c, 0, &greeting(NATIVE_PASSWORD));
            let (seq, resp) = recv(c).unwrap();
            send(
                c,
                2,
                b"\xff\x15\x04#28000Access denied for user 'corelb-greeting-only'@'x'",
            );
            (seq, response_fields(&resp), rest(c))
        });
        let o = run(LEVEL1, false, addr, T);
        assert_eq!(o.verdict, Verdict::Pass, "{o:?}");
        assert_eq!(o.detail, "greeting from 10.11.99-MariaDB");
        let (seq, (user, auth, plugin), after) = h.join().unwrap();
        assert_eq!((seq, user.as_str(), auth.len()), (1, GREETING_USER, 0));
        assert_eq!(plugin, NATIVE_PASSWORD);
        assert!(after.is_empty(), "nothing after the refusal: {after:?}");
    }

    #[test]
    fn level1_greeting_errors_and_garbage_fail() {
        let (addr, _h) = mock(|c| send(c, 0, b"\xff\x69\x04Host '127.0.0.1' is blocked"));
        let o = run(LEVEL1, false, addr, T);
        assert_eq!(o.verdict, Verdict::Fail);
        assert_eq!(o.detail, "MySQL error 1129: Host '127.0.0.1' is blocked");

        let (addr, _h) = mock(|c| c.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").unwrap());
        let o = run(LEVEL1, false, addr, T);
        assert_eq!(o.verdict, Verdict::Fail);
        assert!(
            o.detail.starts_with("not a MySQL greeting (packet of "),
            "{}",
            o.detail
        );

        let (addr, _h) = mock(|c| c.write_all(b"\x05\x00\x00\x00\x0bhello").unwrap());
        let o = run(LEVEL1, false, addr, T);
        assert_eq!(o.detail, "not a MySQL greeting (protocol byte 0x0b)");

        let (addr, _h) = mock(|c| c.write_all(b"\x05\x00\x00\x07\x0a").unwrap());
        let o = run(LEVEL1, false, addr, T);
        assert!(
            o.detail
                .starts_with("not a MySQL greeting (packet out of order"),
            "{}",
            o.detail
        );

        // Truncated: the server closes inside the greeting.
        let cut = GREETING_BYTES[..50].to_vec();
        let (addr, _h) = mock(move |c| c.write_all(&cut).unwrap());
        let o = run(LEVEL1, false, addr, T);
        assert_eq!(o.detail, "connection closed before a MySQL greeting");

        // Silent: the timeout bounds the check.
        let (addr, h) = mock(rest);
        let timeout = Duration::from_millis(200);
        let o = run(LEVEL1, false, addr, timeout);
        assert_eq!(o.detail, "timeout after 200ms");
        assert!(o.elapsed < Duration::from_secs(2), "{o:?}");
        h.join().unwrap();
    }

    #[test]
    fn caching_sha2_fast_path_logs_in_and_quits() {
        let (addr, h) = mock(|c| {
            send(c, 0, &greeting(CACHING_SHA2));
            let (_, resp) = recv(c).unwrap();
            send(c, 2, &[0x01, 0x03]);
            send(c, 3, OK);
            (response_fields(&resp), recv(c))
        });
        let o = run(with_login("s3cret", MysqlRole::Any), false, addr, T);
        assert_eq!(o.verdict, Verdict::Pass, "{o:?}");
        assert_eq!(o.detail, "logged in to 10.11.99-MariaDB");
        let ((user, auth, plugin), quit) = h.join().unwrap();
        assert_eq!(
            (user.as_str(), plugin.as_str()),
            ("corelb_check", CACHING_SHA2)
        );
        assert_eq!(auth, caching_sha2_scramble(b"s3cret", &NONCE));
        assert_eq!(quit, Some((0, vec![COM_QUIT])));
    }

    #[test]
    fn caching_sha2_full_auth_fails_without_sending_the_password() {
        let (addr, h) = mock(|c| {
            send(c, 0, &greeting(CACHING_SHA2));
            let _ = recv(c).unwrap();
            send(c, 2, &[0x01, 0x04]);
            rest(c)
        });
        let o = run(with_login("s3cret-pw", MysqlRole::Any), false, addr, T);
        assert_eq!(o.verdict, Verdict::Fail);
        assert!(o.detail.contains("full authentication"), "{}", o.detail);
        assert!(!o.detail.contains("s3cret"));
        let after = h.join().unwrap();
        assert!(!after.windows(6).any(|w| w == b"s3cret"), "{after:?}");
    }

    #[test]
    fn auth_switch_to_caching_sha2_and_to_an_unknown_plugin() {
        let nonce2: [u8; NONCE_LEN] = [0x42; NONCE_LEN];
        let (addr, h) = mock(move |c| {
            send(c, 0, &greeting(NATIVE_PASSWORD));
            let (_, resp) = recv(c).unwrap();
            let mut switch = vec![0xfe];
            switch.extend_from_slice(b"caching_sha2_password\0");
            switch.extend_from_slice(&nonce2);
            switch.push(0);
            send(c, 2, &switch);
            let (seq, auth) = recv(c).unwrap();
            send(c, 4, &[0x01, 0x03]);
            send(c, 5, OK);
            (response_fields(&resp).1, seq, auth, recv(c))
        });
        let o = run(with_login("pw", MysqlRole::Any), false, addr, T);
        assert_eq!(o.verdict, Verdict::Pass, "{o:?}");
        let (first, seq, auth, quit) = h.join().unwrap();
        assert_eq!(first, native_password_scramble(b"pw", &NONCE));
        assert_eq!(
            (seq, auth),
            (3, caching_sha2_scramble(b"pw", &nonce2).to_vec())
        );
        assert_eq!(quit, Some((0, vec![COM_QUIT])));

        let (addr, _h) = mock(|c| {
            send(c, 0, &greeting(NATIVE_PASSWORD));
            let _ = recv(c);
            send(
                c,
                2,
                b"\xfeclient_ed25519\0abcdefghijklmnopqrstuvwxyz012345\0",
            );
            rest(c)
        });
        let o = run(with_login("pw", MysqlRole::Any), false, addr, T);
        assert_eq!(o.verdict, Verdict::Fail);
        assert!(o.detail.contains("\"client_ed25519\""), "{}", o.detail);
    }

    #[test]
    fn writer_and_reader_against_scripted_answers() {
        // Serves the login, then answers each query from `answers`, then expects COM_QUIT.
        fn server(answers: Vec<Vec<u8>>) -> (SocketAddr, JoinHandle<Vec<String>>) {
            mock(move |c| {
                send(c, 0, &greeting(NATIVE_PASSWORD));
                let _ = recv(c).unwrap();
                send(c, 2, OK);
                let mut queries = Vec::new();
                for a in answers {
                    let (seq, q) = recv(c).unwrap();
                    assert_eq!((seq, q[0]), (0, COM_QUERY));
                    queries.push(String::from_utf8(q[1..].to_vec()).unwrap());
                    c.write_all(&a).unwrap();
                }
                assert_eq!(recv(c), Some((0, vec![COM_QUIT])));
                queries
            })
        }
        let (addr, h) = server(vec![READ_ONLY_REPLICA.to_vec()]);
        let o = run(with_login("pw", MysqlRole::Writer), false, addr, T);
        assert_eq!(
            (o.verdict, o.detail.as_str()),
            (Verdict::Fail, "read_only=1")
        );
        assert_eq!(h.join().unwrap(), ["SELECT @@read_only"]);

        let reader = MysqlRole::Reader {
            max_lag: Duration::from_secs(10),
        };
        let (addr, h) = server(vec![SLAVE_STATUS_REPLICA.to_vec()]);
        let o = run(with_login("pw", reader), false, addr, T);
        assert_eq!(
            (o.verdict, o.detail.as_str()),
            (Verdict::Pass, "replica lag 0 s")
        );
        assert_eq!(h.join().unwrap(), ["SHOW SLAVE STATUS"]);

        let (addr, _h) = server(vec![SLAVE_STATUS_PRIMARY.to_vec()]);
        let o = run(with_login("pw", reader), false, addr, T);
        assert_eq!(o.verdict, Verdict::Fail, "{o:?}");

        // A backup passes a reader check once logged in, without a query.
        let (addr, h) = server(vec![]);
        let o = run(with_login("pw", reader), true, addr, T);
        assert_eq!(o.verdict, Verdict::Pass, "{o:?}");
        assert!(h.join().unwrap().is_empty());

        // A query error (no privilege) fails with the server's text, and the check still quits.
        let mut denied = b"\xff\xcb\x04#42000Access denied; you need (at least one of) the SUPER, \
                           SLAVE MONITOR privilege(s) for this operation"
            .to_vec();
        let mut answer = (denied.len() as u32).to_le_bytes()[..3].to_vec();
        answer.push(1);
        answer.append(&mut denied);
        let (addr, _h) = server(vec![answer]);
        let o = run(with_login("pw", reader), false, addr, T);
        assert_eq!(o.verdict, Verdict::Fail);
        assert!(
            o.detail
                .starts_with("MySQL error 1227: Access denied; you need"),
            "{}",
            o.detail
        );
    }

    #[test]
    fn truncated_answers_over_the_socket_fail_cleanly() {
        let start = Instant::now();
        // Every 13th cut of the replica's SHOW SLAVE STATUS answer, then the server closes.
        for cut in (0..SLAVE_STATUS_REPLICA.len()).step_by(13) {
            let answer = SLAVE_STATUS_REPLICA[..cut].to_vec();
            let (addr, _h) = mock(move |c| {
                send(c, 0, &greeting(NATIVE_PASSWORD));
                let _ = recv(c);
                send(c, 2, OK);
                let _ = recv(c);
                c.write_all(&answer).unwrap();
            });
            let reader = MysqlRole::Reader {
                max_lag: Duration::from_secs(10),
            };
            let o = run(with_login("pw", reader), false, addr, T);
            assert_eq!(o.verdict, Verdict::Fail, "cut {cut}: {o:?}");
            assert!(
                o.detail
                    .starts_with("connection closed by the server in the query result"),
                "cut {cut}: {}",
                o.detail
            );
        }
        assert!(start.elapsed() < Duration::from_secs(60));
    }
}
