//! Turns a `toml::de::Error` into a [`ConfigError::Syntax`] with a 1-based line and column and, best
//! effort, the key path at the error position.
//!
//! The `toml` crate keeps its key path private, so the path is rebuilt from the text: the last table
//! header before the error (`[[frontend]]` headers are counted to give `frontend[1]`) plus the key on the
//! error's line. Inline tables on that line are followed; values spread over several lines or arrays of
//! inline tables give a shorter (still correct, less precise) path. The line and column are exact.

use super::error::ConfigError;

/// Most keys in one dotted table header or inline-table nesting kept for the path: a bound on work
/// per header when the input is absurd (the real schema nests 3 deep).
const MAX_PATH_DEPTH: usize = 16;

pub(crate) fn from_toml_error(text: &str, err: &toml::de::Error) -> ConfigError {
    let offset = err.span().map_or(0, |s| s.start).min(text.len());
    let (line, column) = line_col(text, offset);
    // toml's messages may span several lines; ours are one line each.
    let message = err
        .message()
        .trim()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
        // serde names Rust types; operators know TOML's.
        .replace("expected i64", "expected an integer")
        .replace("expected a sequence", "expected an array");
    // Without a span there is no position to take a path from.
    let mut field = match err.span() {
        Some(_) => key_path_at(text, offset),
        None => String::new(),
    };
    if let Some(missing) = missing_field(&message) {
        field = join(&field, missing);
    }
    // One line per error, whatever bytes the file held.
    let message = without_controls(&message);
    let field = without_controls(&field);
    let hint = hint_for(&message);
    ConfigError::Syntax {
        file: None,
        line,
        column,
        field,
        message,
        hint,
    }
}

fn without_controls(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// 1-based line and column (in characters) of byte `offset`.
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.as_bytes().get(..offset).unwrap_or(text.as_bytes());
    let line = before
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        .saturating_add(1);
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p.saturating_add(1));
    let column = text
        .get(line_start..offset)
        .map_or(offset.saturating_sub(line_start), |s| s.chars().count());
    (line, column.saturating_add(1))
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// Table state while scanning headers: for every array-of-tables path seen (`frontend`,
/// `frontend.route`), how many elements it has so far under its current parent element.
#[derive(Default)]
struct Tables {
    counts: Vec<(String, usize)>,
    current: String,
}

impl Tables {
    fn header(&mut self, keys: &[String], array: bool) {
        let plain = keys.join(".");
        if array {
            // A new element: its sub-arrays start again from zero.
            let child_prefix = format!("{plain}.");
            self.counts.retain(|(k, _)| !k.starts_with(&child_prefix));
            match self.counts.iter_mut().find(|(k, _)| *k == plain) {
                Some((_, n)) => *n = n.saturating_add(1),
                None => self.counts.push((plain.clone(), 1)),
            }
        }
        // Render with indices: `frontend[0].route[2]`.
        let mut rendered = String::new();
        let mut prefix = String::new();
        for key in keys {
            prefix = join(&prefix, key);
            rendered = join(&rendered, key);
            if let Some((_, n)) = self.counts.iter().find(|(k, _)| *k == prefix) {
                rendered.push_str(&format!("[{}]", n.saturating_sub(1)));
            }
        }
        self.current = rendered;
    }
}

/// Splits a dotted key (`a . "b.c" . d`) into its parts.
fn split_key(s: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    for c in s.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => quote = Some(c),
            (None, '.') => parts.push(std::mem::take(&mut cur)),
            (None, c) if c.is_whitespace() => {}
            (None, c) => cur.push(c),
        }
        if parts.len() >= MAX_PATH_DEPTH {
            break;
        }
    }
    parts.push(cur);
    parts
}

/// Parses a table header line into (keys, is array-of-tables).
fn parse_header(line: &str) -> Option<(Vec<String>, bool)> {
    let t = line.trim_start();
    let (body, array) = if let Some(rest) = t.strip_prefix("[[") {
        (rest.split("]]").next()?, true)
    } else if let Some(rest) = t.strip_prefix('[') {
        (rest.split(']').next()?, false)
    } else {
        return None;
    };
    Some((split_key(body), array))
}

/// The key path at byte `offset` of `text`.
fn key_path_at(text: &str, offset: usize) -> String {
    let mut tables = Tables::default();
    let mut line_start = 0usize;
    // A value spread over several lines (a multi-line array): its key, and how many brackets are open.
    let mut open_key: Option<String> = None;
    let mut depth = 0usize;
    for full_line in text.split_inclusive('\n') {
        let line_end = line_start.saturating_add(full_line.len());
        let is_error_line = offset < line_end;
        let line = full_line.trim_end_matches(['\n', '\r']);
        if depth == 0 {
            if let Some((keys, array)) = parse_header(line) {
                tables.header(&keys, array);
                if is_error_line {
                    // The error is in the header itself (unknown table, or a missing key of this table).
                    return tables.current;
                }
                line_start = line_end;
                continue;
            }
        }
        if is_error_line {
            let keys = if depth == 0 {
                keys_on_line(line, offset.saturating_sub(line_start))
            } else {
                open_key.into_iter().collect()
            };
            return keys
                .iter()
                .fold(tables.current.clone(), |path, k| join(&path, k));
        }
        if depth == 0 {
            open_key = line
                .split_once('=')
                .and_then(|(k, _)| split_key(k.trim()).pop());
        }
        depth = bracket_depth(line, depth);
        line_start = line_end;
    }
    tables.current
}

/// Bracket depth after `line`, starting from `depth`; brackets in strings and comments do not count.
fn bracket_depth(line: &str, mut depth: usize) -> usize {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in line.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' && q == '"' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '"' | '\'' => quote = Some(c),
                '#' => break,
                '[' | '{' => depth = depth.saturating_add(1),
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
    }
    depth
}

/// The keys leading to byte `col` of a `key = value` line, following inline tables:
/// `limits = { max_headers = "x" }` at the `"x"` gives `["limits", "max_headers"]`, and an unknown key
/// at `col` gives that key.
fn keys_on_line(line: &str, col: usize) -> Vec<String> {
    let before = line.get(..col).unwrap_or(line);
    // Inline tables we are inside: their key, and the array depth outside them.
    let mut stack: Vec<(String, usize)> = Vec::new();
    let mut segment = String::new(); // text since the last '=', '{' or ','
    let mut last_key: Option<String> = None; // key of the current `key = value`
    let mut quote: Option<char> = None;
    let mut depth = 0usize; // arrays open inside the current value
    for c in before.chars() {
        if let Some(q) = quote {
            if c == q {
                quote = None;
            }
            segment.push(c);
            continue;
        }
        match c {
            '"' | '\'' => {
                quote = Some(c);
                segment.push(c);
            }
            '=' => {
                last_key = split_key(segment.trim()).into_iter().last();
                segment.clear();
            }
            '{' => {
                if stack.len() < MAX_PATH_DEPTH {
                    stack.push((last_key.take().unwrap_or_default(), depth));
                }
                depth = 0;
                segment.clear();
            }
            '}' => {
                depth = stack.pop().map_or(0, |(_, d)| d);
                last_key = None;
                segment.clear();
            }
            '[' => {
                depth = depth.saturating_add(1);
                segment.push(c);
            }
            ']' => {
                depth = depth.saturating_sub(1);
                segment.push(c);
            }
            ',' if depth == 0 => {
                // Next key of the same inline table.
                last_key = None;
                segment.clear();
            }
            _ => segment.push(c),
        }
    }
    let mut keys: Vec<String> = stack
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| !k.is_empty())
        .collect();
    match last_key {
        Some(k) => keys.push(k),
        None => {
            // No `=` before the error: the error is on a key itself (unknown field).
            let rest = line.get(col..).unwrap_or("");
            let key: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
                .collect();
            // Only a key if an `=` or `.` follows: a value alone on its line (inside a multi-line
            // array) is not one.
            let after = rest.get(key.len()..).unwrap_or("").trim_start();
            if !key.is_empty() && (after.starts_with('=') || after.starts_with('.')) {
                keys.push(key);
            }
        }
    }
    keys
}

/// `missing field `name`` -> `name`.
fn missing_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next()
}

fn hint_for(message: &str) -> String {
    if message.starts_with("unknown field") {
        let ticks: Vec<&str> = message.split('`').skip(1).step_by(2).collect();
        if let Some((unknown, expected)) = ticks.split_first() {
            if let Some(best) = closest(unknown, expected) {
                return format!(
                    "did you mean `{best}`? (configs/reference.toml lists every option)"
                );
            }
        }
        return "remove the key or fix its spelling (configs/reference.toml lists every option)"
            .to_owned();
    }
    if let Some(name) = missing_field(message) {
        return format!("add `{name} = ...` (configs/reference.toml lists every option)");
    }
    if message.starts_with("invalid type") {
        return "durations and addresses are strings (\"5s\", \"127.0.0.1:80\"), sizes and counts are plain \
                integers, `bind` and `trusted_proxies` are arrays, and `frontend`, `backend` and `server` \
                are [[arrays of tables]]"
            .to_owned();
    }
    "check the TOML syntax (https://toml.io) near this position".to_owned()
}

/// The expected key nearest to `word` by edit distance, if near enough to be a likely typo.
fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let (best, dist) = candidates
        .iter()
        .map(|c| (*c, edit_distance(word, c)))
        .min_by_key(|(_, d)| *d)?;
    let limit = (word.chars().count() / 3).max(1);
    (dist <= limit).then_some(best)
}

/// Levenshtein distance; keys are short, and longer inputs are cut to bound the work.
fn edit_distance(a: &str, b: &str) -> usize {
    /// Key names of the schema are under 32 characters; anything beyond cannot be a near miss anyway.
    const MAX_LEN: usize = 64;
    let a: Vec<char> = a.chars().take(MAX_LEN).collect();
    let b: Vec<char> = b.chars().take(MAX_LEN).collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0usize; b.len().saturating_add(1)];
    for (i, ca) in a.iter().enumerate() {
        if let Some(first) = cur.first_mut() {
            *first = i.saturating_add(1);
        }
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            let del = prev
                .get(j.saturating_add(1))
                .copied()
                .unwrap_or(usize::MAX)
                .saturating_add(1);
            let ins = cur.get(j).copied().unwrap_or(usize::MAX).saturating_add(1);
            let sub = prev
                .get(j)
                .copied()
                .unwrap_or(usize::MAX)
                .saturating_add(cost);
            if let Some(slot) = cur.get_mut(j.saturating_add(1)) {
                *slot = del.min(ins).min(sub);
            }
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev.last().copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        // 'é' is two bytes but one column.
        assert_eq!(line_col(text, 9), (2, 3));
        assert_eq!(line_col(text, text.len()), (3, 1));
    }

    #[test]
    fn paths_from_headers() {
        let text = "[[frontend]]\nname = \"a\"\n[[frontend]]\nname = \"b\"\n[frontend.limits]\nmax_headers = \"x\"\n\
                    [[frontend.route]]\nhost = 1\n[[backend]]\n[[backend.server]]\n[[backend.server]]\naddress = 5\n";
        let at = |needle: &str| key_path_at(text, text.find(needle).unwrap());
        assert_eq!(at("\"x\""), "frontend[1].limits.max_headers");
        assert_eq!(at("1\n"), "frontend[1].route[0].host");
        assert_eq!(at("5\n"), "backend[0].server[1].address");
        assert_eq!(at("max_headers"), "frontend[1].limits.max_headers");
        assert_eq!(at("[frontend.limits]"), "frontend[1].limits");
    }

    #[test]
    fn paths_in_multi_line_values() {
        let text =
            "[[frontend]]\nbind = [\n  \"a]#\", # ] [[x]]\n  [1],\n  5,\n]\nmaxconn = \"x\"\n";
        let at = |needle: &str| key_path_at(text, text.find(needle).unwrap());
        assert_eq!(at("5,"), "frontend[0].bind");
        assert_eq!(at("\"x\""), "frontend[0].maxconn");
        assert_eq!(bracket_depth(r#"a = ["\"]", '[' # ["#, 0), 1);
    }

    #[test]
    fn paths_in_inline_tables() {
        let line = "limits = { max_request_line = 1, bogus = 2 }";
        let col = line.find("bogus").unwrap();
        assert_eq!(keys_on_line(line, col), vec!["limits", "bogus"]);
        let col = line.find('1').unwrap();
        assert_eq!(keys_on_line(line, col), vec!["limits", "max_request_line"]);
        let line = "route = [{ host = \"x\", bogus = 1 }]";
        assert_eq!(
            keys_on_line(line, line.find("bogus").unwrap()),
            vec!["route", "bogus"]
        );
        assert_eq!(keys_on_line("  5,", 2), Vec::<String>::new());
        assert_eq!(keys_on_line("bogus = 1", 0), vec!["bogus"]);
        let line = "bind = [\"a\", 5]";
        assert_eq!(keys_on_line(line, line.find('5').unwrap()), vec!["bind"]);
    }

    #[test]
    fn typo_suggestions() {
        assert_eq!(closest("bnd", &["name", "bind"]), Some("bind"));
        assert_eq!(
            closest("max_conn", &["maxconn", "backlog"]),
            Some("maxconn")
        );
        assert_eq!(closest("zzzzzz", &["name", "bind"]), None);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
