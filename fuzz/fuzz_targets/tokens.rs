//! ATP and capability tokens: any string is refused or accepted without a panic (it can
//! never be accepted: the fuzzer has no key), and claims of any content survive mint then
//! verify unchanged (the fast parser and the JSON fallback agree).
#![no_main]

use arbitrary::Arbitrary;
use avix_auth::atptoken::{AtpClaims, AtpSigner};
use avix_auth::SubKey;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    token: String,
    user: String,
    sid: String,
    role: u8,
    iat: i64,
    exp: i64,
    pid: u64,
    tools: Vec<String>,
}

fuzz_target!(|i: Input| {
    let atp = AtpSigner::new(&SubKey::from_bytes([7u8; 32]), b"boot");
    let cap = SubKey::from_bytes([9u8; 32]);
    assert!(atp.verify(&i.token, 0).is_err());
    assert!(avix_auth::captoken::verify(&cap, &i.token, 0).is_err());
    let role = match i.role % 4 {
        0 => avix_proto::Role::Guest,
        1 => avix_proto::Role::User,
        2 => avix_proto::Role::Operator,
        _ => avix_proto::Role::Admin,
    };
    let claims = AtpClaims {
        sub: i.user.clone(),
        role,
        sid: i.sid.clone(),
        iat: i.iat,
        exp: i.exp.saturating_add(1).max(1),
    };
    let t = atp.mint(&claims);
    assert_eq!(atp.verify(&t, 0).expect("a minted token verifies"), claims);
    let c = avix_auth::captoken::CapClaims {
        pid: i.pid.into(),
        user: i.user,
        tools: i.tools,
        issued_at: i.iat,
        expires_at: i64::MAX,
    };
    let t = avix_auth::captoken::mint(&cap, &c);
    assert_eq!(avix_auth::captoken::verify(&cap, &t, 0).expect("verifies"), c);
});
