//! Token costs: full ATP token validation and its parts. Run: `cargo bench -p avix-auth`.

#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;

use avix_auth::SubKey;
use avix_auth::atptoken::{AtpClaims, AtpSigner};
use criterion::{Criterion, criterion_group, criterion_main};

fn benches(c: &mut Criterion) {
    let s = AtpSigner::new(&SubKey::from_bytes([9; 32]), b"boot");
    let claims = AtpClaims {
        sub: "alice".into(),
        role: avix_proto::Role::Operator,
        sid: "3f2b9c1e-7d4a-4b8e-9c1f-2a6d5e4b3c21".into(),
        iat: 1_790_000_000,
        exp: 1_790_028_800,
    };
    let token = s.mint(&claims);
    c.bench_function("atp token verify (signature + claims)", |b| {
        b.iter(|| s.verify(black_box(&token), 1_790_000_100).unwrap())
    });
    let forged = format!("{}0", &token[..token.len() - 1]);
    c.bench_function("atp token refused (bad signature)", |b| {
        b.iter(|| s.verify(black_box(&forged), 1_790_000_100).unwrap_err())
    });
}

criterion_group!(token_benches, benches);
criterion_main!(token_benches);
