//! `virga.toml` parsing: any text gives a configuration the host can run, or an error that
//! names the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use virga::Limits;
use virga::config::Config;

fuzz_target!(|text: &str| {
    match Config::parse(text, "fuzz.toml") {
        Ok(config) => {
            // Everything the host derives from an accepted file is valid: checked at parse time,
            // not discovered at start-up or on the first request.
            config
                .limits
                .over(&Limits::default())
                .expect("[limits] was checked");
            config.cache.capacity().expect("[cache] was checked");
            let base = config.default_limits();
            for deployment in &config.deployments {
                deployment
                    .limits
                    .over(&base)
                    .expect("deployment limits were checked");
                assert!(!deployment.routes.is_empty());
                for route in &deployment.routes {
                    route
                        .parse::<virga::RoutePattern>()
                        .expect("routes were checked");
                }
                for origin in &deployment.allow {
                    origin
                        .parse::<virga::AllowedOrigin>()
                        .expect("origins were checked");
                }
            }
        }
        Err(error) => {
            let message = error.to_string();
            assert!(
                message.contains("fuzz.toml"),
                "the error names the file: {message}"
            );
        }
    }
});
