//! The override lists, compiled: every listed id found by the same hash that
//! buckets it, so a decision with lists hashes the id once.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::decide::bucket::BucketHasher;

/// The `force_sync` and `force_async` lists of one config, keyed by each
/// id's bucket hash (the salt's SipHash-1-3, already computed to bucket it).
#[derive(Debug, Default)]
pub(crate) struct Overrides {
    /// Hash → the listed ids with that hash (one, unless two ids collide on
    /// all 64 bits).
    by_hash: HashMap<u64, Box<[Listed]>, BuildHasherDefault<Prehashed>>,
}

/// A listed id's bytes, and whether it is forced async (`false`: sync).
type Listed = (Box<[u8]>, bool);

impl Overrides {
    /// Compiles the lists; an id in both is forced sync (deny wins).
    pub(crate) fn new(hasher: BucketHasher, force_async: &[String], force_sync: &[String]) -> Self {
        let mut by_hash: HashMap<u64, Vec<Listed>> = HashMap::new();
        let listed = force_sync
            .iter()
            .map(|id| (id, false))
            .chain(force_async.iter().map(|id| (id, true)));
        for (id, use_async) in listed {
            let id = id.as_bytes();
            let ids = by_hash.entry(hasher.hash(id)).or_default();
            // Sync came first: a later async entry for the same id loses.
            if !ids.iter().any(|(listed, _)| **listed == *id) {
                ids.push((id.into(), use_async));
            }
        }
        Overrides {
            by_hash: by_hash
                .into_iter()
                .map(|(hash, ids)| (hash, ids.into_boxed_slice()))
                .collect(),
        }
    }

    /// Whether there are no overrides at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// The forced answer for `id`, whose bucket hash is `hash`, if it is listed.
    #[inline]
    pub(crate) fn get(&self, hash: u64, id: &[u8]) -> Option<bool> {
        let ids = self.by_hash.get(&hash)?;
        ids.iter()
            .find(|(listed, _)| **listed == *id)
            .map(|&(_, use_async)| use_async)
    }
}

/// A `Hasher` for keys that already are uniform 64-bit hashes: it passes
/// them through instead of hashing them again.
#[derive(Clone, Copy, Debug, Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed here; fold anything else in anyway.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, hash: u64) {
        self.0 = hash;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|&id| id.to_owned()).collect()
    }

    #[test]
    fn listed_ids_are_found_and_deny_wins() {
        let hasher = BucketHasher::new("salt");
        let overrides = Overrides::new(
            hasher,
            &ids(&["allow", "both", "allow"]),
            &ids(&["deny", "both"]),
        );
        let get = |id: &str| overrides.get(hasher.hash(id.as_bytes()), id.as_bytes());
        assert_eq!(get("allow"), Some(true));
        assert_eq!(get("deny"), Some(false));
        assert_eq!(get("both"), Some(false));
        assert_eq!(get("other"), None);
        assert!(!overrides.is_empty());
        assert!(Overrides::new(hasher, &[], &[]).is_empty());
    }

    #[test]
    fn an_id_with_a_listed_hash_but_other_bytes_is_not_listed() {
        // Collisions on 64 bits cannot be found by search; ask with a
        // listed id's hash and other bytes instead.
        let hasher = BucketHasher::new("salt");
        let overrides = Overrides::new(hasher, &ids(&["allow"]), &[]);
        let hash = hasher.hash(b"allow");
        assert_eq!(overrides.get(hash, b"allow"), Some(true));
        assert_eq!(overrides.get(hash, b"allov"), None);
    }
}
