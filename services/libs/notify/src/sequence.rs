//! The per-source sequence number of notifications, kept in one small file so that event ids
//! stay unique across restarts.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use tiervault_sys::durable::write_atomic;

use crate::NotifyError;

const FILE_MODE: u32 = 0o640;

/// Hands out sequence numbers, each one on disk before it is used: a crash may skip numbers,
/// never reuse one.
#[derive(Debug)]
pub(crate) struct Sequence {
    path: PathBuf,
    next: u64,
}

impl Sequence {
    /// Opens the counter in `path`. A missing or unreadable file starts at a clock-based
    /// number (`unix seconds << 20`) instead of 1: the file is missing when the state
    /// directory was lost, and the alert store then restarts its ids too, so restarting at 1
    /// would hand out event ids a receiver has already seen, and it would discard the new
    /// events as duplicates. The clock-based start stays above every number handed out
    /// earlier unless the clock went back or more than 2^20 notifications per second were
    /// sent; it stays below 2^53 (exact in JavaScript) until the year 2242.
    pub(crate) fn open(path: &Path, now_ns: i64) -> Result<Sequence, NotifyError> {
        let fallback = clock_start(now_ns);
        let next = match fs::read_to_string(path) {
            Ok(text) => match text.trim().parse::<u64>() {
                Ok(next) if next > 0 => next,
                _ => {
                    tracing::warn!(
                        path = %path.display(),
                        restart_at = fallback,
                        "notification sequence file is unreadable; restarting from the clock"
                    );
                    fallback
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => fallback,
            Err(source) => {
                return Err(NotifyError::Read {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        let mut sequence = Sequence {
            path: path.to_owned(),
            next,
        };
        // Written now so that an unwritable directory shows at start-up.
        sequence.store(next)?;
        Ok(sequence)
    }

    /// The next number, durable before it is returned.
    pub(crate) fn allocate(&mut self) -> Result<u64, NotifyError> {
        let seq = self.next;
        let after = seq
            .checked_add(1)
            .ok_or_else(|| NotifyError::SequenceExhausted {
                path: self.path.clone(),
            })?;
        self.store(after)?;
        self.next = after;
        Ok(seq)
    }

    fn store(&mut self, next: u64) -> Result<(), NotifyError> {
        write_atomic(&self.path, format!("{next}\n").as_bytes(), FILE_MODE).map_err(|source| {
            NotifyError::Write {
                path: self.path.clone(),
                source,
            }
        })
    }
}

fn clock_start(now_ns: i64) -> u64 {
    let secs = u64::try_from(now_ns.div_euclid(1_000_000_000)).unwrap_or(0);
    (secs << 20).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_740_830_400_000_000_000;

    #[test]
    fn never_reuses_a_number_across_reopen_or_loss() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sequence");
        let mut seq = Sequence::open(&path, NOW).expect("open");
        let first = seq.allocate().expect("allocate");
        assert_eq!(first, 1_740_830_400 << 20);
        assert_eq!(seq.allocate().expect("allocate"), first + 1);
        drop(seq);
        let mut seq = Sequence::open(&path, NOW).expect("reopen");
        assert_eq!(seq.allocate().expect("allocate"), first + 2);
        fs::write(&path, "garbage").expect("corrupt");
        let mut seq = Sequence::open(&path, NOW + 10_000_000_000).expect("recover");
        assert!(seq.allocate().expect("allocate") > first + 2);
    }

    #[test]
    fn exhaustion_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sequence");
        fs::write(&path, format!("{}\n", u64::MAX)).expect("write");
        let mut seq = Sequence::open(&path, NOW).expect("open");
        assert!(matches!(
            seq.allocate(),
            Err(NotifyError::SequenceExhausted { .. })
        ));
    }
}
