//! Hostile behaviour, picked by the last path segment; each must end within its limit:
//! - `recurse`: unbounded recursion (stack overflow → trap)
//! - `stdout`: writes 64 MiB to stdout, then answers `done`
//! - `lines`: writes a 10 KiB line, then 1000 short lines (`line 0` ..), then answers `done`
//! - `stream`: an endless response body (cut at the wall or response-body limit)
//! - `wait`: blocks on a pollable that never becomes ready (cut at the wall limit)
//! - `headers`: answers with 10 000 header fields
//! - `huge`: declares a 1 GiB body and writes it as fast as it can (refused at once when the
//!   response-body limit is smaller)
use std::io::Write;

use virga_sdk::{Body, Request, Response, Result, http};

/// Recurses until the stack runs out (the base case is never reached in practice).
#[inline(never)]
fn recurse(depth: u64, pad: [u64; 16]) -> u64 {
    let next = std::hint::black_box(pad);
    if depth == u64::MAX {
        return next[0];
    }
    recurse(depth + 1, next).wrapping_add(next[1])
}

#[virga_sdk::handler]
fn handle(request: Request) -> Result<Response> {
    let action = request
        .uri()
        .path()
        .rsplit('/')
        .next()
        .unwrap_or("")
        .to_owned();
    match action.as_str() {
        "recurse" => Ok(Response::new(recurse(0, [1; 16]).to_string().into())),
        "lines" => {
            let mut out = std::io::stdout();
            let _ = out.write_all(&[b'y'; 10 << 10]);
            let _ = out.write_all(b"\n");
            for n in 0..1000 {
                let _ = writeln!(out, "line {n}");
            }
            Ok(Response::new("done".into()))
        }
        "stdout" => {
            let chunk = vec![b'x'; 1 << 20];
            let mut out = std::io::stdout();
            for _ in 0..64 {
                let _ = out.write_all(&chunk);
            }
            Ok(Response::new("done".into()))
        }
        "stream" => Ok(Response::new(Body::stream(|writer| {
            let chunk = vec![b'y'; 64 * 1024];
            loop {
                writer.write(&chunk)?;
            }
        }))),
        "wait" => {
            // A timer a day away: never ready within any wall limit.
            let pollable =
                virga_sdk::__private::wasip2::clocks::monotonic_clock::subscribe_duration(
                    86_400_000_000_000,
                );
            pollable.block();
            Ok(Response::new("woke".into()))
        }
        "huge" => {
            let response = http::Response::builder()
                .header("content-length", 1u64 << 30)
                .body(Body::stream(|writer| {
                    let chunk = vec![b'z'; 64 * 1024];
                    for _ in 0..(1 << 14) {
                        writer.write(&chunk)?;
                    }
                    Ok(())
                }))?;
            Ok(response)
        }
        "headers" => {
            let mut builder = http::Response::builder();
            for i in 0..10_000 {
                builder = builder.header(format!("x-h{i}"), "v");
            }
            Ok(builder.body(Body::empty())?)
        }
        _ => Ok(Response::new("unknown action".into())),
    }
}
