//! Test fixtures shared by the MySQL check's unit tests: packets captured from MariaDB 10.11.14
//! (files in `src/health/testdata`) and helpers to read them.

use super::auth::NONCE_LEN;
use super::result_set::{ResultParser, ResultSet};

// Captured from MariaDB 10.11.14 (loadgen/stack/mariadb.sh pair) with a few lines of Python
// speaking the protocol: whole packets, headers included.
pub(super) const GREETING_BYTES: &[u8] = include_bytes!("../testdata/mariadb-10.11-greeting.bin");
/// `SELECT @@read_only` on the replica.
pub(super) const READ_ONLY_REPLICA: &[u8] =
    include_bytes!("../testdata/mariadb-10.11-read-only-replica.bin");
/// `SHOW SLAVE STATUS` on the replica (one row) and on the primary (no rows).
pub(super) const SLAVE_STATUS_REPLICA: &[u8] =
    include_bytes!("../testdata/mariadb-10.11-slave-status-replica.bin");
pub(super) const SLAVE_STATUS_PRIMARY: &[u8] =
    include_bytes!("../testdata/mariadb-10.11-slave-status-primary.bin");

pub(super) fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Splits a captured byte stream into payloads, checking lengths and sequence ids (from 1:
/// a query's answer) on the way.
pub(super) fn payloads(mut b: &[u8], first_seq: u8) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut seq = first_seq;
    while !b.is_empty() {
        let len = usize::from(b[0]) | (usize::from(b[1]) << 8) | (usize::from(b[2]) << 16);
        assert_eq!(b[3], seq);
        seq = seq.wrapping_add(1);
        out.push(&b[4..4 + len]);
        b = &b[4 + len..];
    }
    out
}

pub(super) fn parse_result(b: &[u8]) -> ResultSet {
    let mut p = ResultParser::default();
    let packets = payloads(b, 1);
    let n = packets.len();
    for (i, pk) in packets.into_iter().enumerate() {
        let done = p.feed(pk).unwrap();
        assert_eq!(done, i == n - 1, "done only at the last packet");
    }
    p.set
}

pub(super) const NONCE: [u8; NONCE_LEN] = [
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20,
];
