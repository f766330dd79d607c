//! The hot path's copy of a compiled config: three words behind a sequence
//! number, read with plain loads and no reference counting.
//!
//! A decision without override lists needs only the salt's two SipHash keys
//! and the rule (a fixed answer, or a threshold in ppm). [`Published`] keeps
//! exactly that in atomics, written under a sequence number (a *seqlock*): a
//! reader loads the number, the three words, and the number again; if both
//! loads saw the same even number, the words are one whole config. If a write
//! was under way, the reader does not wait or retry: it decides through the
//! compiled config instead (one [`ArcSwap::load`](arc_swap::ArcSwap::load)),
//! so a decision is always a bounded number of steps (wait-free).
//!
//! Configs with override lists are marked [`Fast::Compiled`]: their lists
//! live in the compiled config, which readers reach through the `ArcSwap`.
//!
//! # Orderings
//!
//! The writer (one at a time, under the rollout's writer lock) stores the
//! sequence number odd (`Relaxed`), issues a `Release` fence, stores the
//! words (`Relaxed`), and stores the number even (`Release`). A reader loads
//! the number (`Acquire`), the words (`Relaxed`), issues an `Acquire` fence
//! and loads the number again (`Relaxed`). If a word a reader loaded came
//! from a later write, that write's release fence synchronises with the
//! reader's acquire fence, so the second load sees at least the later odd
//! number and the reader rejects the words; if the first load saw write `n`'s
//! even number, every word of write `n` is visible to it. Equal even numbers
//! therefore mean the three words are write `n`'s, all of them (H.-J. Boehm,
//! "Can seqlocks get along with programming language memory models?", 2012;
//! crossbeam's `SeqLock` reads the same way). On x86-64 every one of these
//! operations is a plain `mov`; the fences only stop the compiler from
//! reordering.

use std::sync::atomic::{AtomicU64, Ordering, fence};

use crate::decide::bucket::BucketHasher;

/// What one decision needs from a config, without its override lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fast {
    /// The same answer for every id, no hash: the kill switch or a halt
    /// (`false`), or 0% / 100% without override lists.
    Answer(bool),
    /// In iff the id's bucket is below `ppm`; no override lists.
    Below {
        /// Keys derived from the salt.
        hasher: BucketHasher,
        /// Threshold in parts per million, strictly between 0 and 1,000,000.
        ppm: u32,
    },
    /// Override lists to check: decide through the compiled config.
    Compiled,
}

/// `word` bit: decide through the compiled config (override lists).
const COMPILED: u64 = 1 << 32;
/// `word` bit: the same answer for everybody, given by [`YES`].
const FIXED: u64 = 1 << 33;
/// `word` bit: the fixed answer is async.
const YES: u64 = 1 << 34;

/// The published copy of the current config's [`Fast`] form (see the module
/// docs). On its own cache line, so that nothing written elsewhere evicts it
/// from the readers' caches; it is written only when the config changes.
#[derive(Debug)]
#[repr(align(64))]
pub(crate) struct Published {
    /// Even: the words are whole; odd: a write is under way.
    seq: AtomicU64,
    k0: AtomicU64,
    k1: AtomicU64,
    /// The threshold in the low 32 bits, and the flags above.
    word: AtomicU64,
}

impl Published {
    /// Publishes `fast` as the first config.
    pub(crate) fn new(fast: Fast) -> Published {
        let (k0, k1, word) = encode(fast);
        Published {
            seq: AtomicU64::new(0),
            k0: AtomicU64::new(k0),
            k1: AtomicU64::new(k1),
            word: AtomicU64::new(word),
        }
    }

    /// The current config's [`Fast`] form, or `None` if a write was under way
    /// (then decide through the compiled config). Never waits, never retries.
    #[inline]
    pub(crate) fn read(&self) -> Option<Fast> {
        let before = self.seq.load(Ordering::Acquire);
        let k0 = self.k0.load(Ordering::Relaxed);
        let k1 = self.k1.load(Ordering::Relaxed);
        let word = self.word.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        let after = self.seq.load(Ordering::Relaxed);
        if before != after || before & 1 == 1 {
            return None;
        }
        Some(decode(k0, k1, word))
    }

    /// Replaces the published config with `fast`, around `during` (which the
    /// caller uses to store the compiled config, so that the two change
    /// within one write). The caller must be the only writer: the rollout
    /// calls this under its writer lock.
    pub(crate) fn write(&self, fast: Fast, during: impl FnOnce()) {
        let (k0, k1, word) = encode(fast);
        let seq = self.seq.load(Ordering::Relaxed);
        debug_assert!(seq & 1 == 0, "two writers at once");
        self.seq.store(seq + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        during();
        self.k0.store(k0, Ordering::Relaxed);
        self.k1.store(k1, Ordering::Relaxed);
        self.word.store(word, Ordering::Relaxed);
        self.seq.store(seq + 2, Ordering::Release);
    }
}

fn encode(fast: Fast) -> (u64, u64, u64) {
    match fast {
        Fast::Answer(yes) => (0, 0, FIXED | if yes { YES } else { 0 }),
        Fast::Below { hasher, ppm } => {
            let (k0, k1) = hasher.keys();
            (k0, k1, u64::from(ppm))
        }
        Fast::Compiled => (0, 0, COMPILED),
    }
}

#[inline]
fn decode(k0: u64, k1: u64, word: u64) -> Fast {
    if word & (FIXED | COMPILED) == 0 {
        Fast::Below {
            hasher: BucketHasher::from_keys(k0, k1),
            // The low 32 bits hold the threshold: truncation intended.
            ppm: word as u32,
        }
    } else if word & FIXED != 0 {
        Fast::Answer(word & YES != 0)
    } else {
        Fast::Compiled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_reads_back_as_written() {
        let hasher = BucketHasher::new("salt");
        let forms = [
            Fast::Answer(false),
            Fast::Answer(true),
            Fast::Below { hasher, ppm: 1 },
            Fast::Below {
                hasher,
                ppm: 999_999,
            },
            Fast::Compiled,
        ];
        let published = Published::new(Fast::Compiled);
        for form in forms {
            published.write(form, || {});
            assert_eq!(published.read(), Some(form));
            assert_eq!(Published::new(form).read(), Some(form));
        }
    }

    #[test]
    fn a_write_under_way_reads_as_none() {
        let published = Published::new(Fast::Answer(true));
        published.write(Fast::Answer(false), || {
            assert_eq!(published.read(), None);
        });
        assert_eq!(published.read(), Some(Fast::Answer(false)));
    }
}
