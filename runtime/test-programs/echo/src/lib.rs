//! `POST /echo`: streams the request body back unchanged (spliced in the host).
//! `GET /generate?bytes=N`: streams N bytes of a repeating pattern, written in 64 KiB pieces.
//! `POST /sha`: reads the body in chunks and answers its length and a checksum.
//! `GET /env?NAME`: answers the deployment variable NAME (empty when it is not set).
use virga_sdk::{Body, Request, Response, Result, http};

#[virga_sdk::handler]
fn handle(request: Request) -> Result<Response> {
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    match path.as_str() {
        "/generate" => {
            let n: usize = query
                .strip_prefix("bytes=")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            Ok(Response::new(Body::stream(move |out| {
                let piece: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
                let mut left = n;
                while left > 0 {
                    let take = left.min(piece.len());
                    out.write(&piece[..take])?;
                    left -= take;
                }
                Ok(())
            })))
        }
        "/env" => Ok(Response::new(
            std::env::var(&query).unwrap_or_default().into(),
        )),
        "/sum" => {
            let mut body = request.into_body();
            let (mut len, mut sum) = (0u64, 0u64);
            while let Some(chunk) = body.chunk() {
                for b in chunk?.iter() {
                    len += 1;
                    sum = sum.wrapping_mul(31).wrapping_add(u64::from(*b));
                }
            }
            Ok(Response::new(format!("{len} {sum}\n").into()))
        }
        _ => {
            let mut response =
                http::Response::builder().header("x-echo-method", request.method().as_str());
            if let Some(ct) = request.headers().get("content-type") {
                response = response.header("content-type", ct);
            }
            Ok(response.body(Body::from(request.into_body()))?)
        }
    }
}
