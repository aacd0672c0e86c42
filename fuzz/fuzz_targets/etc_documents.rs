//! Every document of /etc/avix (what an admin, or a script, writes through the mount): parse
//! and validate without panicking, whatever the bytes; a document that parses and validates
//! survives a round trip.
#![no_main]

use avix_proto::Document;
use avix_proto::config::auth::AuthConfig;
use avix_proto::config::crews::Crews;
use avix_proto::config::kernel::KernelConfig;
use avix_proto::config::llm::LlmConfig;
use avix_proto::config::mcp::McpConfig;
use avix_proto::config::users::Users;
use avix_proto::envelope::Kind;
use libfuzzer_sys::fuzz_target;

fn check<T>(data: &[u8])
where
    T: Kind + serde::Serialize + serde::de::DeserializeOwned,
{
    if let Ok(doc) = Document::<T>::parse(data) {
        let _ = doc.spec.validate();
        if let Ok(text) = doc.to_yaml() {
            Document::<T>::parse(text.as_bytes()).expect("a serialised document parses");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check::<Users>(data);
    check::<Crews>(data);
    check::<KernelConfig>(data);
    check::<LlmConfig>(data);
    check::<AuthConfig>(data);
    check::<McpConfig>(data);
    check::<avix_llm::scripted::LlmScript>(data);
});
