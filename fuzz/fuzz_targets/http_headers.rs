//! Headers a provider sends back that steer the retry loop (Retry-After in seconds,
//! milliseconds or as an HTTP date): never a panic (`1e30` was one).
#![no_main]

use libfuzzer_sys::fuzz_target;
use reqwest::header::{HeaderMap, HeaderValue};

fuzz_target!(|data: &[u8]| {
    let (a, b) = data.split_at(data.len() / 2);
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(a) {
        h.insert("retry-after", v);
    }
    if let Ok(v) = HeaderValue::from_bytes(b) {
        h.insert("retry-after-ms", v);
    }
    let _ = avix_llm::http::retry_after(&h);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = avix_proto::time::Timestamp::from_http_date(s);
        let _ = s.parse::<avix_proto::time::HumanDuration>();
    }
});
