//! Unit tests of the spool: framing, torn tails, corruption, per-segment progress, crash
//! states, bounds and roll-overs.

use super::*;

fn rec(i: u32) -> Vec<u8> {
    format!("{{\"n\":{i}}}").into_bytes()
}

#[test]
fn round_trip_and_torn_tail() {
    let mut buf = Vec::new();
    encode(b"one", &mut buf);
    encode(b"two", &mut buf);
    let full = buf.len();
    encode(b"three", &mut buf);
    buf.truncate(buf.len() - 2);
    let d = decode(&buf);
    assert_eq!(d.records, vec![b"one".to_vec(), b"two".to_vec()]);
    assert_eq!((d.valid, d.corrupt_bytes), (full, 0));
}

#[test]
fn corrupt_last_record_is_a_torn_tail() {
    let mut buf = Vec::new();
    encode(b"one", &mut buf);
    let one = buf.len();
    encode(b"two", &mut buf);
    let last = buf.len() - 1;
    buf[last] ^= 0xff;
    let d = decode(&buf);
    assert_eq!(d.records, vec![b"one".to_vec()]);
    assert_eq!((d.valid, d.corrupt_bytes), (one, 0));
}

/// After a power loss the end of a file can read as zeros: a zero header (length 0, and the
/// CRC32 of nothing is 0) is not a record.
#[test]
fn zero_filled_tail_is_torn_not_empty_records() {
    let mut buf = Vec::new();
    encode(b"one", &mut buf);
    let full = buf.len();
    buf.extend_from_slice(&[0u8; 64]);
    let d = decode(&buf);
    assert_eq!(d.records, vec![b"one".to_vec()]);
    assert_eq!((d.valid, d.corrupt_bytes), (full, 0));
    assert_eq!(decode(&[0u8; 4096]), Decoded::default());
}

#[test]
fn zero_filled_tail_is_truncated_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(dir.path(), 1 << 20, 1 << 30).unwrap();
    s.append(&[rec(1), rec(2)]).unwrap();
    drop(s);
    let seg = dir.path().join(format!("{:020}.seg", 1));
    let len = std::fs::metadata(&seg).unwrap().len();
    let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&[0u8; 4096]).unwrap();
    let mut s = Spool::open(dir.path(), 1 << 20, 1 << 30).unwrap();
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), len);
    assert_eq!((s.unshipped(), s.corrupt_bytes), (2, 0));
    let (_, _, batch, total) = s.pending(10).unwrap().unwrap();
    assert_eq!((batch, total), (vec![rec(1), rec(2)], 2));
}

#[test]
fn corruption_inside_a_segment_is_stepped_over_and_counted() {
    let mut buf = Vec::new();
    encode(b"one", &mut buf);
    let two_at = buf.len();
    encode(b"two", &mut buf);
    let two_len = buf.len() - two_at;
    encode(b"three", &mut buf);
    encode(b"four", &mut buf);
    let full = buf.len();
    let kept = vec![b"one".to_vec(), b"three".to_vec(), b"four".to_vec()];
    // a flipped payload byte, a length pointing past the end, a zeroed header
    for (at, value) in [(two_at + HEADER, b'X'), (two_at + 3, 0x7f), (two_at, 0)] {
        let mut bad = buf.clone();
        bad[at] = value;
        if value == 0 {
            bad[two_at..two_at + HEADER].fill(0);
        }
        let d = decode(&bad);
        assert_eq!(d.records, kept, "byte {at} set to {value}");
        assert_eq!((d.valid, d.corrupt_bytes), (full, two_len));
    }
}

#[test]
fn corrupt_segment_keeps_the_records_after_the_damage() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(dir.path(), 1 << 20, 1 << 30).unwrap();
    s.append(&[rec(1), rec(2), rec(3), rec(4)]).unwrap();
    drop(s);
    let seg = dir.path().join(format!("{:020}.seg", 1));
    let mut bytes = std::fs::read(&seg).unwrap();
    let second = HEADER + rec(1).len();
    bytes[second + HEADER + 2] ^= 0xff;
    std::fs::write(&seg, &bytes).unwrap();
    let mut s = Spool::open(dir.path(), 1 << 20, 1 << 30).unwrap();
    assert_eq!(s.corrupt_bytes, (HEADER + rec(2).len()) as u64);
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), bytes.len() as u64);
    let (seq, from, batch, total) = s.pending(10).unwrap().unwrap();
    assert_eq!((from, total), (0, 3));
    assert_eq!(batch, vec![rec(1), rec(3), rec(4)]);
    s.ack(seq, 3).unwrap();
    assert!(s.pending(10).unwrap().is_none());
}

#[test]
fn empty_records_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(dir.path(), 1 << 20, 1 << 30).unwrap();
    let err = s.append(&[rec(1), Vec::new()]).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert_eq!(s.unshipped(), 0, "nothing of the batch is written");
}

/// The files a crash leaves when it strikes inside the removal of shipped segment 3 (its
/// segment file deleted, its ack file not yet), with segment 2 still unshipped, and an ack
/// being written for it: the next segment must not take number 3 and inherit that ack.
#[test]
fn crash_between_segment_and_ack_delete_skips_no_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut seg2 = Vec::new();
    for i in 0..3 {
        encode(&rec(i), &mut seg2);
    }
    std::fs::write(dir.path().join(format!("{:020}.seg", 2)), seg2).unwrap();
    std::fs::write(dir.path().join(format!("{:020}.ack", 2)), "1").unwrap();
    std::fs::write(dir.path().join(format!("{:020}.ack", 3)), "4").unwrap();
    std::fs::write(dir.path().join(format!("{:020}.ack.tmp", 2)), "3").unwrap();
    let mut s = Spool::open(dir.path(), 1 << 20, 1 << 30).unwrap();
    for i in 3..8 {
        s.append(&[rec(i)]).unwrap();
    }
    assert_eq!(s.segments().unwrap(), vec![2, 4], "no number reused");
    let mut sent = Vec::new();
    while let Some((seq, from, batch, _)) = s.pending(2).unwrap() {
        s.ack(seq, from + batch.len()).unwrap();
        sent.extend(batch);
    }
    assert_eq!(
        sent,
        (1..8).map(rec).collect::<Vec<_>>(),
        "every unshipped record"
    );
    let mut left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [format!("{:020}.ack", 4), format!("{:020}.seg", 4)],
        "only the active segment and its progress"
    );
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
    s.ack(seq, 2).unwrap();
    assert!(
        !seg.exists(),
        "a shipped segment no longer written is deleted"
    );
    let (_, _, batch, _) = s.pending(10).unwrap().unwrap();
    assert_eq!(batch, vec![b"c".to_vec()]);
}

#[test]
fn ack_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(dir.path(), 1 << 20, 1 << 30).unwrap();
    s.append(&[b"a".to_vec(), b"b".to_vec(), b"c".to_vec()])
        .unwrap();
    let (seq, _, _, _) = s.pending(1).unwrap().unwrap();
    s.ack(seq, 1).unwrap();
    drop(s);
    let mut s = Spool::open(dir.path(), 1 << 20, 1 << 30).unwrap();
    let (_, from, batch, _) = s.pending(10).unwrap().unwrap();
    assert_eq!(from, 1);
    assert_eq!(batch, vec![b"b".to_vec(), b"c".to_vec()]);
    assert_eq!(s.unshipped(), 2);
}

/// The shipper caught up (every record acked as soon as written) across many roll-overs:
/// every record is handed out exactly once and the spool ends empty, also after a reopen.
#[test]
fn caught_up_shipper_across_roll_overs_sends_each_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(dir.path(), 64, 1 << 30).unwrap();
    let mut sent = Vec::new();
    for i in 0..200u32 {
        s.append(&[rec(i)]).unwrap();
        while let Some((seq, from, batch, _)) = s.pending(3).unwrap() {
            s.ack(seq, from + batch.len()).unwrap();
            sent.extend(batch);
        }
        assert!(
            s.segments().unwrap().len() <= 1,
            "only the active segment stays"
        );
    }
    assert!(s.rolled >= 20, "rolled {}", s.rolled);
    assert_eq!(
        s.shipped_segments, s.rolled,
        "every rolled segment was deleted"
    );
    let want: Vec<Vec<u8>> = (0..200).map(rec).collect();
    assert_eq!(sent, want, "each record once, in order");
    assert_eq!(s.unshipped(), 0);
    drop(s);
    let mut s = Spool::open(dir.path(), 64, 1 << 30).unwrap();
    assert!(s.pending(10).unwrap().is_none());
    assert!(s.segments().unwrap().is_empty(), "the spool ends empty");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
    assert!(left.is_empty(), "no file left: {left:?}");
}

/// A shipper behind by a few segments, acking in small steps with reopens in between
/// (as after crashes): still each record exactly once.
#[test]
fn behind_shipper_with_reopens_sends_each_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(dir.path(), 50, 1 << 30).unwrap();
    let mut sent = Vec::new();
    let mut next = 0u32;
    for round in 0..30 {
        for _ in 0..7 {
            s.append(&[rec(next)]).unwrap();
            next += 1;
        }
        for _ in 0..2 {
            if let Some((seq, from, batch, _)) = s.pending(4).unwrap() {
                s.ack(seq, from + batch.len()).unwrap();
                sent.extend(batch);
            }
        }
        if round % 4 == 3 {
            drop(s);
            s = Spool::open(dir.path(), 50, 1 << 30).unwrap();
        }
    }
    while let Some((seq, from, batch, _)) = s.pending(4).unwrap() {
        s.ack(seq, from + batch.len()).unwrap();
        sent.extend(batch);
    }
    let want: Vec<Vec<u8>> = (0..next).map(rec).collect();
    assert_eq!(sent, want);
    assert_eq!(s.unshipped(), 0);
}

#[test]
fn legacy_cursor_is_taken_over_and_orphan_acks_removed() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(dir.path(), 1 << 20, 1 << 30).unwrap();
    s.append(&[b"a".to_vec(), b"b".to_vec(), b"c".to_vec()])
        .unwrap();
    drop(s);
    std::fs::write(dir.path().join("cursor"), "1 2").unwrap();
    std::fs::write(dir.path().join(format!("{:020}.ack", 9)), "5").unwrap();
    let mut s = Spool::open(dir.path(), 1 << 20, 1 << 30).unwrap();
    assert!(!dir.path().join("cursor").exists());
    assert!(!dir.path().join(format!("{:020}.ack", 9)).exists());
    let (_, from, batch, _) = s.pending(10).unwrap().unwrap();
    assert_eq!((from, batch), (2, vec![b"c".to_vec()]));
}

#[test]
fn bound_drops_oldest_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(dir.path(), 20, 40).unwrap();
    for i in 0..10u8 {
        s.append(&[vec![i; 12]]).unwrap();
    }
    assert!(s.dropped > 0);
    assert!(s.bytes() <= 40);
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

#[test]
fn a_missing_spool_directory_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("state/spool");
    let mut s = Spool::open(&nested, 1 << 20, 1 << 30).unwrap();
    s.append(&[rec(1)]).unwrap();
    drop(s);
    let mut s = Spool::open(&nested, 1 << 20, 1 << 30).unwrap();
    let (_, _, batch, _) = s.pending(10).unwrap().unwrap();
    assert_eq!(batch, vec![rec(1)]);
}
