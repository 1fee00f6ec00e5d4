//! The writer/reader role rules: which query each role runs and the verdict from its result
//! (`@@read_only` for a writer; replication threads and lag from SHOW SLAVE STATUS for a reader).

use std::time::Duration;

use super::super::check_io::Verdict;
use super::result_set::ResultSet;
use super::wire::text;

/// Role writer's query: `@@read_only` must be off.
pub(super) const WRITER_QUERY: &str = "SELECT @@read_only";
/// Role reader's query: the replication threads and the lag of the default connection.
pub(super) const READER_QUERY: &str = "SHOW SLAVE STATUS";

/// The verdict of a writer check from `SELECT @@read_only`.
pub(super) fn writer_verdict(rs: &ResultSet) -> (Verdict, String) {
    match rs
        .rows
        .first()
        .and_then(|r| r.first())
        .map(Option::as_deref)
    {
        Some(Some("0" | "OFF")) => (Verdict::Pass, "read_only=0".into()),
        Some(Some("1" | "ON")) => (Verdict::Fail, "read_only=1".into()),
        other => (
            Verdict::Fail,
            format!(
                "unexpected @@read_only value {:?}",
                other.flatten().map(text)
            ),
        ),
    }
}

/// The verdict of a reader check from SHOW SLAVE STATUS (MySQL 8's renamed columns accepted too).
pub(super) fn replica_verdict(rs: &ResultSet, max_lag: Duration) -> (Verdict, String) {
    if rs.rows.is_empty() {
        return (
            Verdict::Fail,
            "not a replica (SHOW SLAVE STATUS is empty)".into(),
        );
    }
    let cols: [&[&str]; 3] = [
        &["Slave_IO_Running", "Replica_IO_Running"],
        &["Slave_SQL_Running", "Replica_SQL_Running"],
        &["Seconds_Behind_Master", "Seconds_Behind_Source"],
    ];
    let [io, sql, lag] = cols.map(|names| rs.get(0, names));
    let (Some(io), Some(sql), Some(lag)) = (io, sql, lag) else {
        return (
            Verdict::Fail,
            "SHOW SLAVE STATUS lacks the Slave_IO_Running, Slave_SQL_Running or \
             Seconds_Behind_Master column"
                .into(),
        );
    };
    let stopped = |v: Option<&str>| v != Some("Yes");
    let state = |v: Option<&str>| match v {
        Some("No") => "stopped".to_string(),
        Some(s) => format!("not running ({})", text(s)),
        None => "not running (NULL)".to_string(),
    };
    match (stopped(io), stopped(sql)) {
        (true, true) => {
            return (
                Verdict::Fail,
                format!(
                    "replication IO thread {}, SQL thread {}",
                    state(io),
                    state(sql)
                ),
            )
        }
        (true, false) => {
            return (
                Verdict::Fail,
                format!("replication IO thread {}", state(io)),
            )
        }
        (false, true) => {
            return (
                Verdict::Fail,
                format!("replication SQL thread {}", state(sql)),
            )
        }
        (false, false) => {}
    }
    let Some(lag) = lag else {
        return (
            Verdict::Fail,
            "not replicating (Seconds_Behind_Master is NULL)".into(),
        );
    };
    let Ok(secs) = lag.parse::<u64>() else {
        return (
            Verdict::Fail,
            format!("unexpected Seconds_Behind_Master {:?}", text(lag)),
        );
    };
    if Duration::from_secs(secs) > max_lag {
        return (
            Verdict::Fail,
            format!("replica lag {secs} s > {}", seconds(max_lag)),
        );
    }
    (Verdict::Pass, format!("replica lag {secs} s"))
}

/// "10 s", or "1.5 s" for a fractional limit.
fn seconds(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::super::captures::{
        parse_result, READ_ONLY_REPLICA, SLAVE_STATUS_PRIMARY, SLAVE_STATUS_REPLICA,
    };
    use super::*;

    #[test]
    fn writer_verdicts() {
        // The captured replica answers read_only=1.
        let ro = parse_result(READ_ONLY_REPLICA);
        assert_eq!(
            writer_verdict(&ro),
            (Verdict::Fail, "read_only=1".to_string())
        );
        let one = |v: Option<&str>| ResultSet {
            columns: vec!["@@read_only".into()],
            rows: vec![vec![v.map(str::to_string)]],
        };
        assert_eq!(writer_verdict(&one(Some("OFF"))).0, Verdict::Pass);
        assert_eq!(writer_verdict(&one(Some("0"))).0, Verdict::Pass);
        assert_eq!(writer_verdict(&one(Some("ON"))).0, Verdict::Fail);
        assert_eq!(
            writer_verdict(&one(None)),
            (
                Verdict::Fail,
                "unexpected @@read_only value None".to_string()
            )
        );
        assert_eq!(writer_verdict(&ResultSet::default()).0, Verdict::Fail);
    }

    #[test]
    fn captured_replica_and_primary() {
        let replica = parse_result(SLAVE_STATUS_REPLICA);
        let lag = Duration::from_secs(10);
        assert_eq!(
            replica_verdict(&replica, lag),
            (Verdict::Pass, "replica lag 0 s".to_string())
        );

        let primary = parse_result(SLAVE_STATUS_PRIMARY);
        assert_eq!(
            replica_verdict(&primary, lag),
            (
                Verdict::Fail,
                "not a replica (SHOW SLAVE STATUS is empty)".to_string()
            )
        );
    }

    #[test]
    fn replica_verdicts() {
        let base = parse_result(SLAVE_STATUS_REPLICA);
        let with = |col: &str, v: Option<&str>| {
            let mut rs = ResultSet {
                columns: base.columns.clone(),
                rows: base.rows.clone(),
            };
            let i = rs.columns.iter().position(|c| c == col).unwrap();
            rs.rows[0][i] = v.map(str::to_string);
            rs
        };
        let ten = Duration::from_secs(10);
        let cases = [
            (
                with("Seconds_Behind_Master", Some("42")),
                ten,
                Verdict::Fail,
                "replica lag 42 s > 10 s",
            ),
            (
                with("Seconds_Behind_Master", Some("10")),
                ten,
                Verdict::Pass,
                "replica lag 10 s",
            ),
            (
                with("Seconds_Behind_Master", Some("2")),
                Duration::from_millis(1500),
                Verdict::Fail,
                "replica lag 2 s > 1.5 s",
            ),
            (
                with("Seconds_Behind_Master", None),
                ten,
                Verdict::Fail,
                "not replicating (Seconds_Behind_Master is NULL)",
            ),
            (
                with("Seconds_Behind_Master", Some("x")),
                ten,
                Verdict::Fail,
                "unexpected Seconds_Behind_Master \"x\"",
            ),
            (
                with("Slave_SQL_Running", Some("No")),
                ten,
                Verdict::Fail,
                "replication SQL thread stopped",
            ),
            (
                with("Slave_IO_Running", Some("Connecting")),
                ten,
                Verdict::Fail,
                "replication IO thread not running (Connecting)",
            ),
        ];
        for (rs, lag, verdict, detail) in cases {
            assert_eq!(replica_verdict(&rs, lag), (verdict, detail.to_string()));
        }
        let mut both = with("Slave_SQL_Running", Some("No"));
        let io = both
            .columns
            .iter()
            .position(|c| c == "Slave_IO_Running")
            .unwrap();
        both.rows[0][io] = Some("No".into());
        assert_eq!(
            replica_verdict(&both, ten).1,
            "replication IO thread stopped, SQL thread stopped"
        );
        // MySQL 8's renamed columns are read too; a result without them fails with a detail.
        let renamed = ResultSet {
            columns: [
                "Replica_IO_Running",
                "Replica_SQL_Running",
                "Seconds_Behind_Source",
            ]
            .map(String::from)
            .to_vec(),
            rows: vec![vec![
                Some("Yes".into()),
                Some("Yes".into()),
                Some("3".into()),
            ]],
        };
        assert_eq!(replica_verdict(&renamed, ten).0, Verdict::Pass);
        let odd = ResultSet {
            columns: vec!["a".into()],
            rows: vec![vec![None]],
        };
        assert_eq!(replica_verdict(&odd, ten).0, Verdict::Fail);
    }
}
