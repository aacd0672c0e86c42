//! JSON-RPC request frames on the IPC sockets: a request or an error with the id when it can
//! be read, never a panic; a request that parses survives a round trip.
#![no_main]

use avix_proto::rpc::Request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = Request::parse(data) {
        let bytes = serde_json::to_vec(&r).expect("a parsed request serialises");
        let back = Request::parse(&bytes).expect("a serialised request parses");
        assert_eq!(
            serde_json::to_value(&r).expect("value"),
            serde_json::to_value(&back).expect("value")
        );
    }
});
