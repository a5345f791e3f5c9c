//! MCP-over-TCP framing, as MUSCLE3 writes it: every integer is 64 bits, little-endian.
//!
//! - handshake: the client sends a session id (0: new), the server answers with the id;
//! - per call: the client sends the request number (0 ends the session, nothing
//!   follows), then a frame; the server answers with a frame;
//! - a frame is its length (`i64`, never negative) followed by that many bytes.
//!
//! Reading never trusts a length: it is checked against a limit first, and the buffer
//! grows with the bytes that actually arrive, so a peer that claims a large frame and
//! sends little costs little.

use std::fmt;
use std::io::{self, IoSlice, Read, Write};

/// How much of a frame is allocated before its bytes arrive.
const INITIAL_FRAME_CAPACITY: u64 = 64 * 1024;

/// Why a frame or number could not be read.
#[derive(Debug)]
pub enum WireError {
    /// The connection failed or timed out.
    Io(io::Error),
    /// The peer closed the connection in the middle of a number or frame.
    Truncated,
    /// The frame length, read as the signed 64-bit number MUSCLE3 sends, is negative.
    NegativeLength(i64),
    /// The frame length is above the configured maximum.
    TooLong {
        /// The length the peer announced.
        length: u64,
        /// The configured maximum.
        max: u64,
    },
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Io(e) => write!(f, "i/o error: {e}"),
            WireError::Truncated => f.write_str("the peer closed the connection mid-message"),
            WireError::NegativeLength(n) => write!(f, "negative frame length {n}"),
            WireError::TooLong { length, max } => {
                write!(f, "frame length {length} above the maximum {max}")
            }
        }
    }
}

impl std::error::Error for WireError {}

impl From<io::Error> for WireError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            WireError::Truncated
        } else {
            WireError::Io(e)
        }
    }
}

/// Reads one number. `Ok(None)` if the peer closed the connection cleanly before its
/// first byte (a disconnect between calls, not a truncation).
pub fn read_u64_or_eof(r: &mut impl Read) -> Result<Option<u64>, WireError> {
    let mut buf = [0u8; 8];
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Ok(None),
            Ok(0) => return Err(WireError::Truncated),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Some(u64::from_le_bytes(buf)))
}

/// Reads one number; a close before or inside it is [`WireError::Truncated`].
pub fn read_u64(r: &mut impl Read) -> Result<u64, WireError> {
    read_u64_or_eof(r)?.ok_or(WireError::Truncated)
}

/// Reads a frame length and checks it against `max` before anything is allocated.
pub fn read_frame_length(r: &mut impl Read, max: u64) -> Result<u64, WireError> {
    let raw = read_u64(r)?;
    let signed = raw as i64;
    if signed < 0 {
        return Err(WireError::NegativeLength(signed));
    }
    if raw > max {
        return Err(WireError::TooLong { length: raw, max });
    }
    Ok(raw)
}

/// Reads the `length` bytes of a frame whose length has been checked.
pub fn read_frame_body(r: &mut impl Read, length: u64) -> Result<Vec<u8>, WireError> {
    let capacity = length.min(INITIAL_FRAME_CAPACITY) as usize;
    let mut body = Vec::with_capacity(capacity);
    r.take(length).read_to_end(&mut body)?;
    if (body.len() as u64) < length {
        return Err(WireError::Truncated);
    }
    Ok(body)
}

/// Appends the next `part` bytes of a frame to `frame`.
pub fn read_frame_part(r: &mut impl Read, frame: &mut Vec<u8>, part: u64) -> Result<(), WireError> {
    let wanted = frame.len() as u64 + part;
    r.take(part).read_to_end(frame)?;
    if (frame.len() as u64) < wanted {
        return Err(WireError::Truncated);
    }
    Ok(())
}

/// Reads a whole frame of at most `max` bytes.
pub fn read_frame(r: &mut impl Read, max: u64) -> Result<Vec<u8>, WireError> {
    let length = read_frame_length(r, max)?;
    read_frame_body(r, length)
}

/// A call's request number and frame, encoded for one `write`.
pub fn encode_call(request_nr: u64, body: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(16 + body.len());
    msg.extend_from_slice(&request_nr.to_le_bytes());
    msg.extend_from_slice(&(body.len() as u64).to_le_bytes());
    msg.extend_from_slice(body);
    msg
}

/// Writes one number.
pub fn write_u64(w: &mut impl Write, n: u64) -> io::Result<()> {
    w.write_all(&n.to_le_bytes())
}

/// Writes a frame (length and bytes), with one `write` where the socket takes it all,
/// without copying the bytes.
pub fn write_frame(w: &mut impl Write, body: &[u8]) -> io::Result<()> {
    let header = (body.len() as u64).to_le_bytes();
    let written = loop {
        match w.write_vectored(&[IoSlice::new(&header), IoSlice::new(body)]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    };
    match written.checked_sub(header.len()) {
        Some(of_body) => w.write_all(&body[of_body..]),
        None => {
            w.write_all(&header[written..])?;
            w.write_all(body)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn le(n: u64) -> [u8; 8] {
        n.to_le_bytes()
    }

    #[test]
    fn a_frame_round_trips() {
        let mut buf = Vec::new();
        write_frame(&mut buf, b"hello").unwrap();
        assert_eq!(read_frame(&mut &buf[..], 5).unwrap(), b"hello");
    }

    #[test]
    fn a_frame_written_a_few_bytes_at_a_time_arrives_whole() {
        struct Trickle(Vec<u8>);
        impl Write for Trickle {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                let n = buf.len().min(3);
                self.0.extend_from_slice(&buf[..n]);
                Ok(n)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut w = Trickle(Vec::new());
        write_frame(&mut w, b"hello world").unwrap();
        assert_eq!(read_frame(&mut &w.0[..], 11).unwrap(), b"hello world");
    }

    #[test]
    fn a_frame_read_in_parts_is_whole_or_truncated() {
        let mut bytes = &b"abcdef"[..];
        let mut frame = Vec::new();
        read_frame_part(&mut bytes, &mut frame, 4).unwrap();
        read_frame_part(&mut bytes, &mut frame, 2).unwrap();
        assert_eq!(frame, b"abcdef");
        assert!(matches!(
            read_frame_part(&mut bytes, &mut frame, 1),
            Err(WireError::Truncated)
        ));
    }

    #[test]
    fn a_call_is_number_then_frame() {
        let msg = encode_call(7, b"ab");
        let mut r = &msg[..];
        assert_eq!(read_u64(&mut r).unwrap(), 7);
        assert_eq!(read_frame(&mut r, 2).unwrap(), b"ab");
    }

    #[test]
    fn a_negative_length_is_refused() {
        let bytes = le((-1i64) as u64);
        assert!(matches!(
            read_frame(&mut &bytes[..], 10),
            Err(WireError::NegativeLength(-1))
        ));
    }

    #[test]
    fn a_length_above_the_maximum_is_refused_before_allocating() {
        let bytes = le(1 << 40);
        assert!(matches!(
            read_frame(&mut &bytes[..], 10),
            Err(WireError::TooLong { length, max: 10 }) if length == 1 << 40
        ));
    }

    #[test]
    fn a_short_frame_is_truncated() {
        let mut bytes = le(4).to_vec();
        bytes.extend_from_slice(b"ab");
        assert!(matches!(
            read_frame(&mut &bytes[..], 10),
            Err(WireError::Truncated)
        ));
    }

    #[test]
    fn a_clean_close_between_numbers_is_not_truncation() {
        assert!(read_u64_or_eof(&mut &[][..]).unwrap().is_none());
        assert!(matches!(
            read_u64_or_eof(&mut &[1u8, 2][..]),
            Err(WireError::Truncated)
        ));
    }
}
