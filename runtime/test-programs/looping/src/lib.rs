//! Spins forever without yielding: must be stopped by the host's CPU-time limit.
use virga_sdk::{Request, Response, Result};

#[virga_sdk::handler]
fn handle(_request: Request) -> Result<Response> {
    let mut x: u64 = 0;
    loop {
        x = std::hint::black_box(x.wrapping_add(1));
    }
}
