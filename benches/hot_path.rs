//! Micro-benchmarks of the request path's pure parts: parse + re-serialize a typical browser request
//! head, parse a response head, decode a chunked body, pick a server. Run: `cargo bench --bench hot_path`.

use std::hint::black_box;
use std::num::NonZeroUsize;

use corelb::balance::RoundRobin;
use corelb::config::HttpLimits;
use corelb::http::chunked::ChunkedDecoder;
use corelb::http::request::parse_request_head_into;
use corelb::http::response::parse_response_head_into;
use corelb::http::write::{
    write_request_head, write_response_head, ClientFraming, ConnectionField, Forwarding,
};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const BROWSER_GET: &[u8] = b"GET /assets/app.3f9a1c.js?v=2 HTTP/1.1\r\n\
Host: www.foobar.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Referer: https://www.foobar.com/\r\n\
Connection: keep-alive\r\n\
Cookie: session=8f14e45fceea167a5a36dedd4bea2543; theme=dark; _ga=GA1.2.1234567890.1700000000\r\n\
Upgrade-Insecure-Requests: 1\r\n\
Sec-Fetch-Dest: document\r\n\
Sec-Fetch-Mode: navigate\r\n\
Sec-Fetch-Site: same-origin\r\n\
If-None-Match: \"6b02710a-10000\"\r\n\
Priority: u=0, i\r\n\r\n";

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\n\
Server: nginx/1.22.1\r\n\
Date: Sun, 22 Nov 2026 04:35:32 GMT\r\n\
Content-Type: application/javascript\r\n\
Content-Length: 1024\r\n\
Last-Modified: Sun, 22 Nov 2026 04:35:22 GMT\r\n\
Connection: keep-alive\r\n\
ETag: \"6b02710a-400\"\r\n\
Cache-Control: max-age=3600\r\n\
X-Served-By: app1\r\n\
Accept-Ranges: bytes\r\n\r\n";

fn limits() -> HttpLimits {
    HttpLimits {
        max_request_line: NonZeroUsize::new(8192).unwrap(),
        max_header_bytes: NonZeroUsize::new(16384).unwrap(),
        max_headers: NonZeroUsize::new(100).unwrap(),
        max_body: None,
    }
}

fn heads(c: &mut Criterion) {
    let limits = limits();
    let mut fields = Vec::with_capacity(100);
    let mut out = Vec::with_capacity(64 * 1024);
    let fwd = Forwarding {
        client_ip: b"203.0.113.7",
        trusted: false,
        default_host: b"app",
        strip_cookie: None,
    };
    let mut g = c.benchmark_group("head");
    g.throughput(Throughput::Bytes(BROWSER_GET.len() as u64));
    g.bench_function("parse_browser_get", |b| {
        b.iter(|| {
            parse_request_head_into(black_box(BROWSER_GET), &limits, &mut fields)
                .unwrap()
                .unwrap()
        })
    });
    g.bench_function("parse_and_rewrite_browser_get", |b| {
        b.iter(|| {
            let h = parse_request_head_into(black_box(BROWSER_GET), &limits, &mut fields)
                .unwrap()
                .unwrap();
            out.clear();
            write_request_head(&mut out, BROWSER_GET, &h, &fields, &fwd);
            black_box(out.len())
        })
    });
    g.throughput(Throughput::Bytes(RESPONSE.len() as u64));
    g.bench_function("parse_and_rewrite_response", |b| {
        b.iter(|| {
            let h = parse_response_head_into(black_box(RESPONSE), false, &mut fields)
                .unwrap()
                .unwrap();
            out.clear();
            write_response_head(
                &mut out,
                RESPONSE,
                &h,
                &fields,
                ClientFraming::Length(1024),
                ConnectionField::None,
                b"",
            );
            black_box(out.len())
        })
    });
    g.finish();
}

fn chunked(c: &mut Criterion) {
    // 64 KiB of payload in 4 KiB chunks, with one extension and a trailer.
    let mut body = Vec::new();
    for i in 0..16 {
        body.extend_from_slice(if i == 3 {
            b"1000;name=value\r\n" as &[u8]
        } else {
            b"1000\r\n"
        });
        body.extend(std::iter::repeat_n(b'x', 4096));
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\nX-Checksum: abc\r\n\r\n");
    let mut g = c.benchmark_group("chunked");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("decode_64k_in_4k_chunks", |b| {
        b.iter(|| {
            let mut d = ChunkedDecoder::new();
            let mut input = black_box(&body[..]);
            let mut payload = 0usize;
            while !d.is_done() && !input.is_empty() {
                let r = d.decode(input).unwrap();
                payload += r.data.len();
                input = &input[r.consumed..];
            }
            payload
        })
    });
    g.finish();
}

fn selection(c: &mut Criterion) {
    let mut g = c.benchmark_group("select");
    for n in [2usize, 16, 256] {
        let mut rr = RoundRobin::new(&vec![1; n], 0);
        g.bench_function(format!("roundrobin_{n}"), |b| {
            b.iter(|| black_box(rr.pick()))
        });
        let weights: Vec<u32> = (0..n as u32).map(|i| 1 + i % 4).collect();
        let mut swrr = RoundRobin::new(&weights, 0);
        g.bench_function(format!("smooth_weighted_{n}"), |b| {
            b.iter(|| black_box(swrr.pick()))
        });
    }
    g.finish();
}

criterion_group!(benches, heads, chunked, selection);
criterion_main!(benches);
