//! What scripts write to control files: spawn requests (/proc/spawn), ctl commands
//! (/proc/<pid>/ctl), approval answers (/proc/<pid>/hil/<id>.yaml), signal names.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = avix_proto::agent::SpawnRequest::parse(text);
    let _ = avix_kernel::procfs::parse_ctl(text);
    let _ = avix_kernel::hil::parse_answer(text);
    let (name, payload) = text.split_once(' ').unwrap_or((text, ""));
    let payload = serde_json::from_str::<serde_json::Value>(payload).ok();
    let _ = avix_kernel::process::Signal::parse(name, payload.as_ref());
});
