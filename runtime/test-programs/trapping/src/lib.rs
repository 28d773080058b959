//! Panics in the handler (a wasm trap): the request gets 500, the host carries on.
use virga_sdk::{Request, Response, Result};

#[virga_sdk::handler]
fn handle(request: Request) -> Result<Response> {
    panic!("trapping guest asked to fail on {}", request.uri().path());
}
