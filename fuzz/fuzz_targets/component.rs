//! Component loading: any bytes uploaded as a component are compiled or refused with an
//! error, never a crash. Seeds are real components (`fuzz/seeds/component`).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use virga::Runtime;

fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| Runtime::builder().build().expect("runtime"))
}

fuzz_target!(|bytes: &[u8]| {
    match runtime().compile(bytes) {
        Ok(component) => assert_eq!(component.digest(), virga::store::content_digest(bytes)),
        Err(error) => {
            assert_eq!(error.status(), http::StatusCode::BAD_REQUEST, "{error}");
            assert!(!error.to_string().is_empty());
        }
    }
});
