//! Counts in a global how many requests this instance has seen: with a fresh sandbox per
//! request, the answer is always 1.
use std::sync::atomic::{AtomicU64, Ordering};

use virga_sdk::{Request, Response, Result};

static SEEN: AtomicU64 = AtomicU64::new(0);

#[virga_sdk::handler]
fn handle(_request: Request) -> Result<Response> {
    let n = SEEN.fetch_add(1, Ordering::SeqCst) + 1;
    Ok(Response::new(format!("{n}\n").into()))
}
