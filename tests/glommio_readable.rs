//! The vendored glommio's `TcpStream::readable_since_last_read()`
//! (vendor/patches/glommio/0002-readable-since-last-read.patch), which corelb's backend pool uses to
//! refuse an idle connection that got stray bytes or EOF: false while nothing arrived since the last
//! read, true once the peer wrote or closed, false again after a read that drained the socket.

use std::io::Write;
use std::net::TcpListener;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use futures_lite::AsyncReadExt;
use glommio::net::TcpStream;
use glommio::LocalExecutorBuilder;

/// Bound on the whole test's executor: a hang becomes a failure.
const TEST_DEADLINE: Duration = Duration::from_secs(60);
/// Bound on waiting for the reactor to see the peer's bytes or EOF.
const STATE_DEADLINE: Duration = Duration::from_secs(10);
/// How long "nothing arrived" is watched to stay false: many reactor turns.
const QUIET: Duration = Duration::from_millis(50);
/// Larger than anything the peer sends, so every read is a short read (which arms the poll).
const READ_BUF: usize = 4096;

enum Peer {
    Write(&'static [u8]),
    Close,
}

/// A peer on its own thread that writes or closes when told; acknowledges each step once done.
fn peer() -> (std::net::SocketAddr, mpsc::Sender<Peer>, mpsc::Receiver<()>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let (cmd_tx, cmd_rx) = mpsc::channel();
    let (ack_tx, ack_rx) = mpsc::channel();
    thread::spawn(move || {
        let Ok((mut c, _)) = l.accept() else { return };
        for cmd in cmd_rx {
            match cmd {
                Peer::Write(b) => c.write_all(b).expect("peer write"),
                Peer::Close => {
                    drop(c);
                    let _ = ack_tx.send(());
                    return;
                }
            }
            let _ = ack_tx.send(());
        }
    });
    (addr, cmd_tx, ack_rx)
}

/// Polls `readable_since_last_read()` across reactor turns until it is `want` or the deadline.
async fn wait_for(s: &TcpStream, want: Option<bool>) -> Option<bool> {
    let deadline = Instant::now() + STATE_DEADLINE;
    loop {
        let now = s.readable_since_last_read();
        if now == want || Instant::now() >= deadline {
            return now;
        }
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
}

/// That `readable_since_last_read()` stays `want` while the reactor turns for QUIET.
async fn stays(s: &TcpStream, want: Option<bool>) -> Option<bool> {
    let end = Instant::now() + QUIET;
    while Instant::now() < end {
        let now = s.readable_since_last_read();
        if now != want {
            return now;
        }
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
    want
}

#[test]
fn readable_after_the_peer_writes_or_closes_and_not_after_a_read() {
    let (addr, cmd, ack) = peer();
    let steps: Vec<(&'static str, Option<bool>, Option<bool>)> =
        run_on_executor(move || async move {
            let mut steps = Vec::new();
            let mut s = TcpStream::connect(addr).await.expect("connect");
            let mut buf = vec![0u8; READ_BUF];
            steps.push((
                "connected, peer silent",
                Some(false),
                stays(&s, Some(false)).await,
            ));

            for (i, msg) in [&b"first"[..], &b"second"[..]].into_iter().enumerate() {
                cmd.send(Peer::Write(msg)).expect("peer");
                ack.recv_timeout(STATE_DEADLINE).expect("peer wrote");
                let name = if i == 0 {
                    "peer wrote"
                } else {
                    "peer wrote again"
                };
                steps.push((name, Some(true), wait_for(&s, Some(true)).await));
                // Reads until the socket is drained: a read that returns less than the buffer.
                let mut got = Vec::new();
                while got.len() < msg.len() {
                    let n = s.read(&mut buf).await.expect("read");
                    assert!(n > 0, "EOF before the message");
                    got.extend_from_slice(&buf[..n]);
                }
                assert_eq!(got, msg);
                steps.push(("after the read", Some(false), s.readable_since_last_read()));
                steps.push((
                    "quiet after the read",
                    Some(false),
                    stays(&s, Some(false)).await,
                ));
            }

            cmd.send(Peer::Close).expect("peer");
            ack.recv_timeout(STATE_DEADLINE).expect("peer closed");
            steps.push(("peer closed", Some(true), wait_for(&s, Some(true)).await));
            assert_eq!(s.read(&mut buf).await.expect("read EOF"), 0, "EOF");
            steps
        });
    for (step, want, got) in steps {
        assert_eq!(got, want, "readable_since_last_read() at '{step}'");
    }
}

/// Runs `f` on a fresh glommio executor and returns its result, or fails after TEST_DEADLINE.
fn run_on_executor<T: Send + 'static, F>(f: impl FnOnce() -> F + Send + 'static) -> T
where
    F: std::future::Future<Output = T> + 'static,
{
    let (tx, rx) = mpsc::channel();
    LocalExecutorBuilder::default()
        .io_memory(1 << 20)
        .spawn(move || async move {
            let _ = tx.send(f().await);
        })
        .expect("executor");
    rx.recv_timeout(TEST_DEADLINE)
        .expect("the executor did not finish (it panicked or hung)")
}
