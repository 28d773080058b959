//! The DoH sample's DNS message handling (`samples/doh/src/dns.rs`, compiled natively here):
//! queries from the wire and from JSON-API parameters, and upstream answers of any shape.
//!
//! Input: a mode byte, then
//! - 0: a client's query, wire format (RFC 8484 GET `dns=` or POST body);
//! - 1: the JSON API's parameters, `name\ntype`, with the `do` and `cd` flags in the mode
//!   byte's bits 2 and 3;
//! - 2: a two-byte big-endian length, a query of that length, and an upstream's answer; the
//!   answer is aged by the mode byte's high bits.
#![no_main]

#[path = "../../samples/doh/src/dns.rs"]
#[allow(dead_code, unreachable_pub)]
mod dns;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode & 3 {
        0 => query(rest),
        1 => params(rest, mode & 4 != 0, mode & 8 != 0),
        _ => answer(rest, u32::from(mode >> 2) * 1000),
    }
});

fn query(wire: &[u8]) {
    if let Ok(question) = dns::parse_query(wire) {
        assert!(question.key.starts_with("dns:/"));
        assert_eq!(question.message.queries().len(), 1);
    }
}

fn params(text: &[u8], dnssec_ok: bool, cd: bool) {
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let (name, kind) = text.split_once('\n').unwrap_or((text, "A"));
    if let Ok(wire) = dns::query_from_params(name, kind, dnssec_ok, cd) {
        // What the JSON API builds passes the checks of the wire path, under a key that
        // keeps the DO and CD bits apart.
        let question = dns::parse_query(&wire).expect("a built query parses");
        let flags = format!("/{}{}", u8::from(dnssec_ok), u8::from(cd));
        assert!(question.key.ends_with(&flags), "{}", question.key);
    }
}

fn answer(data: &[u8], age: u32) {
    let Some((length, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let length = usize::from(u16::from_be_bytes(*length)).min(rest.len());
    let (query, answer) = rest.split_at(length);
    let (Ok(question), Ok(response)) = (dns::parse_query(query), Message::from_vec(answer)) else {
        return;
    };
    let ttl = dns::cache_ttl(&response);
    // A positive answer is cached no longer than its shortest-lived record (RFC 8484 §5.1).
    let records = response
        .answers()
        .iter()
        .filter(|r| r.record_type() != RecordType::OPT);
    if !response.truncated()
        && response.response_code() == ResponseCode::NoError
        && records.count() > 0
    {
        let ttl = ttl.expect("a positive answer has a TTL");
        assert!(ttl <= dns::min_ttl(&response));
    }
    let aged = dns::answer_for(response.clone(), &question.message, age);
    assert_eq!(aged.id(), question.message.id());
    assert!(dns::min_ttl(&aged) == dns::min_ttl(&response).saturating_sub(age));
    let json: serde_json::Value =
        serde_json::from_str(&dns::to_json(&aged)).expect("the JSON form is JSON");
    assert!(json["Status"].is_u64());
    // What goes back to the client encodes, or fails with an error.
    let _ = aged.to_vec();
}
