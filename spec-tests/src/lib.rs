//! Conformance tests live in `tests/all`: real clients (curl) against a real host.
