//! Durable on-disk spool: append-only segment files of length + CRC32 framed records.
//!
//! Record frame: `u32 LE length | u32 LE crc32(payload) | payload` (see [`frame`]). A torn
//! tail (after kill -9, or the zero-filled end a power loss can leave) is detected on open and
//! truncated; earlier records are kept. Corrupt bytes inside a segment are stepped over to the
//! next intact record, counted in `netqoe_probe_spool_corrupt_bytes_total` and logged once.
//! Fsync policy: each appended batch is fsynced before `append` returns, so an event
//! accepted into the spool survives a crash; the directory is fsynced after a segment is
//! created or removed and after an ack file is renamed into place, and its parent after the
//! directory itself is created.
//!
//! Shipped progress is kept per segment: `<seq>.ack` holds how many leading records of
//! `<seq>.seg` ingest has accepted. A segment whose records are all shipped is deleted as soon
//! as it is no longer the one being written (at roll-over, at the next ack or `pending`, or
//! at open), so nothing shipped is ever read as unsent again. A segment is deleted before its
//! ack file, and a new segment's number is above every segment and ack file on disk, so an
//! ack file left by a crash between the two deletes never applies to a new segment.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::metrics as m;

pub mod frame;
pub use frame::{decode, encode, Decoded, HEADER};

/// A batch of pending records: (segment, index of first record, records, segment record count).
pub type Pending = (u64, usize, Vec<Vec<u8>>, usize);

/// What the spool knows of one segment file.
#[derive(Debug, Clone, Copy)]
struct Seg {
    records: usize,
    acked: usize,
    bytes: u64,
}

/// Why a segment was removed (the `reason` label of the deleted-segments counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Removal {
    Shipped,
    Full,
    Age,
}

/// The spool directory: segments named by increasing sequence number.
pub struct Spool {
    dir: PathBuf,
    segment_bytes: u64,
    max_bytes: u64,
    max_age: Option<std::time::Duration>,
    segs: BTreeMap<u64, Seg>,
    /// The segment being written: always the newest in `segs`.
    active: Option<(u64, File)>,
    next_seq: u64,
    /// Records dropped because the spool exceeded its byte bound.
    pub dropped: u64,
    /// Records dropped because their segment was last written longer than `max_age` ago.
    pub expired: u64,
    /// New segments started because the active one reached `segment_bytes`.
    pub rolled: u64,
    /// Segments deleted because every record in them was shipped.
    pub shipped_segments: u64,
    /// Corrupt bytes stepped over inside segments at open (their records are lost).
    pub corrupt_bytes: u64,
}

fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

fn parse_seq(name: &str, suffix: &str) -> Option<u64> {
    name.strip_suffix(suffix)?.parse().ok()
}

impl Spool {
    /// Opens (creating) the spool: repairs torn tails, loads each segment's shipped count
    /// (taking over a legacy single `cursor` file), removes ack files without a segment and
    /// deletes segments already fully shipped.
    pub fn open(dir: &Path, segment_bytes: u64, max_bytes: u64) -> std::io::Result<Spool> {
        if !dir.is_dir() {
            std::fs::create_dir_all(dir)?;
            // the new directory's own entry, so that segments fsynced in it are found again
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                fsync_dir(parent)?;
            }
        }
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            segment_bytes: segment_bytes.max(1),
            max_bytes,
            max_age: None,
            segs: BTreeMap::new(),
            active: None,
            next_seq: 1,
            dropped: 0,
            expired: 0,
            rolled: 0,
            shipped_segments: 0,
            corrupt_bytes: 0,
        };
        let (mut seqs, mut acks) = (Vec::new(), Vec::new());
        for entry in std::fs::read_dir(dir)?.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(seq) = parse_seq(name, ".seg") {
                seqs.push(seq);
            } else if let Some(seq) = parse_seq(name, ".ack") {
                acks.push(seq);
            } else if name.ends_with(".ack.tmp") {
                // an ack being written when the probe stopped: its rename never happened
                std::fs::remove_file(entry.path())?;
            }
        }
        seqs.sort_unstable();
        spool.next_seq = seqs.iter().chain(&acks).max().map_or(1, |s| s + 1);
        for &seq in &seqs {
            let path = spool.seg_path(seq);
            let mut buf = Vec::new();
            File::open(&path)?.read_to_end(&mut buf)?;
            let Decoded {
                records,
                valid,
                corrupt_bytes,
            } = decode(&buf);
            if corrupt_bytes > 0 {
                spool.corrupt_bytes += corrupt_bytes as u64;
                metrics::counter!(m::SPOOL_CORRUPT).increment(corrupt_bytes as u64);
                tracing::error!(
                    segment = %path.display(),
                    corrupt_bytes,
                    records_kept = records.len(),
                    "corrupt bytes inside a spool segment: the events in them are lost; reading on from the next intact record"
                );
            }
            if valid < buf.len() {
                tracing::warn!(segment = %path.display(), dropped_bytes = buf.len() - valid, "truncating torn spool tail");
                let f = OpenOptions::new().write(true).open(&path)?;
                f.set_len(valid as u64)?;
                f.sync_all()?;
            }
            let acked = std::fs::read_to_string(spool.ack_path(seq))
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
                .unwrap_or(0)
                .min(records.len());
            let seg = Seg {
                records: records.len(),
                acked,
                bytes: valid as u64,
            };
            spool.segs.insert(seq, seg);
        }
        spool.adopt_legacy_cursor()?;
        for seq in acks {
            if !spool.segs.contains_key(&seq) {
                std::fs::remove_file(spool.ack_path(seq))?;
            }
        }
        let done: Vec<u64> = spool
            .segs
            .iter()
            .filter(|(_, s)| s.acked >= s.records)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in done {
            spool.remove_segment(seq, Removal::Shipped)?;
        }
        fsync_dir(&spool.dir)?;
        spool.report();
        Ok(spool)
    }

    /// Takes over the single `cursor` file (`<seq> <count>`) of earlier releases.
    fn adopt_legacy_cursor(&mut self) -> std::io::Result<()> {
        let legacy = self.dir.join("cursor");
        let Ok(text) = std::fs::read_to_string(&legacy) else {
            return Ok(());
        };
        let parsed = text.trim().split_once(' ').and_then(|(a, b)| {
            let seq = a.parse::<u64>().ok()?;
            Some((seq, b.parse::<usize>().ok()?))
        });
        if let Some((seq, n)) = parsed {
            if let Some(seg) = self.segs.get(&seq).copied() {
                let n = n.min(seg.records);
                if n > seg.acked {
                    self.write_ack(seq, n)?;
                    self.segs.get_mut(&seq).unwrap().acked = n;
                }
            }
        }
        std::fs::remove_file(legacy)?;
        let _ = std::fs::remove_file(self.dir.join("cursor.tmp"));
        fsync_dir(&self.dir)
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

    fn ack_path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}.ack"))
    }

    fn active_seq(&self) -> Option<u64> {
        self.active.as_ref().map(|(seq, _)| *seq)
    }

    /// Segment sequence numbers, oldest first.
    pub fn segments(&self) -> std::io::Result<Vec<u64>> {
        Ok(self.segs.keys().copied().collect())
    }

    /// Bytes of all segment files.
    pub fn bytes(&self) -> u64 {
        self.segs.values().map(|s| s.bytes).sum()
    }

    /// Records not yet shipped.
    pub fn unshipped(&self) -> u64 {
        self.segs
            .values()
            .map(|s| (s.records - s.acked) as u64)
            .sum()
    }

    fn report(&self) {
        metrics::gauge!(m::SPOOL_BYTES).set(self.bytes() as f64);
        metrics::gauge!(m::SPOOL_SEGMENTS).set(self.segs.len() as f64);
        metrics::gauge!(m::SPOOL_PENDING).set(self.unshipped() as f64);
    }

    /// Starts a new segment file (fsyncing the directory); the previous one, when fully
    /// shipped, is deleted.
    fn roll(&mut self) -> std::io::Result<()> {
        let previous = self.active.take().map(|(seq, _)| seq);
        let seq = self.next_seq;
        let f = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(self.seg_path(seq))?;
        fsync_dir(&self.dir)?;
        self.next_seq += 1;
        self.segs.insert(
            seq,
            Seg {
                records: 0,
                acked: 0,
                bytes: 0,
            },
        );
        self.active = Some((seq, f));
        if let Some(prev) = previous {
            self.rolled += 1;
            metrics::counter!(m::SPOOL_ROLLED).increment(1);
            if self.segs.get(&prev).is_some_and(|s| s.acked >= s.records) {
                self.remove_segment(prev, Removal::Shipped)?;
            }
        }
        Ok(())
    }

    /// Appends records and fsyncs; rolls to a new segment past `segment_bytes`. An empty
    /// record is refused (its frame would read as the zeros of a torn tail). When the write
    /// fails, the segment is cut back to its last complete record.
    pub fn append(&mut self, payloads: &[Vec<u8>]) -> std::io::Result<()> {
        if payloads.iter().any(Vec::is_empty) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "an empty record cannot be spooled",
            ));
        }
        let mut buf = Vec::new();
        for p in payloads {
            encode(p, &mut buf);
        }
        let full = self
            .active_seq()
            .and_then(|seq| self.segs.get(&seq))
            .is_none_or(|s| s.bytes >= self.segment_bytes);
        if full {
            self.roll()?;
        }
        let (seq, f) = self.active.as_mut().unwrap();
        let seg = self.segs.get_mut(seq).expect("active segment is indexed");
        if let Err(e) = f.write_all(&buf).and_then(|()| f.sync_data()) {
            // appends go on after the last complete record, or in a new segment
            if f.set_len(seg.bytes).and_then(|()| f.sync_data()).is_err() {
                self.active = None;
            }
            return Err(e);
        }
        seg.bytes += buf.len() as u64;
        seg.records += payloads.len();
        let result = self.enforce_bound();
        self.report();
        result
    }

    fn enforce_bound(&mut self) -> std::io::Result<()> {
        let active = self.active_seq();
        if let Some(max_age) = self.max_age {
            let old: Vec<u64> = self.segs.keys().copied().collect();
            for seq in old {
                if Some(seq) == active {
                    break;
                }
                let age = std::fs::metadata(self.seg_path(seq))?
                    .modified()?
                    .elapsed()
                    .unwrap_or_default();
                if age <= max_age {
                    break;
                }
                let lost = self.segs[&seq].records - self.segs[&seq].acked;
                self.expired += lost as u64;
                metrics::counter!(m::SPOOL_DROPPED, "reason" => "age").increment(lost as u64);
                tracing::warn!(
                    records = lost,
                    age_s = age.as_secs(),
                    "spool segment older than its age bound: dropping it"
                );
                self.remove_segment(seq, Removal::Age)?;
            }
        }
        while self.bytes() > self.max_bytes && self.segs.len() > 1 {
            let (&seq, seg) = self.segs.iter().next().unwrap();
            let lost = seg.records - seg.acked;
            self.dropped += lost as u64;
            metrics::counter!(m::SPOOL_DROPPED, "reason" => "full").increment(lost as u64);
            tracing::warn!(records = lost, "spool full: dropping oldest segment");
            self.remove_segment(seq, Removal::Full)?;
        }
        Ok(())
    }

    /// Records of a segment and how many of them are already acknowledged.
    pub fn read_segment(&self, seq: u64) -> std::io::Result<(Vec<Vec<u8>>, usize)> {
        let mut buf = Vec::new();
        File::open(self.seg_path(seq))?.read_to_end(&mut buf)?;
        let acked = self.segs.get(&seq).map_or(0, |s| s.acked);
        Ok((decode(&buf).records, acked))
    }

    fn write_ack(&self, seq: u64, n: usize) -> std::io::Result<()> {
        let tmp = self.dir.join(format!("{seq:020}.ack.tmp"));
        {
            let mut f = File::create(&tmp)?;
            f.write_all(n.to_string().as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, self.ack_path(seq))?;
        fsync_dir(&self.dir)
    }

    /// Persists that the first `n` records of segment `seq` were shipped; deletes the segment
    /// when all were and it is no longer being written.
    pub fn ack(&mut self, seq: u64, n: usize) -> std::io::Result<()> {
        let Some(seg) = self.segs.get_mut(&seq) else {
            return Ok(()); // dropped meanwhile by a bound
        };
        let n = n.min(seg.records);
        if n <= seg.acked {
            return Ok(());
        }
        seg.acked = n;
        let done = n >= seg.records;
        let result = if done && self.active_seq() != Some(seq) {
            self.remove_segment(seq, Removal::Shipped)
        } else {
            self.write_ack(seq, n)
        };
        self.report();
        result
    }

    /// Deletes a segment, then its ack file, fsyncing the directory after each so that an
    /// ack file never outlives its segment's removal on disk.
    fn remove_segment(&mut self, seq: u64, why: Removal) -> std::io::Result<()> {
        if self.active_seq() == Some(seq) {
            self.active = None;
        }
        self.segs.remove(&seq);
        std::fs::remove_file(self.seg_path(seq))?;
        fsync_dir(&self.dir)?;
        match std::fs::remove_file(self.ack_path(seq)) {
            Ok(()) => fsync_dir(&self.dir)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let reason = match why {
            Removal::Shipped => {
                self.shipped_segments += 1;
                "shipped"
            }
            Removal::Full => "full",
            Removal::Age => "age",
        };
        metrics::counter!(m::SPOOL_DELETED, "reason" => reason).increment(1);
        Ok(())
    }

    /// The oldest unshipped records (up to `max`), with their segment and index for `ack`.
    /// Fully shipped segments met on the way, other than the active one, are deleted.
    pub fn pending(&mut self, max: usize) -> std::io::Result<Option<Pending>> {
        let seqs: Vec<u64> = self.segs.keys().copied().collect();
        for seq in seqs {
            let seg = self.segs[&seq];
            if seg.acked >= seg.records {
                if self.active_seq() != Some(seq) {
                    self.remove_segment(seq, Removal::Shipped)?;
                    self.report();
                }
                continue;
            }
            let (records, acked) = match self.read_segment(seq) {
                Ok(r) => r,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    tracing::error!(segment = seq, "spool segment vanished from disk");
                    self.segs.remove(&seq);
                    if self.active_seq() == Some(seq) {
                        self.active = None;
                    }
                    self.report();
                    continue;
                }
                Err(e) => return Err(e),
            };
            let total = records.len();
            let batch: Vec<_> = records.into_iter().skip(acked).take(max.max(1)).collect();
            return Ok(Some((seq, acked, batch, total)));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests;
