//! `{packet, 4}` framing on the port: a 4-byte big-endian length, then the payload.
//! [`FrameReader`] splits the bytes read from stdin into payloads; [`encode_frame`] writes
//! one.

use std::fmt;

/// Frames (and memfd spawn requests) longer than this are refused.
pub const MAX_FRAME_LEN: usize = 64 * 1024 * 1024;

/// Prefixes `payload` with its 4-byte big-endian length.
pub fn encode_frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 4);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A frame the reader refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The length prefix exceeds [`MAX_FRAME_LEN`]; the frame's bytes are discarded.
    TooLarge { len: usize },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLarge { len } => write!(
                f,
                "frame of {len} bytes exceeds the {MAX_FRAME_LEN} byte limit; discarded"
            ),
        }
    }
}

impl std::error::Error for FrameError {}

/// Accumulates bytes from a stream and yields complete `{packet, 4}` payloads.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
    start: usize,
    /// Bytes of a rejected frame still to be dropped as they arrive.
    skip: usize,
}

impl FrameReader {
    /// An empty reader.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, mut data: &[u8]) {
        if self.skip > 0 {
            let n = self.skip.min(data.len());
            self.skip -= n;
            data = &data[n..];
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes buffered but not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next complete payload, an error for an oversized frame (the reader stays usable),
    /// or `None` when more bytes are needed.
    pub fn next_frame(&mut self) -> Option<Result<Vec<u8>, FrameError>> {
        let avail = &self.buf[self.start..];
        if avail.len() < 4 {
            return None;
        }
        let len = u32::from_be_bytes([avail[0], avail[1], avail[2], avail[3]]) as usize;
        if len > MAX_FRAME_LEN {
            let have = (avail.len() - 4).min(len);
            self.start += 4 + have;
            self.skip = len - have;
            self.compact();
            return Some(Err(FrameError::TooLarge { len }));
        }
        if avail.len() - 4 < len {
            return None;
        }
        let frame = avail[4..4 + len].to_vec();
        self.start += 4 + len;
        self.compact();
        Some(Ok(frame))
    }

    fn compact(&mut self) {
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 4096 && self.start > self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::request::Request;

    #[test]
    fn frame_reader_splits_and_rejects_oversized() {
        let mut r = FrameReader::new();
        let mut stream = encode_frame(b"abc");
        stream.extend_from_slice(&((MAX_FRAME_LEN as u32) + 3).to_be_bytes());
        stream.extend_from_slice(b"xy");
        for b in &stream {
            r.push(std::slice::from_ref(b));
        }
        assert_eq!(r.next_frame(), Some(Ok(b"abc".to_vec())));
        assert_eq!(
            r.next_frame(),
            Some(Err(FrameError::TooLarge {
                len: MAX_FRAME_LEN + 3
            }))
        );
        assert_eq!(r.next_frame(), None);
        // The rest of the oversized frame is dropped as it arrives, then framing resumes.
        r.push(&vec![0u8; MAX_FRAME_LEN + 1]);
        assert_eq!(r.buffered(), 0);
        r.push(&encode_frame(b"ok")[..3]);
        assert_eq!(r.next_frame(), None);
        r.push(&encode_frame(b"ok")[3..]);
        assert_eq!(r.next_frame(), Some(Ok(b"ok".to_vec())));
        assert_eq!(r.next_frame(), None);
        r.push(&encode_frame(b""));
        assert_eq!(r.next_frame(), Some(Ok(vec![])));
    }

    fn payloads() -> Vec<Vec<u8>> {
        vec![
            Request::Kill {
                id: 1 << 40,
                signum: 9,
                grace_ms: 10,
            }
            .encode(),
            Request::Signal { id: 3, signum: 2 }.encode(),
            b"".to_vec(),
        ]
    }

    proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn frame_reader_never_panics(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..16),
    ) {
        let mut r = FrameReader::new();
        for c in chunks {
            r.push(&c);
            while let Some(f) = r.next_frame() {
                if let Ok(f) = f {
                    let _ = Request::decode(&f);
                }
            }
        }
    }

    #[test]
    fn frame_reader_reassembles(
        splits in proptest::collection::vec(1usize..40, 1..20),
    ) {
        let payloads = payloads();
        let stream: Vec<u8> = payloads.iter().flat_map(|p| encode_frame(p)).collect();
        let mut r = FrameReader::new();
        let mut got = Vec::new();
        let mut pos = 0;
        let mut i = 0;
        while pos < stream.len() {
            let n = splits[i % splits.len()].min(stream.len() - pos);
            r.push(&stream[pos..pos + n]);
            pos += n;
            i += 1;
            while let Some(f) = r.next_frame() {
                got.push(f.unwrap());
            }
        }
        prop_assert_eq!(got, payloads);
    }
    }
}
