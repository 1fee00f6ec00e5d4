//! The app node's endpoints.

use crate::db::{Db, DbError, ReadFrom, Stats};
use crate::http::{Method, Request, Response};

/// Size of the `GET /static` body: a typical small asset, served without touching the database.
pub const STATIC_LEN: usize = 1024;
static STATIC_BODY: [u8; STATIC_LEN] = static_body();

/// Longest item name: the column is VARCHAR(64) (characters, not bytes).
const MAX_NAME_CHARS: usize = 64;
/// Name given to items posted without a body.
const DEFAULT_NAME: &str = "item";

/// 1 KiB of printable text, 63 letters and a newline per line.
const fn static_body() -> [u8; STATIC_LEN] {
    let mut body = [0u8; STATIC_LEN];
    let mut i = 0;
    while i < STATIC_LEN {
        body[i] = if i % 64 == 63 {
            b'\n'
        } else {
            b'a' + (i % 26) as u8
        };
        i += 1;
    }
    body
}

pub fn handle(req: &Request, db: &Db) -> Response {
    Stats::bump(&db.stats.requests);
    let path = req.path.as_str();
    let readable = matches!(req.method, Method::Get | Method::Head);
    match path {
        "/static" if readable => Response {
            status: 200,
            content_type: "text/plain",
            headers: Vec::new(),
            body: STATIC_BODY.as_slice().into(),
        },
        "/healthz" if readable => healthz(db),
        "/stats" if readable => Response::json(200, &db.stats.to_json()),
        "/items" if req.method == Method::Post => post_item(&req.body, db),
        "/static" | "/healthz" | "/stats" => method_not_allowed("GET, HEAD"),
        "/items" => method_not_allowed("POST"),
        _ => match path.strip_prefix("/items/") {
            Some(id) if readable => get_item(id, db),
            Some(_) => method_not_allowed("GET, HEAD"),
            None => Response::error(404, "no such path"),
        },
    }
}

fn method_not_allowed(allow: &str) -> Response {
    // RFC 9110 §15.5.6: a 405 lists the methods the target supports.
    Response::error(405, "method not allowed").with_header("Allow", allow.to_string())
}

fn db_failure(db: &Db, err: &DbError) -> Response {
    Stats::bump(&db.stats.db_errors);
    Response::error(503, &err.to_string())
}

fn get_item(id: &str, db: &Db) -> Response {
    // Plain decimal digits only (`str::parse` would take "+5"); ids above i64::MAX cannot exist.
    let id = if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) {
        id.parse::<i64>().ok()
    } else {
        None
    };
    let Some(id) = id else {
        return Response::error(404, "no such item");
    };
    match db.get_item(id) {
        Ok((item, from)) => {
            let resp = match item {
                Some(item) => Response::json(
                    200,
                    &serde_json::json!({ "id": item.id, "name": item.name, "created": item.created }),
                ),
                None => Response::error(404, "no such item"),
            };
            match from {
                ReadFrom::Replica => resp,
                ReadFrom::Primary => resp.with_header("X-Read-From", "primary".to_string()),
            }
        }
        Err(e) => db_failure(db, &e),
    }
}

#[derive(serde::Deserialize)]
struct NewItem {
    name: String,
}

fn post_item(body: &[u8], db: &Db) -> Response {
    let name = if body.is_empty() {
        DEFAULT_NAME.to_string()
    } else {
        match serde_json::from_slice::<NewItem>(body) {
            Ok(item) => item.name,
            Err(_) => return Response::error(400, "body must be a JSON object {\"name\": string}"),
        }
    };
    if name.chars().count() > MAX_NAME_CHARS {
        return Response::error(400, "name longer than 64 characters");
    }
    match db.insert_item(&name) {
        Ok(id) => Response::json(201, &serde_json::json!({ "id": id }))
            .with_header("Location", format!("/items/{id}")),
        Err(e) => db_failure(db, &e),
    }
}

fn healthz(db: &Db) -> Response {
    let (primary, replica) = db.health();
    let show = |r: &Result<(), DbError>| match r {
        Ok(()) => "ok".to_string(),
        Err(e) => e.to_string(),
    };
    let status = if primary.is_ok() && replica.is_ok() {
        200
    } else {
        503
    };
    Response::json(
        status,
        &serde_json::json!({ "primary": show(&primary), "replica": show(&replica) }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_body_is_1k_of_text() {
        assert_eq!(STATIC_BODY.len(), 1024);
        assert!(STATIC_BODY
            .iter()
            .all(|b| b.is_ascii_lowercase() || *b == b'\n'));
        assert_eq!(STATIC_BODY.iter().filter(|&&b| b == b'\n').count(), 16);
    }
}
