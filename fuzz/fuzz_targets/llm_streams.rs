//! What an LLM provider (or anything posing as one) streams back: SSE and NDJSON framing fed
//! in pieces of every size, each frame through the Anthropic, OpenAI and Ollama decoders, and
//! whole (non-streamed) bodies through each. Errors are fine; panics are not.
#![no_main]

use avix_llm::assemble::Assembler;
use avix_llm::framing::{Decoder, Framing};
use avix_llm::wire::TextWire;
use avix_llm::wire::anthropic::Anthropic;
use avix_llm::wire::ollama::Ollama;
use avix_llm::wire::openai::OpenAi;
use libfuzzer_sys::fuzz_target;

fn stream(wire: &dyn TextWire, data: &[u8], piece: usize) {
    let mut decoder = Decoder::new(wire.framing());
    let mut ws = wire.stream();
    let mut asm = Assembler::new(None);
    let mut done = false;
    let mut on_frame = |frame| {
        if done {
            return Ok(());
        }
        done = ws.frame(frame, &mut asm)?;
        Ok(())
    };
    for chunk in data.chunks(piece) {
        if decoder.feed(chunk, &mut on_frame).is_err() {
            return;
        }
    }
    if decoder.finish(&mut on_frame).is_err() {
        return;
    }
    let _ = asm.finish();
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let piece = usize::from(first % 17) + 1;
    let wires: [&dyn TextWire; 3] = [&Anthropic, &OpenAi::default(), &Ollama];
    for w in wires {
        stream(w, rest, piece);
        let mut asm = Assembler::new(None);
        let _ = w.parse_full(rest, &mut asm);
        let _ = asm.finish();
    }
    for framing in [Framing::Sse, Framing::Ndjson] {
        let mut d = Decoder::new(framing);
        let _ = d.feed(rest, &mut |_| Ok(()));
        let _ = d.finish(&mut |_| Ok(()));
    }
});
