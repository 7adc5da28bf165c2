//! The object layout: one header, then metadata, data and out-of-band
//! buffers, each starting on a 64-byte boundary.
//!
//! The same layout is used for an object in a store file and for a small
//! object carried inline in a message (a plain `Vec<u8>`), so a reader never
//! needs to know where the bytes came from.
//!
//! ```text
//! offset  size  field
//!      0     8  magic  b"RAYNOBJ\0"
//!      8     4  version (u32 LE) = 1
//!     12     4  number of buffers n (u32 LE)
//!     16     8  total length of the object (u64 LE)
//!     24     8  metadata length (u64 LE)
//!     32     8  data length (u64 LE)
//!     40    20  key: the object's name, set by the store at seal (zero
//!                 in an inline object)
//!     60     4  reserved, zero
//!     64   8*n  length of each buffer (u64 LE)
//!  ...padding to 64: metadata, padding, data, padding, buffer 0, padding, ...
//! ```
//!
//! The key lets a reader in another process check that the file it mapped
//! still holds the object it asked for: the store reuses the files of freed
//! objects (see [`crate::map`]).
//!
//! Offsets are not stored: they follow from the lengths ([`plan`]), and
//! [`parse`] recomputes them and checks that the recorded total matches and
//! fits in the bytes it was given. A truncated, foreign or tampered file is
//! therefore an error, never an out-of-bounds slice.

use std::ops::Range;

use crate::error::LayoutError;
use crate::key::ObjectKey;

/// Every section starts at a multiple of this many bytes (cache line, and
/// enough for any numpy dtype).
pub const ALIGN: usize = 64;
/// First bytes of every object.
pub const MAGIC: [u8; 8] = *b"RAYNOBJ\0";
/// The layout version this crate writes and reads.
pub const VERSION: u32 = 1;
/// Size of the fixed part of the header, before the buffer length table.
pub const FIXED_HEADER: usize = 64;
/// Where the header keeps the object's key.
pub const KEY_AT: std::ops::Range<usize> = 40..60;
/// Upper bound on the number of out-of-band buffers in one object.
pub const MAX_BUFFERS: usize = 1 << 20;

/// Where each section of an object lies, in bytes from the object's start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Length of the header, including the buffer table and its padding.
    pub header_len: usize,
    /// The metadata section (e.g. the serialization format tag).
    pub meta: Range<usize>,
    /// The data section (e.g. a pickle-5 stream).
    pub data: Range<usize>,
    /// The out-of-band buffers, in order.
    pub buffers: Vec<Range<usize>>,
    /// Total object length; the object's file is exactly this long.
    pub total: usize,
}

fn align_up(n: usize) -> Option<usize> {
    n.checked_add(ALIGN - 1).map(|v| v & !(ALIGN - 1))
}

fn section(cursor: &mut usize, len: usize) -> Option<Range<usize>> {
    let start = align_up(*cursor)?;
    let end = start.checked_add(len)?;
    *cursor = end;
    Some(start..end)
}

/// Plans an object, failing if the lengths overflow the address space.
pub fn try_plan(
    meta_len: usize,
    data_len: usize,
    buffer_lens: &[usize],
) -> Result<Layout, LayoutError> {
    if buffer_lens.len() > MAX_BUFFERS {
        return Err(LayoutError::TooManyBuffers {
            count: buffer_lens.len() as u64,
            max: MAX_BUFFERS,
        });
    }
    let overflow = LayoutError::Overflow;
    let table = buffer_lens.len().checked_mul(8).ok_or(overflow.clone())?;
    let header_len = align_up(FIXED_HEADER + table).ok_or(overflow.clone())?;
    let mut cursor = header_len;
    let meta = section(&mut cursor, meta_len).ok_or(overflow.clone())?;
    let data = section(&mut cursor, data_len).ok_or(overflow.clone())?;
    let mut buffers = Vec::with_capacity(buffer_lens.len());
    for &len in buffer_lens {
        buffers.push(section(&mut cursor, len).ok_or(overflow.clone())?);
    }
    if cursor > isize::MAX as usize {
        return Err(overflow);
    }
    Ok(Layout {
        header_len,
        meta,
        data,
        buffers,
        total: cursor,
    })
}

/// Plans an object of the given section lengths.
///
/// # Panics
/// If the lengths sum past `isize::MAX`, which lengths of buffers that exist
/// in memory cannot do. Use [`try_plan`] for lengths from untrusted input.
pub fn plan(meta_len: usize, data_len: usize, buffer_lens: &[usize]) -> Layout {
    try_plan(meta_len, data_len, buffer_lens)
        .expect("section lengths of in-memory buffers fit in isize")
}

/// Writes the header of `layout` into the start of `dst` (at least
/// `layout.header_len` bytes; padding in the header is zeroed).
pub fn write_header(dst: &mut [u8], layout: &Layout) -> Result<(), LayoutError> {
    if dst.len() < layout.header_len {
        return Err(LayoutError::Truncated {
            needed: layout.header_len as u64,
            len: dst.len() as u64,
        });
    }
    let head = &mut dst[..layout.header_len];
    head.fill(0);
    head[0..8].copy_from_slice(&MAGIC);
    head[8..12].copy_from_slice(&VERSION.to_le_bytes());
    head[12..16].copy_from_slice(&(layout.buffers.len() as u32).to_le_bytes());
    head[16..24].copy_from_slice(&(layout.total as u64).to_le_bytes());
    head[24..32].copy_from_slice(&(layout.meta.len() as u64).to_le_bytes());
    head[32..40].copy_from_slice(&(layout.data.len() as u64).to_le_bytes());
    for (i, b) in layout.buffers.iter().enumerate() {
        let at = FIXED_HEADER + 8 * i;
        head[at..at + 8].copy_from_slice(&(b.len() as u64).to_le_bytes());
    }
    Ok(())
}

fn read_u32(src: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&src[at..at + 4]);
    u32::from_le_bytes(b)
}

fn read_u64(src: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&src[at..at + 8]);
    u64::from_le_bytes(b)
}

fn to_usize(v: u64) -> Result<usize, LayoutError> {
    usize::try_from(v).map_err(|_| LayoutError::Overflow)
}

/// Reads and validates the header at the start of `src` (a whole object:
/// a mapping or an inline `Vec<u8>`), returning where each section lies.
///
/// Checks the magic, the version, the reserved bytes, that the buffer table
/// fits, that the recorded total matches the lengths, and that the object
/// fits in `src`. Every range of a returned layout is in bounds of `src`.
pub fn parse(src: &[u8]) -> Result<Layout, LayoutError> {
    parse_header(src, src.len())
}

/// How many bytes of an object [`parse_header`] needs: the fixed header
/// and the buffer table, whose length the fixed header (`fixed`, at least
/// [`FIXED_HEADER`] bytes) records.
pub fn header_bytes(fixed: &[u8]) -> Result<usize, LayoutError> {
    if fixed.len() < FIXED_HEADER {
        return Err(LayoutError::Truncated {
            needed: FIXED_HEADER as u64,
            len: fixed.len() as u64,
        });
    }
    let count = read_u32(fixed, 12) as usize;
    if count > MAX_BUFFERS {
        return Err(LayoutError::TooManyBuffers {
            count: count as u64,
            max: MAX_BUFFERS,
        });
    }
    Ok(FIXED_HEADER + 8 * count)
}

/// Like [`parse`], from the first bytes of an object (at least its header
/// and buffer table) and the object's whole length: for a reader that maps
/// the object itself and hands over only the header.
pub fn parse_header(src: &[u8], object_len: usize) -> Result<Layout, LayoutError> {
    let truncated = |needed: usize| LayoutError::Truncated {
        needed: needed as u64,
        len: src.len() as u64,
    };
    if src.len() < FIXED_HEADER {
        return Err(truncated(FIXED_HEADER));
    }
    if src[0..8] != MAGIC {
        return Err(LayoutError::BadMagic);
    }
    let version = read_u32(src, 8);
    if version != VERSION {
        return Err(LayoutError::Version {
            found: version,
            supported: VERSION,
        });
    }
    let count = read_u32(src, 12) as usize;
    if count > MAX_BUFFERS {
        return Err(LayoutError::TooManyBuffers {
            count: count as u64,
            max: MAX_BUFFERS,
        });
    }
    if src[KEY_AT.end..FIXED_HEADER].iter().any(|&b| b != 0) {
        return Err(LayoutError::Reserved);
    }
    let table_end = FIXED_HEADER + 8 * count;
    if src.len() < table_end {
        return Err(truncated(table_end));
    }
    let total = read_u64(src, 16);
    let meta_len = to_usize(read_u64(src, 24))?;
    let data_len = to_usize(read_u64(src, 32))?;
    let header_len = align_up(table_end).ok_or(LayoutError::Overflow)?;
    let mut cursor = header_len;
    let meta = section(&mut cursor, meta_len).ok_or(LayoutError::Overflow)?;
    let data = section(&mut cursor, data_len).ok_or(LayoutError::Overflow)?;
    let mut buffers = Vec::with_capacity(count);
    for i in 0..count {
        let len = to_usize(read_u64(src, FIXED_HEADER + 8 * i))?;
        buffers.push(section(&mut cursor, len).ok_or(LayoutError::Overflow)?);
    }
    if total != cursor as u64 {
        return Err(LayoutError::TotalMismatch {
            recorded: total,
            computed: cursor as u64,
        });
    }
    if object_len < cursor {
        return Err(LayoutError::Truncated {
            needed: cursor as u64,
            len: object_len as u64,
        });
    }
    Ok(Layout {
        header_len,
        meta,
        data,
        buffers,
        total: cursor,
    })
}

/// Records `key` in the header of the object `dst` starts with (at least
/// [`FIXED_HEADER`] bytes, or nothing is written).
pub fn stamp_key(dst: &mut [u8], key: &ObjectKey) {
    if let Some(at) = dst.get_mut(KEY_AT) {
        at.copy_from_slice(&key.0);
    }
}

/// Whether the object `src` starts with carries `key` in its header.
pub fn has_key(src: &[u8], key: &ObjectKey) -> bool {
    src.get(KEY_AT).is_some_and(|at| at == key.0)
}

/// Builds a whole object in a new `Vec` (for inline objects and tests).
pub fn encode(meta: &[u8], data: &[u8], buffers: &[&[u8]]) -> Vec<u8> {
    let lens: Vec<usize> = buffers.iter().map(|b| b.len()).collect();
    let layout = plan(meta.len(), data.len(), &lens);
    let mut out = vec![0u8; layout.total];
    fill(&mut out, &layout, meta, data, buffers)
        .expect("the vector was sized from the same layout");
    out
}

/// Writes header and sections of `layout` into `dst` (an object's mapping).
/// Padding between sections is left as it is (zero in a new file).
pub fn fill(
    dst: &mut [u8],
    layout: &Layout,
    meta: &[u8],
    data: &[u8],
    buffers: &[&[u8]],
) -> Result<(), LayoutError> {
    if dst.len() < layout.total {
        return Err(LayoutError::Truncated {
            needed: layout.total as u64,
            len: dst.len() as u64,
        });
    }
    let lens_match = meta.len() == layout.meta.len()
        && data.len() == layout.data.len()
        && buffers.len() == layout.buffers.len()
        && buffers
            .iter()
            .zip(&layout.buffers)
            .all(|(b, r)| b.len() == r.len());
    if !lens_match {
        return Err(LayoutError::SectionMismatch);
    }
    write_header(dst, layout)?;
    crate::map::copy(&mut dst[layout.meta.clone()], meta);
    crate::map::copy(&mut dst[layout.data.clone()], data);
    for (b, r) in buffers.iter().zip(&layout.buffers) {
        crate::map::copy(&mut dst[r.clone()], b);
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sections_are_aligned_and_ordered() {
        let l = plan(3, 100, &[1, 0, 65]);
        assert_eq!(l.header_len, 128);
        assert_eq!(l.meta, 128..131);
        assert_eq!(l.data, 192..292);
        assert_eq!(l.buffers, vec![320..321, 384..384, 384..449]);
        assert_eq!(l.total, 449);
    }

    #[test]
    fn round_trip_inline() {
        let obj = encode(b"pickle5", b"data", &[b"abc", &[7u8; 100]]);
        let l = parse(&obj).unwrap();
        assert_eq!(&obj[l.meta.clone()], b"pickle5");
        assert_eq!(&obj[l.data.clone()], b"data");
        assert_eq!(&obj[l.buffers[0].clone()], b"abc");
        assert_eq!(&obj[l.buffers[1].clone()], &[7u8; 100][..]);
    }

    #[test]
    fn rejects_truncated_foreign_and_tampered() {
        let obj = encode(b"m", b"0123456789", &[b"xyz"]);
        assert!(matches!(
            parse(&obj[..obj.len() - 1]),
            Err(LayoutError::Truncated { .. })
        ));
        assert!(matches!(
            parse(&obj[..10]),
            Err(LayoutError::Truncated { .. })
        ));
        assert!(matches!(parse(&[0u8; 200]), Err(LayoutError::BadMagic)));
        let mut v = obj.clone();
        v[8] = 9;
        assert!(matches!(
            parse(&v),
            Err(LayoutError::Version { found: 9, .. })
        ));
        let mut v = obj.clone();
        v[16] ^= 1;
        assert!(matches!(parse(&v), Err(LayoutError::TotalMismatch { .. })));
        let mut v = obj.clone();
        v[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(parse(&v), Err(LayoutError::TooManyBuffers { .. })));
        let mut v = obj.clone();
        v[62] = 1;
        assert!(matches!(parse(&v), Err(LayoutError::Reserved)));
        let mut v = obj;
        v[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(parse(&v).is_err());
    }

    #[test]
    fn key_stamp_is_read_back_and_keeps_the_layout() {
        let mut obj = encode(b"m", b"data", &[]);
        let key = ObjectKey([7; 20]);
        assert!(!has_key(&obj, &key));
        let before = parse(&obj).unwrap();
        stamp_key(&mut obj, &key);
        assert!(has_key(&obj, &key));
        assert!(!has_key(&obj, &ObjectKey([8; 20])));
        assert_eq!(parse(&obj).unwrap(), before);
        let mut short = [0u8; 50];
        stamp_key(&mut short, &key);
        assert!(!has_key(&short, &key));
        assert_eq!(short, [0u8; 50]);
    }

    #[test]
    fn fill_rejects_mismatched_sections() {
        let l = plan(1, 2, &[3]);
        let mut dst = vec![0u8; l.total];
        assert!(fill(&mut dst, &l, b"m", b"dd", &[b"bb"]).is_err());
        assert!(fill(&mut dst[..10], &l, b"m", b"dd", &[b"bbb"]).is_err());
        fill(&mut dst, &l, b"m", b"dd", &[b"bbb"]).unwrap();
        assert_eq!(parse(&dst).unwrap(), l);
    }

    proptest! {
        #[test]
        fn plan_parse_round_trip(meta in 0usize..300, data in 0usize..5000,
                                 bufs in proptest::collection::vec(0usize..3000, 0..8)) {
            let l = plan(meta, data, &bufs);
            let mut obj = vec![0u8; l.total];
            write_header(&mut obj, &l).unwrap();
            let p = parse(&obj).unwrap();
            prop_assert_eq!(&p, &l);
            let mut prev_end = l.header_len;
            for r in std::iter::once(&l.meta).chain(std::iter::once(&l.data)).chain(&l.buffers) {
                prop_assert_eq!(r.start % ALIGN, 0);
                prop_assert!(r.start >= prev_end);
                prev_end = r.end;
            }
            prop_assert_eq!(l.total, prev_end);
        }

        #[test]
        fn parse_never_panics_and_stays_in_bounds(bytes in proptest::collection::vec(any::<u8>(), 0..512),
                                                  keep_magic in any::<bool>()) {
            let mut bytes = bytes;
            if keep_magic && bytes.len() >= 12 {
                bytes[0..8].copy_from_slice(&MAGIC);
                bytes[8..12].copy_from_slice(&VERSION.to_le_bytes());
            }
            if let Ok(l) = parse(&bytes) {
                prop_assert!(l.total <= bytes.len());
                for r in std::iter::once(&l.meta).chain(std::iter::once(&l.data)).chain(&l.buffers) {
                    prop_assert!(r.end <= bytes.len());
                }
            }
        }
    }
}
