//! Spool record framing: `u32 LE length | u32 LE crc32(payload) | payload`, and a decoder
//! that steps over corrupt bytes to the next intact record instead of dropping the rest.
//!
//! A frame is intact when its payload is not empty, lies wholly inside the buffer and matches
//! its CRC. An empty payload is never written, so the all-zero header that a power loss can
//! leave behind (length 0, and CRC32 of nothing is 0) never reads as a record.

/// Frame header size in bytes.
pub const HEADER: usize = 8;

/// Encodes one record frame. The payload must not be empty (`Spool::append` refuses one).
pub fn encode(payload: &[u8], out: &mut Vec<u8>) {
    debug_assert!(!payload.is_empty(), "an empty record cannot be framed");
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// What one segment's bytes hold.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Decoded {
    /// Every intact record, in order.
    pub records: Vec<Vec<u8>>,
    /// End of the last intact record: what follows is a torn tail (an append cut short).
    pub valid: usize,
    /// Bytes stepped over between intact records: corruption whose records are lost.
    pub corrupt_bytes: usize,
}

/// The end of the intact frame starting at `pos`, if one does.
fn frame_at(buf: &[u8], pos: usize) -> Option<usize> {
    let header = buf.get(pos..pos.checked_add(HEADER)?)?;
    let len = u32::from_le_bytes(header[..4].try_into().unwrap()) as usize;
    let crc = u32::from_le_bytes(header[4..].try_into().unwrap());
    let end = (pos + HEADER).checked_add(len)?;
    let payload = buf.get(pos + HEADER..end)?;
    (len > 0 && crc32fast::hash(payload) == crc).then_some(end)
}

/// Decodes every intact record. Where a frame is broken, the next position holding an
/// intact frame resumes decoding (the bytes between are counted as corrupt); when none
/// follows, the rest is a torn tail and `valid` ends before it.
pub fn decode(buf: &[u8]) -> Decoded {
    let mut out = Decoded::default();
    let mut pos = 0;
    while buf.len().saturating_sub(pos) >= HEADER {
        if let Some(end) = frame_at(buf, pos) {
            out.records.push(buf[pos + HEADER..end].to_vec());
            pos = end;
            out.valid = end;
            continue;
        }
        match (pos + 1..=buf.len() - HEADER).find(|&p| frame_at(buf, p).is_some()) {
            Some(next) => {
                out.corrupt_bytes += next - pos;
                pos = next;
            }
            None => break,
        }
    }
    out
}
