//! Pinned bucketing vectors: the compatibility promise.
//!
//! An upload's bucket must be the same on every platform, process and release.
//! These vectors were produced by release 0.1.0. If one of them changes, every
//! running rollout would reshuffle its cohort: that is a breaking change, never
//! a test to "update".
//!
//! The vectors are also checked against a from-scratch SipHash implementation
//! below, so a change in the `siphasher` dependency cannot slip through.

use async_upload_rollout::{Rollout, RolloutConfig};

/// (salt, upload id, bucket in 0..1_000_000)
const VECTORS: &[(&str, &str, u32)] = &[
    ("async-upload", "", 308383),
    ("async-upload", "a", 112318),
    ("async-upload", "upload-1", 107493),
    ("async-upload", "upload-2", 931854),
    (
        "async-upload",
        "0f8fad5b-d9cb-469f-a165-70867728950e",
        542236,
    ),
    (
        "async-upload",
        "7c9e6679-7425-40de-944b-e07fc1f90ae7",
        357210,
    ),
    ("async-upload", "héllo wörld", 69371),
    ("async-upload", "\0", 869531),
    ("", "", 522860),
    ("", "a", 609439),
    ("", "upload-1", 234519),
    ("", "upload-2", 291483),
    ("", "0f8fad5b-d9cb-469f-a165-70867728950e", 240080),
    ("", "7c9e6679-7425-40de-944b-e07fc1f90ae7", 478485),
    ("", "héllo wörld", 580151),
    ("", "\0", 702884),
    ("checkout-v2", "", 981576),
    ("checkout-v2", "a", 179456),
    ("checkout-v2", "upload-1", 496357),
    ("checkout-v2", "upload-2", 247717),
    (
        "checkout-v2",
        "0f8fad5b-d9cb-469f-a165-70867728950e",
        165944,
    ),
    (
        "checkout-v2",
        "7c9e6679-7425-40de-944b-e07fc1f90ae7",
        200770,
    ),
    ("checkout-v2", "héllo wörld", 545830),
    ("checkout-v2", "\0", 9181),
    ("ünïcode-salt", "", 870563),
    ("ünïcode-salt", "a", 77743),
    ("ünïcode-salt", "upload-1", 753228),
    ("ünïcode-salt", "upload-2", 476755),
    (
        "ünïcode-salt",
        "0f8fad5b-d9cb-469f-a165-70867728950e",
        561295,
    ),
    (
        "ünïcode-salt",
        "7c9e6679-7425-40de-944b-e07fc1f90ae7",
        811351,
    ),
    ("ünïcode-salt", "héllo wörld", 485505),
    ("ünïcode-salt", "\0", 606544),
];

fn rollout_with_salt(salt: &str) -> Rollout {
    Rollout::new(RolloutConfig {
        salt: salt.to_owned(),
        ..RolloutConfig::default()
    })
}

#[test]
fn pinned_vectors_never_change() {
    for &(salt, id, bucket) in VECTORS {
        assert_eq!(
            rollout_with_salt(salt).bucket(id),
            bucket,
            "salt {salt:?}, id {id:?}"
        );
    }
}

#[test]
fn pinned_vectors_match_the_specified_algorithm() {
    for &(salt, id, bucket) in VECTORS {
        assert_eq!(
            reference_bucket(salt, id.as_bytes()),
            bucket,
            "salt {salt:?}, id {id:?}"
        );
    }
}

#[test]
fn bucket_ignores_percent_and_overrides() {
    let (salt, id, bucket) = VECTORS[4];
    let config = RolloutConfig {
        salt: salt.to_owned(),
        percent: "37.5".parse().unwrap(),
        kill_switch: true,
        force_async: vec![id.to_owned()],
        force_sync: vec![],
    };
    assert_eq!(Rollout::new(config).bucket(id), bucket);
}

#[test]
fn reference_siphash_matches_the_published_siphash24_vector() {
    // From the SipHash paper (Aumasson & Bernstein), appendix A: key 00..0f,
    // message 00..0e, SipHash-2-4 = a129ca6149be45e5.
    let key: Vec<u8> = (0..16).collect();
    let k0 = u64::from_le_bytes(key[..8].try_into().unwrap());
    let k1 = u64::from_le_bytes(key[8..].try_into().unwrap());
    let message: Vec<u8> = (0..15).collect();
    assert_eq!(sip(2, 4, k0, k1, &message, false).0, 0xa129_ca61_49be_45e5);
}

// ---- The algorithm, written out from its specification (see src/bucket.rs). ----

fn reference_bucket(salt: &str, id: &[u8]) -> u32 {
    let mut key_input = b"async-upload-rollout/bucket/v1\0".to_vec();
    key_input.extend_from_slice(salt.as_bytes());
    let (k0, k1) = sip(1, 3, 0, 0, &key_input, true);
    let (hash, _) = sip(1, 3, k0, k1, id, false);
    ((u128::from(hash) * 1_000_000) >> 64) as u32
}

/// SipHash-c-d of `message`; with `wide`, the 128-bit variant as (h1, h2).
fn sip(c: usize, d: usize, k0: u64, k1: u64, message: &[u8], wide: bool) -> (u64, u64) {
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    if wide {
        v[1] ^= 0xee;
    }
    let round = |v: &mut [u64; 4]| {
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
    };
    let compress = |v: &mut [u64; 4], m: u64| {
        v[3] ^= m;
        for _ in 0..c {
            round(v);
        }
        v[0] ^= m;
    };
    let chunks = message.chunks_exact(8);
    let tail = chunks.remainder();
    for chunk in chunks {
        compress(&mut v, u64::from_le_bytes(chunk.try_into().unwrap()));
    }
    let mut last = [0u8; 8];
    last[..tail.len()].copy_from_slice(tail);
    last[7] = message.len() as u8;
    compress(&mut v, u64::from_le_bytes(last));

    v[2] ^= if wide { 0xee } else { 0xff };
    for _ in 0..d {
        round(&mut v);
    }
    let h1 = v[0] ^ v[1] ^ v[2] ^ v[3];
    if !wide {
        return (h1, 0);
    }
    v[1] ^= 0xdd;
    for _ in 0..d {
        round(&mut v);
    }
    (h1, v[0] ^ v[1] ^ v[2] ^ v[3])
}
