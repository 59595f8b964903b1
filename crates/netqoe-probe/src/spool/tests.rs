//! Unit tests of the spool: framing, torn tails, per-segment progress, bounds and roll-overs.

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
