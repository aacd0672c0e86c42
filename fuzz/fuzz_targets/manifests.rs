//! Agent manifests (a user's /users/<u>/bin) and service units (an admin's install).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = avix_proto::agent::AgentManifest::parse(data);
    let _ = avix_proto::service::ServiceUnit::parse(data);
});
