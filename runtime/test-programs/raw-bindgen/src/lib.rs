//! A handler written against `wit/` with wit-bindgen alone (no SDK): the standard
//! `wasi:http/proxy` world, as any toolchain would produce it.

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
        let text = format!(
            "raw wit-bindgen handler\n{:?} {}\n",
            request.method(),
            request.path_with_query().unwrap_or_default()
        );
        let headers =
            Fields::from_list(&[("content-type".into(), b"text/plain".to_vec())]).unwrap();
        let response = OutgoingResponse::new(headers);
        response.set_status_code(200).unwrap();
        let body = response.body().unwrap();
        ResponseOutparam::set(out, Ok(response));
        let stream = body.write().unwrap();
        stream.blocking_write_and_flush(text.as_bytes()).unwrap();
        drop(stream);
        OutgoingBody::finish(body, None).unwrap();
    }
}

export!(Handler);
