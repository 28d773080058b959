//! A handler written against `wit/` with wit-bindgen alone (no SDK): the standard
//! `wasi:http/proxy` world, as any toolchain would produce it. `/protocol` answers the
//! `virga-protocol` request header; `/trailers` ends its body with a trailer field.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "virga:edge/handler",
    generate_all,
});

use exports::wasi::http::incoming_handler::Guest;
use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Handler;

impl Guest for Handler {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let protocol = request
            .headers()
            .get("virga-protocol")
            .into_iter()
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .collect::<Vec<_>>()
            .join(",");
        let text = match path.as_str() {
            "/protocol" => format!("{protocol}\n"),
            _ => format!("raw wit-bindgen handler\n{:?} {}\n", request.method(), path),
        };
        let mut fields = vec![("content-type".into(), b"text/plain".to_vec())];
        if path == "/trailers" {
            // RFC 9110 §6.6.2: announce the trailer fields (HTTP/1.1 sends only these).
            fields.push(("trailer".into(), b"x-checksum".to_vec()));
        }
        let headers = Fields::from_list(&fields).unwrap();
        let response = OutgoingResponse::new(headers);
        response.set_status_code(200).unwrap();
        let body = response.body().unwrap();
        ResponseOutparam::set(out, Ok(response));
        let stream = body.write().unwrap();
        stream.blocking_write_and_flush(text.as_bytes()).unwrap();
        drop(stream);
        let trailers = (path == "/trailers")
            .then(|| Fields::from_list(&[("x-checksum".into(), b"ok".to_vec())]).unwrap());
        OutgoingBody::finish(body, trailers).unwrap();
    }
}

export!(Handler);
