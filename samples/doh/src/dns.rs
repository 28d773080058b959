//! DNS messages for the DoH sample, through hickory-proto: parsing queries (with the checks a
//! resolver front end needs), the cache key, TTLs, and the JSON form public resolvers offer.

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

/// A query that passed the checks, and what its answers are cached under.
pub struct Question {
    pub message: Message,
    pub key: String,
}

/// Parses a DNS query (RFC 1035 §4.1); the error says what is wrong with it.
pub fn parse_query(wire: &[u8]) -> Result<Question, String> {
    let message = Message::from_vec(wire).map_err(|e| format!("malformed DNS message: {e}"))?;
    if message.message_type() != MessageType::Query {
        return Err("the message is a response, not a query".into());
    }
    if message.op_code() != OpCode::Query {
        return Err(format!("opcode {:?} is not served", message.op_code()));
    }
    let query = match message.queries() {
        [] => return Err("the query has no question".into()),
        [one] => one,
        _ => return Err("the query has more than one question".into()),
    };
    let dnssec_ok = message
        .extensions()
        .as_ref()
        .is_some_and(|e| e.flags().dnssec_ok);
    // The key: name (case-insensitive, RFC 4343), type, class, and the DO and CD bits, which
    // change the answer.
    let key = format!(
        "dns:/{}/{}/{}/{}{}",
        query.name().to_lowercase().to_ascii(),
        u16::from(query.query_type()),
        u16::from(query.query_class()),
        u8::from(dnssec_ok),
        u8::from(message.checking_disabled()),
    );
    Ok(Question { message, key })
}

/// A query built from the JSON API's parameters (`name`, `type`, `do`, `cd`).
pub fn query_from_params(
    name: &str,
    kind: &str,
    dnssec_ok: bool,
    cd: bool,
) -> Result<Vec<u8>, String> {
    let name = Name::from_ascii(name).map_err(|e| format!("invalid name '{name}': {e}"))?;
    let kind = match kind.parse::<u16>() {
        Ok(n) => RecordType::from(n),
        Err(_) => kind
            .to_ascii_uppercase()
            .parse::<RecordType>()
            .map_err(|_| format!("unknown record type '{kind}'"))?,
    };
    let mut message = Message::new();
    message
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .set_checking_disabled(cd)
        .add_query(Query::query(name, kind));
    if dnssec_ok {
        let mut edns = Edns::new();
        edns.set_dnssec_ok(true);
        message.set_edns(edns);
    }
    message
        .to_vec()
        .map_err(|e| format!("cannot encode the query: {e}"))
}

/// How long an answer may be cached, seconds: the smallest TTL of its records; for a negative
/// answer (NXDOMAIN, or no data) the SOA's minimum, capped by the SOA's TTL (RFC 2308 §5).
/// None for answers that are not cached (errors, truncated, nothing to go by).
pub fn cache_ttl(response: &Message) -> Option<u32> {
    if response.truncated() {
        return None;
    }
    let records = response
        .answers()
        .iter()
        .chain(response.name_servers())
        .chain(response.additionals())
        .filter(|r| r.record_type() != RecordType::OPT);
    match response.response_code() {
        ResponseCode::NoError if !response.answers().is_empty() => records.map(|r| r.ttl()).min(),
        ResponseCode::NoError | ResponseCode::NXDomain => {
            response.name_servers().iter().find_map(|r| match r.data() {
                RData::SOA(soa) => Some(soa.minimum().min(r.ttl())),
                _ => None,
            })
        }
        _ => None,
    }
}

/// `response` made the answer to `query`: its ID, every TTL less `age` seconds.
pub fn answer_for(mut response: Message, query: &Message, age: u32) -> Message {
    response.set_id(query.id());
    let age_records = |records: &mut Vec<hickory_proto::rr::Record>| {
        for record in records
            .iter_mut()
            .filter(|r| r.record_type() != RecordType::OPT)
        {
            let ttl = record.ttl().saturating_sub(age);
            record.set_ttl(ttl);
        }
    };
    age_records(response.answers_mut());
    age_records(response.name_servers_mut());
    age_records(response.additionals_mut());
    response
}

/// The smallest TTL left in `response` (for `Cache-Control: max-age`, RFC 8484 §5.1).
pub fn min_ttl(response: &Message) -> u32 {
    response
        .answers()
        .iter()
        .chain(response.name_servers())
        .filter(|r| r.record_type() != RecordType::OPT)
        .map(|r| r.ttl())
        .min()
        .unwrap_or(0)
}

/// The JSON form public resolvers answer with (`application/dns-json`).
pub fn to_json(response: &Message) -> String {
    let records = |records: &[hickory_proto::rr::Record]| -> Vec<serde_json::Value> {
        records
            .iter()
            .filter(|r| r.record_type() != RecordType::OPT)
            .map(|r| {
                serde_json::json!({
                    "name": r.name().to_ascii(),
                    "type": u16::from(r.record_type()),
                    "TTL": r.ttl(),
                    "data": r.data().to_string(),
                })
            })
            .collect()
    };
    let questions: Vec<serde_json::Value> = response
        .queries()
        .iter()
        .map(|q| serde_json::json!({ "name": q.name().to_ascii(), "type": u16::from(q.query_type()) }))
        .collect();
    serde_json::json!({
        "Status": u16::from(response.response_code()),
        "TC": response.truncated(),
        "RD": response.recursion_desired(),
        "RA": response.recursion_available(),
        "AD": response.authentic_data(),
        "CD": response.checking_disabled(),
        "Question": questions,
        "Answer": records(response.answers()),
        "Authority": records(response.name_servers()),
    })
    .to_string()
}
