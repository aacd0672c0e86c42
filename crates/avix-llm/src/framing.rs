//! Incremental decoders for streamed response bodies: Server-Sent Events (Anthropic, OpenAI)
//! and newline-delimited JSON (Ollama). Bytes arrive split anywhere — inside a line, inside a
//! UTF-8 sequence, between `\r` and `\n` — and the decoders yield whole frames only.

use crate::wire::WireError;

/// One decoded frame: an SSE event, or one NDJSON line (with `event` unset).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frame {
    /// The SSE `event:` field, if any.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`, or the NDJSON line.
    pub data: String,
}

/// How a body is cut into frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `text/event-stream`.
    Sse,
    /// One JSON document per line.
    Ndjson,
}

/// Longest line accepted; a provider that sends more without a newline is broken.
pub const MAX_LINE: usize = 16 * 1024 * 1024;

/// Splits bytes into lines ending in `\n`, `\r\n` or `\r`.
#[derive(Debug, Default)]
struct Lines {
    buf: Vec<u8>,
    // The last byte fed was `\r`: a `\n` that follows belongs to the same line end.
    after_cr: bool,
}

impl Lines {
    fn feed(
        &mut self,
        mut bytes: &[u8],
        mut line: impl FnMut(&[u8]) -> Result<(), WireError>,
    ) -> Result<(), WireError> {
        if bytes.is_empty() {
            return Ok(());
        }
        if self.after_cr && bytes.first() == Some(&b'\n') {
            bytes = &bytes[1..];
        }
        self.after_cr = false;
        while let Some(i) = bytes.iter().position(|&b| b == b'\n' || b == b'\r') {
            let end_cr = bytes[i] == b'\r';
            if self.buf.is_empty() {
                line(&bytes[..i])?;
            } else {
                self.buf.extend_from_slice(&bytes[..i]);
                let l = std::mem::take(&mut self.buf);
                line(&l)?;
                self.buf = l;
                self.buf.clear();
            }
            bytes = &bytes[i + 1..];
            if end_cr {
                if bytes.first() == Some(&b'\n') {
                    bytes = &bytes[1..];
                } else if bytes.is_empty() {
                    self.after_cr = true;
                }
            }
        }
        if self.buf.len() + bytes.len() > MAX_LINE {
            return Err(format!("a line of the stream is longer than {MAX_LINE} bytes").into());
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    fn pending(&self) -> &[u8] {
        &self.buf
    }
}

fn utf8(line: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(line).map_err(|_| "the stream is not valid UTF-8".to_owned())
}

/// Decodes a streamed body into frames.
#[derive(Debug)]
pub struct Decoder {
    framing: Framing,
    lines: Lines,
    event: Option<String>,
    data: String,
    has_data: bool,
}

impl Decoder {
    /// A decoder for `framing`.
    pub fn new(framing: Framing) -> Self {
        Self {
            framing,
            lines: Lines::default(),
            event: None,
            data: String::new(),
            has_data: false,
        }
    }

    /// Feeds more bytes; every complete frame goes to `out`. An error from `out` stops the
    /// decoding and is returned.
    pub fn feed(
        &mut self,
        bytes: &[u8],
        out: &mut dyn FnMut(Frame) -> Result<(), WireError>,
    ) -> Result<(), WireError> {
        let framing = self.framing;
        let Self {
            lines,
            event,
            data,
            has_data,
            ..
        } = self;
        lines.feed(bytes, |line| match framing {
            Framing::Ndjson => {
                let text = utf8(line)?.trim();
                if text.is_empty() {
                    return Ok(());
                }
                out(Frame {
                    event: None,
                    data: text.to_owned(),
                })
            }
            Framing::Sse => {
                if line.is_empty() {
                    if !*has_data {
                        *event = None;
                        return Ok(());
                    }
                    *has_data = false;
                    return out(Frame {
                        event: event.take(),
                        data: std::mem::take(data),
                    });
                }
                let text = utf8(line)?;
                let (field, value) = match text.split_once(':') {
                    Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                    None => (text, ""),
                };
                match field {
                    // A comment (keep-alive).
                    "" => {}
                    "event" => *event = Some(value.to_owned()),
                    "data" => {
                        if *has_data {
                            data.push('\n');
                        }
                        data.push_str(value);
                        *has_data = true;
                    }
                    // `id`, `retry` and unknown fields are ignored, as the SSE spec says.
                    _ => {}
                }
                Ok(())
            }
        })
    }

    /// Ends the stream: a last frame without its terminating newline (NDJSON) or blank line
    /// (SSE) is still delivered, since some servers close right after it.
    pub fn finish(
        &mut self,
        out: &mut dyn FnMut(Frame) -> Result<(), WireError>,
    ) -> Result<(), WireError> {
        match self.framing {
            Framing::Ndjson => {
                let rest = std::mem::take(&mut self.lines.buf);
                let text = utf8(&rest)?.trim();
                if !text.is_empty() {
                    out(Frame {
                        event: None,
                        data: text.to_owned(),
                    })?;
                }
            }
            Framing::Sse => {
                if !self.lines.buf.is_empty() {
                    self.feed(b"\n", out)?;
                }
                if self.has_data {
                    self.has_data = false;
                    out(Frame {
                        event: self.event.take(),
                        data: std::mem::take(&mut self.data),
                    })?;
                }
            }
        }
        Ok(())
    }

    /// Bytes received but not yet part of a frame.
    pub fn pending(&self) -> usize {
        self.lines.pending().len() + self.data.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(framing: Framing, body: &[u8], cut: &[usize]) -> Vec<Frame> {
        let mut d = Decoder::new(framing);
        let mut frames = Vec::new();
        let mut push = |f: Frame| {
            frames.push(f);
            Ok(())
        };
        let mut start = 0;
        for &c in cut.iter().chain(std::iter::once(&body.len())) {
            d.feed(&body[start..c], &mut push).unwrap();
            start = c;
        }
        d.finish(&mut push).unwrap();
        frames
    }

    const SSE: &[u8] = b": keep-alive\r\nevent: message_start\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\nevent: ping\ndata: {}\n\ndata: caf\xc3\xa9\r\rdata:[DONE]\n\n";

    fn sse_expected() -> Vec<Frame> {
        vec![
            Frame {
                event: Some("message_start".into()),
                data: "{\"a\":\n1}".into(),
            },
            Frame {
                event: Some("ping".into()),
                data: "{}".into(),
            },
            Frame {
                event: None,
                data: "café".into(),
            },
            Frame {
                event: None,
                data: "[DONE]".into(),
            },
        ]
    }

    #[test]
    fn sse_frames_survive_every_split_point() {
        assert_eq!(run(Framing::Sse, SSE, &[]), sse_expected());
        for i in 0..SSE.len() {
            assert_eq!(run(Framing::Sse, SSE, &[i]), sse_expected(), "cut at {i}");
            for j in i..SSE.len() {
                assert_eq!(
                    run(Framing::Sse, SSE, &[i, j]),
                    sse_expected(),
                    "cut at {i},{j}"
                );
            }
        }
    }

    #[test]
    fn sse_byte_by_byte_and_unterminated_last_event() {
        let cuts: Vec<usize> = (1..SSE.len()).collect();
        assert_eq!(run(Framing::Sse, SSE, &cuts), sse_expected());
        let f = run(Framing::Sse, b"data: last", &[3]);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].data, "last");
    }

    #[test]
    fn ndjson_lines_with_any_split_and_no_final_newline() {
        let body = b"{\"a\":1}\n\n{\"b\":\"\xc3\xa9\"}\r\n{\"c\":3}";
        for i in 0..body.len() {
            let f = run(Framing::Ndjson, body, &[i]);
            let data: Vec<_> = f.iter().map(|f| f.data.as_str()).collect();
            assert_eq!(
                data,
                ["{\"a\":1}", "{\"b\":\"é\"}", "{\"c\":3}"],
                "cut at {i}"
            );
        }
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let mut d = Decoder::new(Framing::Ndjson);
        let e = d.feed(b"\xff\xfe\n", &mut |_| Ok(())).unwrap_err();
        assert!(e.to_string().contains("UTF-8"), "{e}");
    }
}
