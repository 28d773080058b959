//! The smallest Virga handler: answers `hello from virga` and the request's method and path.

use virga_sdk::{Request, Response, Result, http};

#[virga_sdk::handler]
async fn handle(request: Request) -> Result<Response> {
    let body = format!(
        "hello from virga\n{} {}\n",
        request.method(),
        request.uri().path()
    );
    Ok(http::Response::builder()
        .header("content-type", "text/plain; charset=utf-8")
        .body(body.into())?)
}
