//! The request path as routing must see it: the same resource the server will see, whatever the
//! spelling. `/api/../admin/`, `/%61dmin/` and `//admin/` all name `/admin/` once the server (or its
//! framework) normalizes them, so `path_prefix` rules must compare against the normalized form, or
//! a client could reach a backend a rule keeps it from (nginx normalizes the same way; HAProxy only
//! with `normalize-uri`). The request itself is forwarded unchanged.
//!
//! Normalization (RFC 3986 §6.2.2): the query is cut off; percent-encoded unreserved characters are
//! decoded (§2.3), other percent-encodings are kept (an encoded '/' stays data); runs of '/' are merged
//! (as nginx's `merge_slashes`); dot-segments are removed (§5.2.4). No allocation when the path needs
//! none of it (the common case); otherwise into a buffer the connection keeps.

/// Whether `path` (without query) may differ from its normalized form.
pub fn needs_normalizing(path: &[u8]) -> bool {
    path.iter()
        .enumerate()
        .any(|(i, &b)| b == b'%' || (b == b'/' && matches!(path.get(i + 1), Some(b'/' | b'.'))))
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// The path to route on: `path` itself when nothing needs normalizing, else its normalized form
/// written into `out` (cleared first; at most `path.len()` bytes).
pub fn for_routing<'a>(path: &'a [u8], out: &'a mut Vec<u8>) -> &'a [u8] {
    let path = match path.iter().position(|&b| b == b'?') {
        Some(q) => &path[..q],
        None => path,
    };
    if !needs_normalizing(path) {
        return path;
    }
    out.clear();
    // Bounded: one pass over the input; each output byte comes from one input byte or escape.
    let mut i = 0;
    while i < path.len() {
        let b = path[i];
        if b == b'%' {
            if let (Some(h), Some(l)) = (
                path.get(i + 1).copied().and_then(hex),
                path.get(i + 2).copied().and_then(hex),
            ) {
                let c = h << 4 | l;
                if is_unreserved(c) {
                    out.push(c);
                } else {
                    // Kept encoded, in upper case (§6.2.2.1) so one spelling matches.
                    out.extend_from_slice(&[
                        b'%',
                        path[i + 1].to_ascii_uppercase(),
                        path[i + 2].to_ascii_uppercase(),
                    ]);
                }
                i += 3;
                continue;
            }
        }
        if b == b'/' && out.last() == Some(&b'/') {
            i += 1;
            continue;
        }
        out.push(b);
        i += 1;
    }
    remove_dot_segments(out);
    out
}

/// RFC 3986 §5.2.4 on an absolute path, in place: "/a/./b" -> "/a/b", "/a/b/../c" -> "/a/c",
/// "/.." -> "/". Segments are separated by '/' (runs already merged).
fn remove_dot_segments(p: &mut Vec<u8>) {
    let mut w = 0usize; // write position: p[..w] is the output so far
    let mut r = 0usize; // read position
    let n = p.len();
    // Bounded: r advances by at least one byte per iteration.
    while r < n {
        // The segment starting at r (r points at '/', or at the first byte if the path has no slash).
        let start = r;
        let mut end = r + 1;
        while end < n && p[end] != b'/' {
            end += 1;
        }
        let seg_is = |s: &[u8]| &p[start..end] == s;
        if seg_is(b"/.") {
            // "/." : drop, keep a trailing slash if it was the last segment.
            if end == n {
                p[w] = b'/';
                w += 1;
            }
        } else if seg_is(b"/..") {
            // Pop the last output segment.
            while w > 0 {
                w -= 1;
                if p[w] == b'/' {
                    break;
                }
            }
            if end == n {
                p[w] = b'/';
                w += 1;
            }
        } else {
            p.copy_within(start..end, w);
            w += end - start;
        }
        r = end;
    }
    p.truncate(w);
    if p.is_empty() {
        p.push(b'/');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(path: &str) -> String {
        let mut out = Vec::new();
        String::from_utf8(for_routing(path.as_bytes(), &mut out).to_vec()).unwrap()
    }

    #[test]
    fn plain_paths_are_untouched_without_copy() {
        let mut out = Vec::new();
        let p = b"/api/v1/items?x=/../y";
        let r = for_routing(p, &mut out);
        assert_eq!(r, b"/api/v1/items");
        assert!(out.is_empty(), "no copy for a plain path");
        assert_eq!(norm("/a.b/c.d"), "/a.b/c.d");
        assert_eq!(norm("*"), "*");
    }

    #[test]
    fn spellings_of_the_same_resource_normalize_alike() {
        for p in [
            "/admin/",
            "/api/../admin/",
            "/./admin/",
            "//admin/",
            "/%61dmin/",
            "/%2e%2E/admin/",
            "/x/y/../../admin/",
            "/admin/./",
            "/admin/x/..",
            "/../../admin/",
            "/api/%2E%2E/admin/",
        ] {
            assert_eq!(norm(p), "/admin/", "{p}");
        }
    }

    #[test]
    fn reserved_escapes_stay_data() {
        assert_eq!(
            norm("/a%2fb"),
            "/a%2Fb",
            "an encoded slash is not a separator"
        );
        assert_eq!(norm("/a%2F..%2Fb"), "/a%2F..%2Fb", "not a dot-segment");
        assert_eq!(norm("/%zz/x"), "/%zz/x", "a bad escape is kept as is");
        assert_eq!(norm("/%"), "/%");
        assert_eq!(norm("/..."), "/...", "three dots are a name");
        assert_eq!(norm("/a/..b/c"), "/a/..b/c");
        assert_eq!(norm("/.."), "/");
        assert_eq!(norm("/."), "/");
        assert_eq!(norm("/a/b/.."), "/a/");
    }

    #[test]
    fn arbitrary_paths_never_panic_and_never_grow() {
        let alphabet = b"/.%2eEfF0aA?";
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..40 {
            for _ in 0..200 {
                let mut p = vec![b'/'];
                for _ in 0..len {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    p.push(alphabet[(x % alphabet.len() as u64) as usize]);
                }
                let mut out = Vec::new();
                let r = for_routing(&p, &mut out).to_vec();
                assert!(r.len() <= p.len());
                assert!(
                    r.starts_with(b"/"),
                    "{:?} -> {:?}",
                    String::from_utf8_lossy(&p),
                    r
                );
                // Idempotent.
                let mut out2 = Vec::new();
                assert_eq!(for_routing(&r, &mut out2), &r[..]);
            }
        }
    }
}
