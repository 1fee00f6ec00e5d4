//! HTTP/1.1 message parsing and serialization (RFC 9110/9112). Pure functions over byte buffers: no I/O,
//! no allocation per message, no dependency on anything above this module except `config` limits.

pub mod chunked;
pub mod cookie;
pub mod date;
pub mod fields;
pub mod path;
pub mod request;
pub mod response;
pub mod write;

pub use fields::{HeaderField, HeaderKind, Span};
