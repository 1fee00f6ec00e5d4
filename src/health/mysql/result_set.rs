//! Text-protocol result sets (the answer to COM_QUERY), read one packet payload at a time and
//! bounded in columns and rows.

use super::wire::{server_error, Reader};

/// Most columns a result set may have: SHOW SLAVE STATUS has 54 on MariaDB 10.11.
pub const MAX_COLUMNS: usize = 256;
/// Most rows read: both queries answer one (SHOW SLAVE STATUS: the default connection only).
pub const MAX_ROWS: usize = 8;
/// Packets of one result set: the count, the column definitions, an EOF, the rows, an EOF.
pub(super) const MAX_RESULT_PACKETS: usize = 1 + MAX_COLUMNS + 1 + MAX_ROWS + 1;

/// A text-protocol result set, read with [`ResultParser`].
#[derive(Debug, Default, PartialEq)]
pub(super) struct ResultSet {
    pub(super) columns: Vec<String>,
    pub(super) rows: Vec<Vec<Option<String>>>,
}

impl ResultSet {
    /// Row `row`'s value of the first of `names` that is a column (by name, ASCII case-insensitive).
    /// Outer None: no such column; inner None: SQL NULL.
    pub(super) fn get(&self, row: usize, names: &[&str]) -> Option<Option<&str>> {
        let i = self
            .columns
            .iter()
            .position(|c| names.iter().any(|n| c.eq_ignore_ascii_case(n)))?;
        Some(self.rows.get(row)?.get(i)?.as_deref())
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Phase {
    #[default]
    Count,
    Columns,
    ColumnsEof,
    Rows,
    Done,
}

/// Reads a COM_QUERY response one packet payload at a time (without CLIENT_DEPRECATE_EOF: column
/// definitions and rows each end with an EOF packet). Every error is a detail.
#[derive(Debug, Default)]
pub(super) struct ResultParser {
    phase: Phase,
    count: usize,
    pub(super) set: ResultSet,
}

impl ResultParser {
    /// Takes the next packet; Ok(true) when the result set is complete.
    pub(super) fn feed(&mut self, p: &[u8]) -> Result<bool, String> {
        if p.first() == Some(&0xff) && self.phase != Phase::Done {
            return Err(server_error(p));
        }
        match self.phase {
            Phase::Count => {
                if p.first() == Some(&0x00) {
                    // OK: a statement without a result set; reads as no rows.
                    self.phase = Phase::Done;
                    return Ok(true);
                }
                let mut r = Reader(p);
                let n = match r.lenenc_int() {
                    Some(Some(n)) if r.0.is_empty() => n,
                    _ => return Err("malformed result set header".into()),
                };
                if n == 0 || n > MAX_COLUMNS as u64 {
                    return Err(format!("result set of {n} columns (limit {MAX_COLUMNS})"));
                }
                self.count = n as usize;
                self.phase = Phase::Columns;
            }
            Phase::Columns => {
                self.set.columns.push(parse_column_name(p)?);
                if self.set.columns.len() == self.count {
                    self.phase = Phase::ColumnsEof;
                }
            }
            Phase::ColumnsEof => {
                if !is_eof(p) {
                    return Err("no EOF after the column definitions".into());
                }
                self.phase = Phase::Rows;
            }
            Phase::Rows => {
                if is_eof(p) {
                    self.phase = Phase::Done;
                    return Ok(true);
                }
                if self.set.rows.len() >= MAX_ROWS {
                    return Err(format!("result set over {MAX_ROWS} rows"));
                }
                let row = parse_row(p, self.count)?;
                self.set.rows.push(row);
            }
            Phase::Done => return Err("data after the end of the result set".into()),
        }
        Ok(false)
    }
}

/// An EOF packet: 0xfe and at most 8 bytes (a row starting with 0xfe is a longer lenenc string).
fn is_eof(p: &[u8]) -> bool {
    p.first() == Some(&0xfe) && p.len() < 9
}

/// The `name` of a Protocol::ColumnDefinition41 (catalog, schema, table, org_table, name, ...).
pub(super) fn parse_column_name(p: &[u8]) -> Result<String, String> {
    let mut r = Reader(p);
    let mut field = None;
    for _ in 0..5 {
        field = r.lenenc_str();
        if !matches!(field, Some(Some(_))) {
            return Err("malformed column definition".into());
        }
    }
    let name = field.flatten().unwrap_or_default();
    Ok(String::from_utf8_lossy(name).into_owned())
}

/// A text-protocol row: exactly `count` length-encoded strings or NULLs (0xfb).
pub(super) fn parse_row(p: &[u8], count: usize) -> Result<Vec<Option<String>>, String> {
    let mut r = Reader(p);
    let mut row = Vec::with_capacity(count);
    for _ in 0..count {
        let v = r.lenenc_str().ok_or_else(|| "malformed row".to_string())?;
        row.push(v.map(|b| String::from_utf8_lossy(b).into_owned()));
    }
    if !r.0.is_empty() {
        return Err("malformed row (extra bytes)".into());
    }
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::super::captures::{
        parse_result, READ_ONLY_REPLICA, SLAVE_STATUS_PRIMARY, SLAVE_STATUS_REPLICA,
    };
    use super::*;

    #[test]
    fn captured_result_sets_parse() {
        let ro = parse_result(READ_ONLY_REPLICA);
        assert_eq!(ro.columns, ["@@read_only"]);
        assert_eq!(ro.rows, [[Some("1".to_string())]]);

        let replica = parse_result(SLAVE_STATUS_REPLICA);
        assert_eq!(replica.columns.len(), 54);
        assert_eq!(replica.rows.len(), 1);
        assert_eq!(replica.rows[0].len(), 54);
        assert_eq!(replica.get(0, &["Slave_IO_Running"]), Some(Some("Yes")));
        assert_eq!(replica.get(0, &["slave_sql_running"]), Some(Some("Yes")));
        assert_eq!(replica.get(0, &["Master_Host"]), Some(Some("127.0.0.1")));
        assert_eq!(replica.get(0, &["Seconds_Behind_Master"]), Some(Some("0")));
        assert_eq!(replica.get(0, &["No_Such_Column"]), None);
        let primary = parse_result(SLAVE_STATUS_PRIMARY);
        assert_eq!(primary.columns, replica.columns);
        assert!(primary.rows.is_empty());
    }

    #[test]
    fn result_parser_limits_and_errors() {
        let mut p = ResultParser::default();
        assert!(p
            .feed(&[0xfc, 0x01, 0x01])
            .unwrap_err()
            .contains("257 columns"));
        let mut p = ResultParser::default();
        assert!(p.feed(&[0x00]).unwrap(), "OK: no result set");
        assert!(p.feed(&[0x00]).is_err(), "nothing after the end");
        let mut p = ResultParser::default();
        assert_eq!(
            p.feed(b"\xff\x7a\x04#42000You have an error").unwrap_err(),
            "MySQL error 1146: You have an error"
        );
        // One column, then more rows than MAX_ROWS.
        let mut p = ResultParser::default();
        let col =
            b"\x03def\x00\x00\x00\x01a\x00\x0c\x3f\x00\x01\x00\x00\x00\x08\x80\x00\x00\x00\x00";
        assert!(!p.feed(&[1]).unwrap());
        assert!(!p.feed(col).unwrap());
        assert!(p.feed(b"\x01x").is_err(), "a row where the EOF belongs");
        let mut p = ResultParser::default();
        p.feed(&[1]).unwrap();
        p.feed(col).unwrap();
        p.feed(&[0xfe, 0, 0, 2, 0]).unwrap();
        for _ in 0..MAX_ROWS {
            assert!(!p.feed(b"\x011").unwrap());
        }
        assert!(p.feed(b"\x011").unwrap_err().contains("rows"));
        // Rows must have exactly the column count.
        assert!(parse_row(b"\x011\x012", 1).is_err());
        assert!(parse_row(b"\x011", 2).is_err());
        assert_eq!(
            parse_row(b"\xfb\x00", 2).unwrap(),
            [None, Some(String::new())]
        );
    }
}
