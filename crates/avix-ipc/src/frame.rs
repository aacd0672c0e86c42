//! Framing: a 4-byte little-endian length, then that many bytes of JSON.

use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer closed the connection before a frame began.
    #[error("the connection was closed")]
    Closed,
    /// The peer closed the connection inside a frame.
    #[error("the connection was closed inside a frame ({got} of {want} bytes)")]
    Truncated {
        /// Bytes received.
        got: usize,
        /// Bytes announced.
        want: usize,
    },
    /// Larger than the limit.
    #[error(
        "a frame of {len} bytes is larger than the limit of {max} bytes (kernel.yaml ipc.maxMessageBytes)"
    )]
    TooBig {
        /// Announced length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// The message cannot be serialized.
    #[error("cannot encode the message: {0}")]
    Encode(#[from] serde_json::Error),
    /// The socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Serializes `msg` into one frame (header included).
pub fn encode<T: Serialize>(msg: &T, max: usize) -> Result<Vec<u8>, FrameError> {
    let mut buf = Vec::with_capacity(512);
    buf.extend_from_slice(&[0; 4]);
    serde_json::to_writer(&mut buf, msg)?;
    let len = buf.len() - 4;
    if len > max {
        return Err(FrameError::TooBig { len, max });
    }
    let len = u32::try_from(len).map_err(|_| FrameError::TooBig { len, max })?;
    buf[..4].copy_from_slice(&len.to_le_bytes());
    Ok(buf)
}

/// Reads one frame's body into `buf` (replacing its contents).
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
    buf: &mut Vec<u8>,
) -> Result<(), FrameError> {
    let mut header = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = r.read(&mut header[got..]).await?;
        if n == 0 {
            return Err(if got == 0 {
                FrameError::Closed
            } else {
                FrameError::Truncated { got, want: 4 }
            });
        }
        got += n;
    }
    let len = u32::from_le_bytes(header) as usize;
    if len > max {
        return Err(FrameError::TooBig { len, max });
    }
    buf.clear();
    buf.resize(len, 0);
    let mut got = 0;
    while got < len {
        let n = r.read(&mut buf[got..]).await?;
        if n == 0 {
            return Err(FrameError::Truncated { got, want: len });
        }
        got += n;
    }
    Ok(())
}

/// Writes an encoded frame.
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, frame: &[u8]) -> Result<(), FrameError> {
    w.write_all(frame).await?;
    w.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_and_limits() {
        let f = encode(&serde_json::json!({"a": 1}), 100).expect("encode");
        assert_eq!(&f[..4], &7u32.to_le_bytes());
        let mut buf = Vec::new();
        read_frame(&mut &f[..], 100, &mut buf).await.expect("read");
        assert_eq!(buf, br#"{"a":1}"#);
        assert!(matches!(
            encode(&"x".repeat(200), 100),
            Err(FrameError::TooBig { len: 202, max: 100 })
        ));
        assert!(matches!(
            read_frame(&mut &f[..], 3, &mut buf).await,
            Err(FrameError::TooBig { len: 7, max: 3 })
        ));
        assert!(matches!(
            read_frame(&mut &f[..6], 100, &mut buf).await,
            Err(FrameError::Truncated { got: 2, want: 7 })
        ));
        assert!(matches!(
            read_frame(&mut &f[..2], 100, &mut buf).await,
            Err(FrameError::Truncated { got: 2, want: 4 })
        ));
        assert!(matches!(
            read_frame(&mut &[][..], 100, &mut buf).await,
            Err(FrameError::Closed)
        ));
    }
}
