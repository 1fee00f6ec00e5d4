//! Where a validation error's field path (`backend["app"].server[1].address`) is in the TOML text,
//! so semantic errors name a line and column as syntax errors do.
//!
//! Runs only when validation failed (never on a valid config): the text is parsed once more with
//! `toml_edit`, which keeps spans, and each path is walked through it. `section["name"]` is the
//! first element of `section` whose `name` is that name (validation labels entries that way only
//! when the name is valid and unique), `section[i]` the i-th. The span is the deepest part of the
//! path present in the file: the key for a key that is there, the entry's `[[header]]` for a missing
//! key of an entry. A path with nothing of it in the file (no `[[frontend]]` at all) has none.

use std::ops::Range;

use toml_edit::{ImDocument, Item, Table, TableLike, Value};

/// Most segments walked in one path: validation's deepest is 5 (`backend[..].server[..].cookie`);
/// the bound keeps a strange path from costing more than that.
const MAX_SEGMENTS: usize = 8;

/// One step of a field path.
#[derive(Debug, PartialEq, Eq)]
enum Step<'a> {
    Key(&'a str),
    Index(usize),
    Name(&'a str),
}

/// Splits `a.b["x.y"][2].c` into its steps; `None` when the path is not one validation writes
/// (`--listen`, a stray bracket).
fn steps(path: &str) -> Option<Vec<Step<'_>>> {
    let mut out = Vec::new();
    let mut rest = path;
    while !rest.is_empty() && out.len() < MAX_SEGMENTS {
        if let Some(r) = rest.strip_prefix("[\"") {
            let end = r.find("\"]")?;
            out.push(Step::Name(&r[..end]));
            rest = &r[end + 2..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            out.push(Step::Index(r[..end].parse().ok()?));
            rest = &r[end + 1..];
        } else {
            let r = rest.strip_prefix('.').unwrap_or(rest);
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let key = &r[..end];
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return None;
            }
            out.push(Step::Key(key));
            rest = &r[end..];
        }
    }
    Some(out)
}

/// A place in the parsed document.
#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a Item),
    Table(&'a Table),
    Value(&'a Value),
}

impl<'a> Node<'a> {
    fn table_like(self) -> Option<&'a dyn TableLike> {
        match self {
            Node::Item(i) => i.as_table_like(),
            Node::Table(t) => Some(t),
            Node::Value(v) => v.as_inline_table().map(|t| t as &dyn TableLike),
        }
    }

    /// The elements of an array of tables or of an inline array.
    fn elements(self) -> Vec<Node<'a>> {
        match self {
            Node::Item(Item::ArrayOfTables(a)) => a.iter().map(Node::Table).collect(),
            Node::Item(Item::Value(Value::Array(a))) | Node::Value(Value::Array(a)) => {
                a.iter().map(Node::Value).collect()
            }
            _ => Vec::new(),
        }
    }

    fn span(self) -> Option<Range<usize>> {
        match self {
            Node::Item(i) => i.span(),
            Node::Table(t) => t.span(),
            Node::Value(v) => v.span(),
        }
    }

    fn name(self) -> Option<&'a str> {
        self.table_like()?.get("name")?.as_str()
    }
}

/// The byte range in `doc` of the deepest part of `path` present in it.
fn span_of(doc: &ImDocument<&str>, path: &str) -> Option<Range<usize>> {
    let mut node = Node::Table(doc.as_table());
    let mut best = None;
    for step in steps(path)? {
        let (next, span) = match step {
            Step::Key(k) => {
                let Some((key, item)) = node.table_like().and_then(|t| t.get_key_value(k)) else {
                    break;
                };
                let next = Node::Item(item);
                (next, key.span().or_else(|| next.span()))
            }
            Step::Index(i) => match node.elements().get(i) {
                Some(&next) => (next, next.span()),
                None => break,
            },
            Step::Name(name) => {
                match node.elements().into_iter().find(|e| e.name() == Some(name)) {
                    Some(next) => (next, next.span()),
                    None => break,
                }
            }
        };
        node = next;
        best = span.or(best);
    }
    best
}

/// 1-based (line, column) of `path` in `text`, for each of `paths`; all `None` when `text` does not
/// parse (then the error is a syntax error, which has its own position).
pub(super) fn positions<'p>(
    text: &str,
    paths: impl Iterator<Item = &'p str>,
) -> Vec<Option<(usize, usize)>> {
    let doc = ImDocument::parse(text).ok();
    paths
        .map(|p| {
            let span = span_of(doc.as_ref()?, p)?;
            Some(super::syntax::line_col(text, span.start))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "[global]\nworkers = 0\n\n[[frontend]]\nname = \"www\"\nbind = [\"a\", \"b\"]\n\
                        limits = { max_headers = 0 }\n\n[[backend]]\nname = \"app\"\n  [[backend.server]]\n  \
                        address = \"x\"\n  [[backend.server]]\n  name = \"s.2\"\n  state = \"off\"\n\
                        [backend.check]\ntype = \"nope\"\n";

    fn at(path: &str) -> Option<(usize, usize)> {
        positions(TEXT, std::iter::once(path))[0]
    }

    #[test]
    fn paths_split_into_steps() {
        assert_eq!(
            steps(r#"backend["a.b"].server[1].address"#).unwrap(),
            [
                Step::Key("backend"),
                Step::Name("a.b"),
                Step::Key("server"),
                Step::Index(1),
                Step::Key("address")
            ]
        );
        assert!(steps("--listen").is_none());
        assert!(steps("backend[x]").is_none());
    }

    #[test]
    fn fields_are_found_by_index_and_by_name() {
        assert_eq!(at("global.workers"), Some((2, 1)));
        assert_eq!(at(r#"frontend["www"].bind[1]"#), Some((6, 14)));
        assert_eq!(at(r#"frontend["www"].limits.max_headers"#), Some((7, 12)));
        assert_eq!(at(r#"backend["app"].server[0].address"#), Some((12, 3)));
        assert_eq!(at(r#"backend["app"].server["s.2"].state"#), Some((15, 3)));
        assert_eq!(at(r#"backend["app"].check.type"#), Some((17, 1)));
    }

    #[test]
    fn missing_parts_point_at_the_nearest_parent() {
        // A missing key of an entry: the entry's header.
        assert_eq!(at(r#"backend["app"].server[1].address"#), Some((13, 3)));
        assert_eq!(at(r#"frontend[0].default_backend"#), Some((4, 1)));
        // Nothing of the path in the file, or not a file path at all.
        assert_eq!(at("nothing.here"), None);
        assert_eq!(at("--listen"), None);
        assert_eq!(positions("a = [", std::iter::once("a")), [None]);
    }
}
