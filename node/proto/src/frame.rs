//! Length-prefixed frames: a little-endian `u32` length, then the body.
//! Client frames carry postcard messages; pull streams between nodes use
//! the same prefix ([`header`], [`body_len_within`]).

use serde::{de::DeserializeOwned, Serialize};

/// The largest frame body either side accepts. Values above the inline limit
/// travel through the object store, so frames stay far below this.
pub const MAX_FRAME_BYTES: usize = 256 << 20;

/// Bytes of the length prefix.
pub const HEADER_BYTES: usize = 4;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("malformed frame: {0}")]
    Malformed(#[from] postcard::Error),
}

/// Appends one frame holding `msg` to `out`.
pub fn encode_into<T: Serialize>(msg: &T, out: &mut Vec<u8>) -> Result<(), FrameError> {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_BYTES]);
    let buf = std::mem::take(out);
    let mut buf = postcard::to_extend(msg, buf)?;
    let len = buf.len() - start - HEADER_BYTES;
    if len > MAX_FRAME_BYTES {
        buf.truncate(start);
        *out = buf;
        return Err(FrameError::TooLarge {
            len,
            max: MAX_FRAME_BYTES,
        });
    }
    buf[start..start + HEADER_BYTES].copy_from_slice(&header(len));
    *out = buf;
    Ok(())
}

pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let mut out = Vec::new();
    encode_into(msg, &mut out)?;
    Ok(out)
}

/// The prefix of a frame whose body is `len` bytes (at most `u32::MAX`).
pub fn header(len: usize) -> [u8; HEADER_BYTES] {
    (len as u32).to_le_bytes()
}

/// Reads the body length from a client frame's header, refusing oversized
/// frames before any body byte is read.
pub fn body_len(header: [u8; HEADER_BYTES]) -> Result<usize, FrameError> {
    body_len_within(header, MAX_FRAME_BYTES)
}

/// Reads the body length from a frame header, refusing bodies above `max`.
pub fn body_len_within(header: [u8; HEADER_BYTES], max: usize) -> Result<usize, FrameError> {
    let len = u32::from_le_bytes(header) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    Ok(len)
}

pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    Ok(postcard::from_bytes(body)?)
}

/// Appends one frame holding `ToNode::Put { id, bytes, nested }` whose
/// `len` value bytes `fill` writes in place, so a large value is copied once,
/// straight into the frame. The frame is the same as [`encode_into`]'s.
pub fn encode_put_into<E>(
    out: &mut Vec<u8>,
    id: crate::ObjectId,
    len: usize,
    nested: &[crate::ObjectId],
    fill: impl FnOnce(&mut [u8]) -> Result<(), E>,
) -> Result<Result<(), E>, FrameError> {
    // The variant and id, as an empty put begins (it ends with the empty
    // value's length and the empty list, one zero byte each).
    let empty = crate::ToNode::Put {
        id,
        bytes: Vec::new(),
        nested: Vec::new(),
    };
    let mut head = postcard::to_allocvec(&empty)?;
    head.truncate(head.len() - 2);
    let len_varint = postcard::to_allocvec(&(len as u64))?;
    let tail = postcard::to_allocvec(nested)?;
    let body = head.len() + len_varint.len() + len + tail.len();
    if body > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge {
            len: body,
            max: MAX_FRAME_BYTES,
        });
    }
    let start = out.len();
    out.extend_from_slice(&header(body));
    out.extend_from_slice(&head);
    out.extend_from_slice(&len_varint);
    let at = out.len();
    out.resize(at + len, 0);
    if let Err(e) = fill(&mut out[at..at + len]) {
        out.truncate(start);
        return Ok(Err(e));
    }
    out.extend_from_slice(&tail);
    Ok(Ok(()))
}
