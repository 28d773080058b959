//! Allocates and touches memory without bound: must be stopped at the memory limit.
use virga_sdk::{Request, Response, Result};

#[virga_sdk::handler]
fn handle(_request: Request) -> Result<Response> {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![0xA5; 1 << 20]);
        std::hint::black_box(&hoard);
    }
}
