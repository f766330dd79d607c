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
/// keyed SipHash-1-3 and the bucket map, in three forms that compute the same
/// hash: written and finished (`decide`), `siphasher`'s one-shot `hash`
/// (`one_shot`), and the one-shot written out with its state in registers
/// (`in_registers`, the form the crate itself uses). Which is fastest
/// depends on the CPU and the build; the benches compare against the
/// fastest.
///
/// Built through `black_box`, so its keys are data read from memory (as a
/// real config's are) rather than constants folded into the code.
#[derive(Clone, Copy)]
pub struct BareDecision {
    pub seeded: SipHasher13,
    pub keys: (u64, u64),
    pub threshold: u32,
}

const KEYS: (u64, u64) = (0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210);

impl BareDecision {
    pub fn new() -> BareDecision {
        black_box(BareDecision {
            seeded: SipHasher13::new_with_keys(KEYS.0, KEYS.1),
            keys: KEYS,
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

    /// The same decision (the same hash value) through the one-shot SipHash
    /// with its state in registers, as the crate computes it.
    #[inline]
    #[allow(dead_code)] // Used by one of the two benches that share this file.
    pub fn in_registers(&self, id: &[u8]) -> bool {
        bucket(sip13(self.keys.0, self.keys.1, id)) < self.threshold
    }
}

/// Panics unless the three forms of the floor hash every id alike (so each
/// is a floor for the same computation).
#[allow(dead_code)] // Used by one of the two benches that share this file.
pub fn check_forms_agree(ids: &[String]) {
    let bare = BareDecision::new();
    for id in ids
        .iter()
        .map(String::as_bytes)
        .chain([&b""[..], b"1234567"])
    {
        let mut streaming = bare.seeded;
        streaming.write(id);
        let expected = streaming.finish();
        assert_eq!(bare.seeded.hash(id), expected, "one-shot hash of {id:?}");
        assert_eq!(sip13(KEYS.0, KEYS.1, id), expected, "in registers: {id:?}");
    }
}

/// Lemire's multiply-shift onto a million buckets, as the crate maps.
#[inline]
fn bucket(hash: u64) -> u32 {
    ((u128::from(hash) * 1_000_000) >> 64) as u32
}

/// SipHash-1-3 of `message` keyed `k0, k1`, written out as the crate's
/// `decide::bucket` does (its private copy cannot be linked from here).
#[inline]
#[allow(dead_code)] // Used by one of the two benches that share this file.
fn sip13(k0: u64, k1: u64, message: &[u8]) -> u64 {
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    let (blocks, tail) = message.as_chunks::<8>();
    for block in blocks {
        compress(&mut v, u64::from_le_bytes(*block));
    }
    let mut last = (message.len() as u64) << 56;
    let mut rest = tail;
    let mut shift = 0;
    if let Some((four, more)) = rest.split_first_chunk::<4>() {
        last |= u64::from(u32::from_le_bytes(*four));
        shift = 32;
        rest = more;
    }
    if let Some((two, more)) = rest.split_first_chunk::<2>() {
        last |= u64::from(u16::from_le_bytes(*two)) << shift;
        shift += 16;
        rest = more;
    }
    if let Some(&one) = rest.first() {
        last |= u64::from(one) << shift;
    }
    compress(&mut v, last);
    v[2] ^= 0xff;
    sip_round(&mut v);
    sip_round(&mut v);
    sip_round(&mut v);
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

#[inline(always)]
#[allow(dead_code)]
fn compress(v: &mut [u64; 4], m: u64) {
    v[3] ^= m;
    sip_round(v);
    v[0] ^= m;
}

#[inline(always)]
#[allow(dead_code)]
fn sip_round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}
