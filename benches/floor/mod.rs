//! What every decision bench measures against: the ids it decides and the
//! floor, the fastest computation of the same kind of decision.

use std::hash::Hasher;
use std::hint::black_box;

use async_upload_rollout::act::simulation::SplitMix64;
use siphasher::sip::SipHasher13;

/// Ids per run; a power of two, so the cycle is a mask.
pub const IDS: usize = 4096;

/// `IDS` UUID-shaped ids (36 bytes each), the same on every run.
pub fn uuid_ids() -> Vec<String> {
    let mut rng = SplitMix64::new(7);
    (0..IDS).map(|_| rng.uuid()).collect()
}

/// The floor: a consistent-hash decision with no shared state at all, a
/// keyed SipHash-1-3 written and finished (the faster of its two forms;
/// `BareDecision::one_shot` is the other) and the bucket map.
///
/// Built through `black_box`, so its keys are data read from memory (as a
/// real config's are) rather than constants folded into the code.
#[derive(Clone, Copy)]
pub struct BareDecision {
    pub seeded: SipHasher13,
    pub threshold: u32,
}

impl BareDecision {
    pub fn new() -> BareDecision {
        black_box(BareDecision {
            seeded: SipHasher13::new_with_keys(0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210),
            threshold: 100_000,
        })
    }

    /// The decision through the streaming form: `write` + `finish`.
    #[inline]
    pub fn decide(&self, id: &[u8]) -> bool {
        let mut hasher = self.seeded;
        hasher.write(id);
        bucket(hasher.finish()) < self.threshold
    }

    /// The same decision (the same hash value) through SipHash's one-shot
    /// `hash`.
    #[inline]
    #[allow(dead_code)] // Used by one of the two benches that share this file.
    pub fn one_shot(&self, id: &[u8]) -> bool {
        bucket(self.seeded.hash(id)) < self.threshold
    }
}

/// Lemire's multiply-shift onto a million buckets, as the crate maps.
#[inline]
fn bucket(hash: u64) -> u32 {
    ((u128::from(hash) * 1_000_000) >> 64) as u32
}
