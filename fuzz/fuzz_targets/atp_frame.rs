//! ATP text frames from a client: every input gets a frame or an error (never a panic), and
//! a frame that parses survives a round trip through its own serialisation.
#![no_main]

use avix_proto::atp::{ClientFrame, parse_client_frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(frame) = parse_client_frame(text) {
        let again = serde_json::to_string(&frame).expect("a parsed frame serialises");
        let back: ClientFrame = parse_client_frame(&again).expect("a serialised frame parses");
        assert_eq!(frame, back);
    }
});
