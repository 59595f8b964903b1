//! Durable on-disk spool: append-only segment files of length + CRC32 framed records.
//!
//! Record frame: `u32 LE length | u32 LE crc32(payload) | payload`. A torn or corrupt
//! tail (after kill -9) is detected on open and truncated; earlier records are kept.
//! Fsync policy: each appended batch is fsynced before `append` returns, so an event
//! accepted into the spool survives a crash. Fully shipped segments are deleted, and the
//! acknowledged record count of the oldest segment is kept in a `cursor` file.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Frame header size in bytes.
pub const HEADER: usize = 8;

/// Encodes one record frame.
pub fn encode(payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Decodes every complete, intact record; returns them and the byte length of the valid prefix.
pub fn decode(buf: &[u8]) -> (Vec<Vec<u8>>, usize) {
    let mut records = Vec::new();
    let mut pos = 0;
    while buf.len() - pos >= HEADER {
        let len = u32::from_le_bytes(buf[pos..pos + 4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(buf[pos + 4..pos + 8].try_into().unwrap());
        let end = pos + HEADER + len;
        if end > buf.len() || crc32fast::hash(&buf[pos + HEADER..end]) != crc {
            break;
        }
        records.push(buf[pos + HEADER..end].to_vec());
        pos = end;
    }
    (records, pos)
}

/// A batch of pending records: (segment, index of first record, records, segment record count).
pub type Pending = (u64, usize, Vec<Vec<u8>>, usize);

/// The spool directory: segments named by increasing sequence number.
pub struct Spool {
    dir: PathBuf,
    segment_bytes: u64,
    max_bytes: u64,
    max_age: Option<std::time::Duration>,
    active: Option<(u64, File, u64)>,
    /// Records dropped because the spool exceeded its byte bound.
    pub dropped: u64,
    /// Records dropped because their segment was last written longer than `max_age` ago.
    pub expired: u64,
}

impl Spool {
    /// Opens (creating) the spool, repairing a torn tail in the newest segment.
    pub fn open(dir: &Path, segment_bytes: u64, max_bytes: u64) -> std::io::Result<Spool> {
        std::fs::create_dir_all(dir)?;
        let spool = Spool {
            dir: dir.to_path_buf(),
            segment_bytes,
            max_bytes,
            max_age: None,
            active: None,
            dropped: 0,
            expired: 0,
        };
        for seq in spool.segments()? {
            let path = spool.seg_path(seq);
            let mut buf = Vec::new();
            File::open(&path)?.read_to_end(&mut buf)?;
            let (_, valid) = decode(&buf);
            if valid < buf.len() {
                tracing::warn!(segment = %path.display(), dropped_bytes = buf.len() - valid, "truncating torn spool tail");
                OpenOptions::new()
                    .write(true)
                    .open(&path)?
                    .set_len(valid as u64)?;
            }
        }
        Ok(spool)
    }

    /// Also bounds the spool by age: a segment last written longer than `max_age` ago is
    /// dropped (its unsent records counted in `expired`) on the next append.
    pub fn with_max_age(mut self, max_age: std::time::Duration) -> Spool {
        self.max_age = Some(max_age);
        self
    }

    fn seg_path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}.seg"))
    }

    /// Segment sequence numbers, oldest first.
    pub fn segments(&self) -> std::io::Result<Vec<u64>> {
        let mut v: Vec<u64> = std::fs::read_dir(&self.dir)?
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".seg")?.parse().ok())
            .collect();
        v.sort_unstable();
        Ok(v)
    }

    /// Appends records and fsyncs; rolls to a new segment past `segment_bytes`.
    pub fn append(&mut self, payloads: &[Vec<u8>]) -> std::io::Result<()> {
        let mut buf = Vec::new();
        for p in payloads {
            encode(p, &mut buf);
        }
        if self
            .active
            .as_ref()
            .is_none_or(|(_, _, size)| *size >= self.segment_bytes)
        {
            let next = self.segments()?.last().map_or(1, |s| s + 1);
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.seg_path(next))?;
            self.active = Some((next, f, 0));
        }
        let (_, f, size) = self.active.as_mut().unwrap();
        f.write_all(&buf)?;
        f.sync_data()?;
        *size += buf.len() as u64;
        self.enforce_bound()
    }

    fn enforce_bound(&mut self) -> std::io::Result<()> {
        if let Some(max_age) = self.max_age {
            let active = self.active.as_ref().map(|(seq, _, _)| *seq);
            for seq in self.segments()? {
                let age = std::fs::metadata(self.seg_path(seq))?
                    .modified()?
                    .elapsed()
                    .unwrap_or_default();
                if Some(seq) == active || age <= max_age {
                    break;
                }
                let (records, n) = self.read_segment(seq)?;
                self.expired += (records.len() - n) as u64;
                tracing::warn!(
                    records = records.len() - n,
                    age_s = age.as_secs(),
                    "spool segment older than its age bound: dropping it"
                );
                self.remove_segment(seq)?;
            }
        }
        loop {
            let segs = self.segments()?;
            let total: u64 = segs
                .iter()
                .filter_map(|s| std::fs::metadata(self.seg_path(*s)).ok())
                .map(|m| m.len())
                .sum();
            if total <= self.max_bytes || segs.len() <= 1 {
                return Ok(());
            }
            let (records, n) = self.read_segment(segs[0])?;
            self.dropped += (records.len() - n) as u64;
            tracing::warn!(
                records = records.len() - n,
                "spool full: dropping oldest segment"
            );
            self.remove_segment(segs[0])?;
        }
    }

    /// Records of a segment and how many of them are already acknowledged.
    pub fn read_segment(&self, seq: u64) -> std::io::Result<(Vec<Vec<u8>>, usize)> {
        let mut buf = Vec::new();
        File::open(self.seg_path(seq))?.read_to_end(&mut buf)?;
        let acked = std::fs::read_to_string(self.dir.join("cursor"))
            .ok()
            .and_then(|s| {
                let (a, b) = s.trim().split_once(' ')?;
                (a.parse::<u64>().ok()? == seq).then(|| b.parse().ok())?
            })
            .unwrap_or(0);
        Ok((decode(&buf).0, acked))
    }

    /// Persists that the first `n` records of segment `seq` were shipped; deletes it when all were
    /// and it is no longer being written.
    pub fn ack(&mut self, seq: u64, n: usize, total: usize) -> std::io::Result<()> {
        let active = self.active.as_ref().map(|a| a.0) == Some(seq);
        if n >= total && !active {
            return self.remove_segment(seq);
        }
        let tmp = self.dir.join("cursor.tmp");
        std::fs::write(&tmp, format!("{seq} {n}"))?;
        File::open(&tmp)?.sync_all()?;
        std::fs::rename(tmp, self.dir.join("cursor"))
    }

    fn remove_segment(&mut self, seq: u64) -> std::io::Result<()> {
        if self.active.as_ref().map(|a| a.0) == Some(seq) {
            self.active = None;
        }
        std::fs::remove_file(self.seg_path(seq))?;
        let _ = std::fs::remove_file(self.dir.join("cursor"));
        Ok(())
    }

    /// The oldest unshipped records (up to `max`), with their segment and index for `ack`.
    pub fn pending(&self, max: usize) -> std::io::Result<Option<Pending>> {
        for seq in self.segments()? {
            let (records, acked) = self.read_segment(seq)?;
            if acked < records.len() {
                let total = records.len();
                let batch: Vec<_> = records.into_iter().skip(acked).take(max).collect();
                return Ok(Some((seq, acked, batch, total)));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_torn_tail() {
        let mut buf = Vec::new();
        encode(b"one", &mut buf);
        encode(b"two", &mut buf);
        let full = buf.len();
        encode(b"three", &mut buf);
        buf.truncate(buf.len() - 2);
        let (recs, valid) = decode(&buf);
        assert_eq!(recs, vec![b"one".to_vec(), b"two".to_vec()]);
        assert_eq!(valid, full);
    }

    #[test]
    fn corrupt_record_stops_decoding() {
        let mut buf = Vec::new();
        encode(b"one", &mut buf);
        encode(b"two", &mut buf);
        let last = buf.len() - 1;
        buf[last] ^= 0xff;
        assert_eq!(decode(&buf).0, vec![b"one".to_vec()]);
    }

    #[test]
    fn reopen_truncates_tail_and_keeps_records() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20, 1 << 30).unwrap();
        s.append(&[b"a".to_vec(), b"b".to_vec()]).unwrap();
        drop(s);
        let seg = dir.path().join(format!("{:020}.seg", 1));
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&[9, 0, 0, 0, 1]).unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20, 1 << 30).unwrap();
        s.append(&[b"c".to_vec()]).unwrap();
        let (seq, from, batch, total) = s.pending(10).unwrap().unwrap();
        assert_eq!((from, total), (0, 2));
        assert_eq!(batch, vec![b"a".to_vec(), b"b".to_vec()]);
        s.ack(seq, 2, total).unwrap();
        let (_, _, batch, _) = s.pending(10).unwrap().unwrap();
        assert_eq!(batch, vec![b"c".to_vec()]);
    }

    #[test]
    fn ack_cursor_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20, 1 << 30).unwrap();
        s.append(&[b"a".to_vec(), b"b".to_vec(), b"c".to_vec()])
            .unwrap();
        let (seq, _, _, total) = s.pending(1).unwrap().unwrap();
        s.ack(seq, 1, total).unwrap();
        drop(s);
        let s = Spool::open(dir.path(), 1 << 20, 1 << 30).unwrap();
        let (_, from, batch, _) = s.pending(10).unwrap().unwrap();
        assert_eq!(from, 1);
        assert_eq!(batch, vec![b"b".to_vec(), b"c".to_vec()]);
    }

    #[test]
    fn bound_drops_oldest_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 20, 40).unwrap();
        for i in 0..10u8 {
            s.append(&[vec![i; 12]]).unwrap();
        }
        assert!(s.dropped > 0);
        let (_, _, batch, _) = s.pending(100).unwrap().unwrap();
        assert_ne!(batch[0], vec![0u8; 12]);
    }

    #[test]
    fn age_bound_drops_old_segments_and_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 20, 1 << 20)
            .unwrap()
            .with_max_age(std::time::Duration::from_millis(100));
        s.append(&[vec![1u8; 12]]).unwrap();
        s.append(&[vec![2u8; 12]]).unwrap();
        assert_eq!(s.expired, 0, "young segments stay");
        std::thread::sleep(std::time::Duration::from_millis(250));
        s.append(&[vec![3u8; 12]]).unwrap();
        assert_eq!(s.expired, 2);
        assert_eq!(s.dropped, 0);
        let (_, _, batch, _) = s.pending(100).unwrap().unwrap();
        assert_eq!(batch, vec![vec![3u8; 12]]);
    }
}
