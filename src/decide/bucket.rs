//! The consistent hash that puts every upload id in one of a million buckets.
//!
//! # The algorithm (a compatibility promise)
//!
//! 1. **Keys from the salt**, once per compiled config: the 128-bit
//!    SipHash-1-3 (keys `0, 0`) of `"async-upload-rollout/bucket/v1\0"`
//!    followed by the salt's UTF-8 bytes. Its two 64-bit halves (`h1`, `h2`)
//!    are the keys `k0`, `k1`.
//! 2. **Hash of the id**: the 64-bit SipHash-1-3 keyed with `k0, k1` of the
//!    id's bytes exactly as given (no length prefix, no normalisation).
//! 3. **Bucket**: `((hash as u128 * 1_000_000) >> 64) as u32`, Lemire's
//!    multiply-shift map of a 64-bit value onto `0..1_000_000`. Every bucket
//!    receives either ⌊2⁶⁴/10⁶⌋ or ⌈2⁶⁴/10⁶⌉ hash values, so the bias is below
//!    one part in 10¹³: far below anything a rollout could notice. Unlike
//!    `hash % 1_000_000` it needs no division.
//!
//! An id is in a rollout of `p` iff `bucket(id) < p.ppm()`, which makes
//! widening monotonic. SipHash reads its input little-endian on every
//! platform, so the bucket of an id depends on nothing but the salt and the
//! id's bytes. Pinned vectors in `tests/bucket_vectors.rs` guard all three
//! steps; changing any of them is a breaking change.

use std::hash::Hasher;

use siphasher::sip128::{Hasher128, SipHasher13 as SipHasher13x128};

/// Number of buckets: one per part per million.
pub(crate) const BUCKETS: u32 = 1_000_000;

/// Domain separation for the key derivation, so our keys never coincide with
/// another use of SipHash over the bare salt.
const KEY_DOMAIN: &[u8] = b"async-upload-rollout/bucket/v1\0";

/// The SipHash-1-3 keys of a salt, derived once per config.
///
/// Two words, so that the hot path can read them from plain atomics (see
/// `decide::snapshot`). Hashing an id builds the SipHash state from them
/// (four xors, in registers) and hashes the id in one shot, which is the
/// same function as writing it to a streaming hasher and finishing (checked
/// below): no 72-byte streaming state to build or copy per id, and no tail
/// bookkeeping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BucketHasher {
    k0: u64,
    k1: u64,
}

impl BucketHasher {
    /// Derives the keys for `salt` (step 1 of the module docs).
    pub(crate) fn new(salt: &str) -> BucketHasher {
        let (k0, k1) = derive_keys(salt);
        BucketHasher { k0, k1 }
    }

    /// A hasher with keys derived earlier by [`BucketHasher::new`].
    #[inline]
    pub(crate) const fn from_keys(k0: u64, k1: u64) -> BucketHasher {
        BucketHasher { k0, k1 }
    }

    /// The keys, to publish them.
    pub(crate) const fn keys(self) -> (u64, u64) {
        (self.k0, self.k1)
    }

    /// The bucket of `id` in `0..1_000_000` (steps 2 and 3).
    #[inline]
    pub(crate) fn bucket(self, id: &[u8]) -> u32 {
        map_to_bucket(self.hash(id))
    }

    /// The 64-bit SipHash-1-3 of `id` (step 2), which the bucket maps.
    #[inline]
    pub(crate) fn hash(self, id: &[u8]) -> u64 {
        #[cfg(test)]
        tests::HASHES.with(|n| n.set(n.get() + 1));
        sip13(self.k0, self.k1, id)
    }
}

/// SipHash-1-3 of `message` keyed `k0, k1`: the value of
/// `siphasher::sip::SipHasher13::new_with_keys(k0, k1).hash(message)`
/// (checked below for every length to 72, and by the pinned vectors),
/// written out so that its state lives in four registers: the decision
/// calls it with the keys and the id in registers. The `siphasher` crate's
/// `hash` reads its state from a 72-byte hasher in memory, so one built from
/// the published keys was first stored on the stack and then loaded back,
/// which cost a decision about 3 ns (see docs/performance.md).
#[inline]
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
    // The last block: the tail's bytes, little-endian, and the length's low
    // byte on top (shifting the rest out is the algorithm's `mod 256`).
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

/// One block `m` with SipHash-1-3's one compression round.
#[inline(always)]
fn compress(v: &mut [u64; 4], m: u64) {
    v[3] ^= m;
    sip_round(v);
    v[0] ^= m;
}

#[inline(always)]
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

/// SipHash-1-3 keys for a salt.
pub(crate) fn derive_keys(salt: &str) -> (u64, u64) {
    let mut hasher = SipHasher13x128::new_with_keys(0, 0);
    hasher.write(KEY_DOMAIN);
    hasher.write(salt.as_bytes());
    let h = hasher.finish128();
    (h.h1, h.h2)
}

/// Lemire's multiply-shift: maps a uniform `u64` onto `0..BUCKETS`.
#[inline]
pub(crate) const fn map_to_bucket(hash: u64) -> u32 {
    // The product is below 2^64 * 10^6, so the shifted value is below 10^6
    // and the cast cannot truncate.
    ((hash as u128 * BUCKETS as u128) >> 64) as u32
}

#[cfg(test)]
pub(crate) mod tests {
    use std::cell::Cell;

    use siphasher::sip::SipHasher13;

    use super::*;

    thread_local! {
        /// Ids hashed on this thread (test builds only), so tests can prove
        /// that 0% and 100% answer without hashing.
        pub(crate) static HASHES: Cell<u64> = const { Cell::new(0) };
    }

    pub(crate) fn hashes_on_this_thread() -> u64 {
        HASHES.with(Cell::get)
    }

    #[test]
    fn map_covers_the_whole_range_at_its_ends() {
        assert_eq!(map_to_bucket(0), 0);
        assert_eq!(map_to_bucket(u64::MAX), BUCKETS - 1);
        assert_eq!(map_to_bucket(1 << 63), BUCKETS / 2);
    }

    #[test]
    fn one_shot_hash_equals_streaming_siphash13() {
        for salt in ["async-upload", "", "another salt"] {
            let (k0, k1) = derive_keys(salt);
            let hasher = BucketHasher::new(salt);
            // Every tail length (0..8) after 0 to 8 whole blocks, and bytes
            // with the top bit set (no sign extension in the tail).
            for len in 0..=72 {
                let id: Vec<u8> = (0..len).map(|i| (i * 37 + 200) as u8).collect();
                let mut reference = SipHasher13::new_with_keys(k0, k1);
                reference.write(&id);
                let expected = reference.finish();
                assert_eq!(hasher.hash(&id), expected, "length {len}");
                assert_eq!(
                    SipHasher13::new_with_keys(k0, k1).hash(&id),
                    expected,
                    "siphasher's one-shot, length {len}"
                );
                assert_eq!(hasher.bucket(&id), map_to_bucket(expected));
            }
        }
        // A length past 255 (only its low byte enters the last block).
        let long = [0xa5u8; 300];
        let (k0, k1) = derive_keys("async-upload");
        let mut reference = SipHasher13::new_with_keys(k0, k1);
        reference.write(&long);
        assert_eq!(sip13(k0, k1, &long), reference.finish());
    }

    #[test]
    fn salt_changes_the_keys() {
        assert_ne!(derive_keys("a"), derive_keys("b"));
        assert_ne!(derive_keys(""), derive_keys("\0"));
    }
}
