//! [`Rollout`]: the hot-path decision behind an atomically swappable config.
//!
//! One concept in one file of about 755 lines (241 of them its unit tests, 196
//! docs): the hot-path decision and the config it reads are one unit (the two
//! halves of one seqlock).

use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::{ArcSwap, Cache};

use crate::decide::bucket::{BUCKETS, BucketHasher, map_to_bucket};
use crate::decide::config::{ConfigError, RolloutConfig};
use crate::decide::overrides::Overrides;
use crate::decide::percent::Percent;
use crate::decide::snapshot::{Fast, Published};

/// Decides, per upload id, whether an upload takes the new async path.
///
/// A decision reads the current config's salt keys and rule from three
/// atomic words checked by a sequence number (no lock, no reference count, no
/// thread-local) and, for percents strictly between 0 and 100, hashes the id
/// once with SipHash-1-3. A config change is one short write under a writer
/// lock that readers never take, and a decision always sees one whole config,
/// never a mix of two. Share it as `Arc<Rollout>`.
///
/// # Examples
///
/// ```
/// use async_upload_rollout::{Percent, Rollout, RolloutConfig};
///
/// let rollout = Rollout::new(RolloutConfig::with_percent(Percent::from_whole(10)?));
/// let in_at_10 = rollout.should_use_async("0f8fad5b-d9cb-469f-a165-70867728950e");
///
/// // Widening keeps everyone who was already in.
/// rollout.set_percent(Percent::from_whole(50)?);
/// if in_at_10 {
///     assert!(rollout.should_use_async("0f8fad5b-d9cb-469f-a165-70867728950e"));
/// }
///
/// // Rolling back takes effect at the next decision, on every thread.
/// rollout.set_percent(Percent::ZERO);
/// assert!(!rollout.should_use_async("0f8fad5b-d9cb-469f-a165-70867728950e"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Rollout {
    shared: Arc<Shared>,
    /// Serialises writers, so that the published words and the compiled
    /// config change together. Readers never take it.
    writer: Mutex<()>,
}

/// What a rollout and its handles read.
struct Shared {
    /// The hot path's copy of `current` (see `decide::snapshot`).
    published: Published,
    /// The whole compiled config: override lists, the config itself, and the
    /// decision when `published` says [`Fast::Compiled`] or is being written.
    current: ArcSwap<Compiled>,
}

/// `Shared`'s config cell, for [`arc_swap::Cache`].
struct Current(Arc<Shared>);

impl Deref for Current {
    type Target = ArcSwap<Compiled>;

    fn deref(&self) -> &ArcSwap<Compiled> {
        &self.0.current
    }
}

/// A config prepared for the hot path: keys derived, lists keyed by the same
/// hash, the decision without lists resolved. Immutable once built; replaced whole.
struct Compiled {
    config: Arc<RolloutConfig>,
    /// Set by [`Rollout::halt`]: nothing async, force lists included.
    halted: bool,
    hasher: BucketHasher,
    /// The decision as far as it can be made without the lists; what
    /// [`Published`] carries.
    fast: Fast,
    /// `force_sync` and `force_async`.
    overrides: Overrides,
}

impl Compiled {
    fn new(config: Arc<RolloutConfig>, halted: bool) -> Compiled {
        let hasher = BucketHasher::new(&config.salt);
        Compiled::with_hasher(config, halted, hasher)
    }

    /// Compiles `config` with keys already derived from its salt.
    fn with_hasher(config: Arc<RolloutConfig>, halted: bool, hasher: BucketHasher) -> Compiled {
        let overrides = Overrides::new(hasher, &config.force_async, &config.force_sync);
        let fast = match config.percent.ppm() {
            // Kill switch or halt: sync, whatever the lists say.
            _ if halted || config.kill_switch => Fast::Answer(false),
            _ if !overrides.is_empty() => Fast::Compiled,
            0 => Fast::Answer(false),
            BUCKETS => Fast::Answer(true),
            ppm => Fast::Below { hasher, ppm },
        };
        Compiled {
            halted,
            hasher,
            fast,
            overrides,
            config,
        }
    }

    #[inline]
    fn decide(&self, id: &[u8]) -> bool {
        decide_fast(self.fast, id).unwrap_or_else(|| self.decide_listed(id))
    }

    /// The decision of a config with override lists (never killed or
    /// halted: those are [`Fast::Answer`]): one hash finds the id in the
    /// lists and, if it is not there, buckets it.
    fn decide_listed(&self, id: &[u8]) -> bool {
        let hash = self.hasher.hash(id);
        self.overrides
            .get(hash, id)
            .unwrap_or_else(|| map_to_bucket(hash) < self.config.percent.ppm())
    }

    /// [`decide`](Compiled::decide) with its reason: the same precedence,
    /// step for step, kept beside it so the two cannot drift apart unseen
    /// (`explain_agrees_with_should_use_async` checks them against each other).
    fn explain(&self, id: &[u8]) -> Decision {
        let forced = |use_async, reason| Decision {
            use_async,
            reason,
            bucket: None,
        };
        if self.halted {
            return forced(false, DecisionReason::Halted);
        }
        if self.config.kill_switch {
            return forced(false, DecisionReason::KillSwitch);
        }
        let hash = self.hasher.hash(id);
        match self.overrides.get(hash, id) {
            Some(false) => return forced(false, DecisionReason::ForceSync),
            Some(true) => return forced(true, DecisionReason::ForceAsync),
            None => {}
        }
        let bucket = map_to_bucket(hash);
        Decision {
            use_async: bucket < self.config.percent.ppm(),
            reason: DecisionReason::Bucket,
            bucket: Some(bucket),
        }
    }
}

/// The decision `fast` makes alone, or `None` when the lists must be read.
#[inline]
fn decide_fast(fast: Fast, id: &[u8]) -> Option<bool> {
    match fast {
        Fast::Answer(yes) => Some(yes),
        Fast::Below { hasher, ppm } => Some(hasher.bucket(id) < ppm),
        Fast::Compiled => None,
    }
}

/// One decision with the rule that made it, from [`Rollout::decide`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Whether the upload takes the async path: always the answer
    /// [`Rollout::should_use_async`] gives under the same config.
    pub use_async: bool,
    /// Which rule decided.
    pub reason: DecisionReason,
    /// The id's bucket in `0..1_000_000` when the bucket decided
    /// ([`DecisionReason::Bucket`]); `None` when a rule above it did, since
    /// then the id was not hashed.
    pub bucket: Option<u32>,
}

/// The rule behind a [`Decision`], in [`RolloutConfig`]'s order of precedence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DecisionReason {
    /// The rollout is halted ([`Rollout::halt`]: rolled back, off, or its
    /// state unknown): sync for everybody, force lists included.
    Halted,
    /// The kill switch is on: sync for everybody.
    KillSwitch,
    /// The id is listed in `force_sync`.
    ForceSync,
    /// The id is listed in `force_async` (and not in `force_sync`).
    ForceAsync,
    /// The id's bucket against the percent: async iff `bucket < percent.ppm()`.
    /// This includes 0% (nobody) and 100% (everybody), which follow the same
    /// rule.
    Bucket,
}

impl Rollout {
    /// Compiles `config` and starts deciding with it.
    #[must_use]
    pub fn new(config: RolloutConfig) -> Rollout {
        let compiled = Compiled::new(Arc::new(config), false);
        Rollout {
            shared: Arc::new(Shared {
                published: Published::new(compiled.fast),
                current: ArcSwap::from_pointee(compiled),
            }),
            writer: Mutex::new(()),
        }
    }

    /// A rollout configured from `ASYNC_UPLOAD_ROLLOUT` (unset means 0%).
    ///
    /// # Errors
    ///
    /// As [`RolloutConfig::from_env`]: a set but invalid value is an error,
    /// never a silent 0%.
    pub fn from_env() -> Result<Rollout, ConfigError> {
        RolloutConfig::from_env().map(Rollout::new)
    }

    /// Whether the upload `upload_id` takes the async path.
    ///
    /// No lock, no allocation, no reference count, no thread-local: a
    /// decision loads the salt's keys and the rule from three atomic words
    /// (checked by a sequence number, so they always belong to one config)
    /// and, for percents strictly between 0 and 100, hashes the id once with
    /// SipHash-1-3. At 0%, at 100%, with the kill switch on and while halted
    /// it answers from those words without hashing. With override lists it
    /// decides through the compiled config instead: one
    /// [`ArcSwap::load`] and one hash, which both finds the id in the lists
    /// and buckets it. While the config holds, an id always gets the same
    /// answer; a new config is seen by the next decision on every thread.
    #[inline]
    #[must_use]
    pub fn should_use_async<K: AsRef<[u8]> + ?Sized>(&self, upload_id: &K) -> bool {
        let id = upload_id.as_ref();
        match self
            .shared
            .published
            .read()
            .and_then(|fast| decide_fast(fast, id))
        {
            Some(yes) => yes,
            None => self.decide_compiled(id),
        }
    }

    /// The decision through the compiled config: override lists, or a
    /// config being replaced at this instant. Out of line, so that a user's
    /// call site holds only the fast path.
    #[inline(never)]
    fn decide_compiled(&self, id: &[u8]) -> bool {
        self.shared.current.load().decide(id)
    }

    /// The bucket of `upload_id` under the current salt, in `0..1_000_000`.
    ///
    /// The id is in the rollout at `p` iff `bucket < p.ppm()` (overrides and
    /// the kill switch aside). Useful for support questions.
    ///
    /// # The algorithm (a compatibility promise)
    ///
    /// 1. Keys, derived once per config: the 128-bit SipHash-1-3 (keys `0, 0`)
    ///    of `"async-upload-rollout/bucket/v1\0"` followed by the salt's UTF-8
    ///    bytes; its halves `h1`, `h2` are the keys `k0`, `k1`.
    /// 2. The 64-bit SipHash-1-3, keyed `k0, k1`, of the id's bytes as given.
    /// 3. `((hash as u128 * 1_000_000) >> 64) as u32`: Lemire's multiply-shift,
    ///    whose bias is below one part in 10¹³.
    ///
    /// The result depends on nothing but the salt and the id's bytes, on every
    /// platform, process and release; pinned vectors guard it, and changing
    /// them is a breaking change.
    #[must_use]
    pub fn bucket<K: AsRef<[u8]> + ?Sized>(&self, upload_id: &K) -> u32 {
        self.shared.current.load().hasher.bucket(upload_id.as_ref())
    }

    /// The decision for `upload_id` and the rule that made it: for support
    /// questions, logs and feature-flag adapters, not for the hot path.
    ///
    /// It reads one config, so its answer always equals
    /// [`should_use_async`](Rollout::should_use_async)'s under that config.
    /// Unlike `should_use_async` it hashes the id whenever the bucket decides,
    /// at 0% and 100% too (to report the bucket).
    ///
    /// # Examples
    ///
    /// ```
    /// use async_upload_rollout::{Percent, Rollout, RolloutConfig, decide::DecisionReason};
    ///
    /// let mut config = RolloutConfig::with_percent(Percent::from_whole(10)?);
    /// config.force_async = vec!["load-test-1".into()];
    /// let rollout = Rollout::new(config);
    ///
    /// let forced = rollout.decide("load-test-1");
    /// assert!(forced.use_async);
    /// assert_eq!(forced.reason, DecisionReason::ForceAsync);
    ///
    /// let split = rollout.decide("0f8fad5b-d9cb-469f-a165-70867728950e");
    /// assert_eq!(split.reason, DecisionReason::Bucket);
    /// assert_eq!(split.bucket, Some(rollout.bucket("0f8fad5b-d9cb-469f-a165-70867728950e")));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn decide<K: AsRef<[u8]> + ?Sized>(&self, upload_id: &K) -> Decision {
        self.shared.current.load().explain(upload_id.as_ref())
    }

    /// Sets the percent, keeping the rest of the config, and lifts a
    /// [`halt`](Rollout::halt); returns the previous percent. Concurrent
    /// changes are not lost: writers take turns.
    ///
    /// With a [`RolloutController`](crate::RolloutController), the percent
    /// belongs to it (it is a function of the rollout's state and plan): do
    /// not set it from anywhere else.
    pub fn set_percent(&self, percent: Percent) -> Percent {
        self.swap(Some(percent), |_| {}).percent
    }

    /// Halts the rollout: from the next decision on, **no upload takes the
    /// async path**, `force_async` ids included, until
    /// [`set_percent`](Rollout::set_percent) lifts it. The config's percent
    /// reads 0% while halted. [`store`](Rollout::store) and
    /// [`update`](Rollout::update) keep the halt, so a config reload cannot
    /// undo it. Returns whether it was already halted. A halted decision costs
    /// what one at 0% does: no hash, no list.
    ///
    /// This is how a rolled-back, off, unknown or stale rollout state fails
    /// closed: the sync path still serves every upload.
    ///
    /// ```
    /// use async_upload_rollout::{Percent, Rollout, RolloutConfig, decide::DecisionReason};
    ///
    /// let mut config = RolloutConfig::with_percent(Percent::from_whole(50)?);
    /// config.force_async = vec!["load-test-1".into()];
    /// let rollout = Rollout::new(config);
    /// rollout.halt();
    /// assert!(!rollout.should_use_async("load-test-1"));
    /// assert_eq!(rollout.decide("load-test-1").reason, DecisionReason::Halted);
    /// assert_eq!(rollout.percent(), Percent::ZERO);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn halt(&self) -> bool {
        let previous = self.replace(|current| {
            let mut config = RolloutConfig::clone(&current.config);
            config.percent = Percent::ZERO;
            Compiled::with_hasher(Arc::new(config), true, current.hasher)
        });
        previous.halted
    }

    /// Whether the rollout is halted ([`halt`](Rollout::halt)).
    #[must_use]
    pub fn is_halted(&self) -> bool {
        self.shared.current.load().halted
    }

    /// Turns the kill switch on or off, keeping the rest of the config, and
    /// returns its previous state.
    pub fn set_kill_switch(&self, on: bool) -> bool {
        self.update(|config| config.kill_switch = on).kill_switch
    }

    /// Replaces the whole config (a [`halt`](Rollout::halt) stays, and a
    /// halted rollout keeps its 0%). Readers switch at one instant.
    pub fn store(&self, config: RolloutConfig) {
        let config = Arc::new(config);
        self.swap(None, |new| *new = RolloutConfig::clone(&config));
    }

    /// Applies `change` to a copy of the current config and stores it
    /// atomically (a [`halt`](Rollout::halt) stays, and a halted rollout keeps
    /// its 0%). Writers take turns, so a concurrent change is never lost.
    /// Returns the config that was replaced.
    pub fn update(&self, change: impl FnMut(&mut RolloutConfig)) -> Arc<RolloutConfig> {
        self.swap(None, change)
    }

    /// The one read-copy-update behind every config change: applies
    /// `change`, then either sets the percent and lifts a halt (`Some`), or
    /// keeps the halt and, while halted, the 0% (`None`).
    fn swap(
        &self,
        percent: Option<Percent>,
        mut change: impl FnMut(&mut RolloutConfig),
    ) -> Arc<RolloutConfig> {
        let previous = self.replace(|current| {
            let mut config = RolloutConfig::clone(&current.config);
            change(&mut config);
            let halted = match percent {
                Some(percent) => {
                    config.percent = percent;
                    false
                }
                None if current.halted => {
                    config.percent = Percent::ZERO;
                    true
                }
                None => false,
            };
            // Same salt: reuse the derived keys instead of deriving them again.
            if config.salt == current.config.salt {
                Compiled::with_hasher(Arc::new(config), halted, current.hasher)
            } else {
                Compiled::new(Arc::new(config), halted)
            }
        });
        Arc::clone(&previous.config)
    }

    /// Replaces the compiled config with `next(current)` and publishes it;
    /// returns the replaced one. Writers take turns on `self.writer`, so no
    /// change is lost and the published words always belong to `current`.
    fn replace(&self, next: impl FnOnce(&Compiled) -> Compiled) -> Arc<Compiled> {
        // A writer that panicked (in `next`, before writing anything) leaves
        // nothing half-done behind, so a poisoned lock is safe to take.
        let _turn = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let current = self.shared.current.load_full();
        let next = Arc::new(next(&current));
        let fast = next.fast;
        self.shared
            .published
            .write(fast, || self.shared.current.store(next));
        current
    }

    /// The config in force now.
    #[must_use]
    pub fn config(&self) -> Arc<RolloutConfig> {
        Arc::clone(&self.shared.current.load().config)
    }

    /// The percent in force now.
    #[must_use]
    pub fn percent(&self) -> Percent {
        self.shared.current.load().config.percent
    }

    /// A decision handle for one worker (see [`RolloutHandle`]).
    #[must_use]
    pub fn handle(&self) -> RolloutHandle {
        RolloutHandle {
            shared: Arc::clone(&self.shared),
            cache: Cache::new(Current(Arc::clone(&self.shared))),
        }
    }
}

impl fmt::Debug for Rollout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let current = self.shared.current.load();
        f.debug_struct("Rollout")
            .field("config", &current.config)
            .field("halted", &current.halted)
            .finish()
    }
}

/// A decision handle for one worker, made by [`Rollout::handle`].
///
/// It decides exactly as [`Rollout::should_use_async`] does, at the same
/// cost, and it owns its share of the rollout (no borrow), so it can move
/// into a task or thread. With override lists it also saves the
/// [`ArcSwap::load`]: it keeps the compiled config in an [`arc_swap::Cache`]
/// and checks one pointer against the shared one. The price: a handle keeps
/// the compiled config it last needed (or the one current when it was made)
/// alive until it next needs one or is dropped, and it needs `&mut self`, so
/// it belongs to one worker (it is `Send`, not shared).
pub struct RolloutHandle {
    shared: Arc<Shared>,
    cache: Cache<Current, Arc<Compiled>>,
}

impl RolloutHandle {
    /// As [`Rollout::should_use_async`]; with override lists, through the
    /// cached compiled config.
    #[inline]
    #[must_use]
    pub fn should_use_async<K: AsRef<[u8]> + ?Sized>(&mut self, upload_id: &K) -> bool {
        let id = upload_id.as_ref();
        match self
            .shared
            .published
            .read()
            .and_then(|fast| decide_fast(fast, id))
        {
            Some(yes) => yes,
            None => self.decide_cached(id),
        }
    }

    /// The decision through the cached compiled config: override lists, or
    /// a config being replaced at this instant.
    #[inline(never)]
    fn decide_cached(&mut self, id: &[u8]) -> bool {
        self.cache.load().decide(id)
    }

    /// The config in force now.
    #[must_use]
    pub fn config(&mut self) -> Arc<RolloutConfig> {
        Arc::clone(&self.cache.load().config)
    }
}

impl fmt::Debug for RolloutHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RolloutHandle").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::bucket::tests::hashes_on_this_thread;

    fn config(percent: u32) -> RolloutConfig {
        RolloutConfig::with_percent(Percent::from_whole(percent).unwrap())
    }

    #[test]
    fn zero_and_hundred_percent_never_hash() {
        let ids: Vec<String> = (0..1000).map(|i| format!("upload-{i}")).collect();
        let before = hashes_on_this_thread();
        let nobody = Rollout::new(config(0));
        let everybody = Rollout::new(config(100));
        assert!(ids.iter().all(|id| !nobody.should_use_async(id)));
        assert!(ids.iter().all(|id| everybody.should_use_async(id)));
        assert_eq!(hashes_on_this_thread(), before);

        let half = Rollout::new(config(50));
        let _ = half.should_use_async("x");
        assert_eq!(hashes_on_this_thread(), before + 1);
    }

    #[test]
    fn the_kill_switch_and_a_halt_never_hash_even_with_lists() {
        let mut listed = config(50);
        listed.force_async = vec!["allow".into()];
        listed.force_sync = vec!["deny".into()];
        let killed = Rollout::new(RolloutConfig {
            kill_switch: true,
            ..listed.clone()
        });
        let halted = Rollout::new(listed);
        halted.halt();
        let mut handle = halted.handle();
        let before = hashes_on_this_thread();
        for id in ["allow", "deny", "anyone"] {
            assert!(!killed.should_use_async(id));
            assert!(!halted.should_use_async(id));
            assert!(!handle.should_use_async(id));
        }
        assert_eq!(hashes_on_this_thread(), before);
    }

    #[test]
    fn a_decision_during_a_write_reads_the_compiled_config() {
        let mut c = config(100);
        c.force_sync = vec!["deny".into()];
        for c in [config(0), config(37), config(100), c] {
            let rollout = Rollout::new(c);
            let mut handle = rollout.handle();
            let ids: Vec<String> = (0..200).map(|i| format!("upload-{i}")).collect();
            let expected: Vec<bool> = ids.iter().map(|id| rollout.decide(id).use_async).collect();
            // Rewrite the same config's words by hand: meanwhile the words
            // read as "write under way", so decisions take the other path.
            let fast = rollout.shared.current.load().fast;
            rollout.shared.published.write(fast, || {
                assert_eq!(rollout.shared.published.read(), None);
                for (id, &want) in ids.iter().zip(&expected) {
                    assert_eq!(rollout.should_use_async(id), want, "{id}");
                    assert_eq!(handle.should_use_async(id), want, "{id}");
                }
            });
            assert_eq!(rollout.shared.published.read(), Some(fast));
        }
    }

    #[test]
    fn precedence_kill_switch_then_deny_then_allow() {
        let mut c = config(100);
        c.force_sync = vec!["both".into(), "deny".into()];
        c.force_async = vec!["both".into(), "allow".into()];
        let rollout = Rollout::new(c.clone());
        assert!(!rollout.should_use_async("both"), "deny wins over allow");
        assert!(!rollout.should_use_async("deny"));
        assert!(rollout.should_use_async("allow"));
        assert!(rollout.should_use_async("anyone"));

        c.percent = Percent::ZERO;
        rollout.store(c.clone());
        assert!(rollout.should_use_async("allow"), "allow works at 0%");
        assert!(!rollout.should_use_async("anyone"));

        rollout.set_kill_switch(true);
        assert!(
            !rollout.should_use_async("allow"),
            "kill switch wins over allow"
        );
        assert!(rollout.config().kill_switch);
    }

    #[test]
    fn set_percent_keeps_the_rest_and_returns_the_old_value() {
        let mut c = config(10);
        c.salt = "other".into();
        c.force_async = vec!["a".into()];
        let rollout = Rollout::new(c.clone());
        let old = rollout.set_percent(Percent::HUNDRED);
        assert_eq!(old, Percent::from_whole(10).unwrap());
        c.percent = Percent::HUNDRED;
        assert_eq!(*rollout.config(), c);
        assert_eq!(rollout.percent(), Percent::HUNDRED);
    }

    #[test]
    fn handle_sees_a_new_config_at_its_next_decision() {
        let rollout = Rollout::new(config(0));
        let mut handle = rollout.handle();
        assert!(!handle.should_use_async("id"));
        rollout.set_percent(Percent::HUNDRED);
        assert!(handle.should_use_async("id"));
        assert_eq!(handle.config().percent, Percent::HUNDRED);
    }

    #[test]
    fn bucket_matches_the_decision_threshold() {
        let rollout = Rollout::new(config(37));
        for i in 0..2000 {
            let id = format!("id-{i}");
            assert_eq!(rollout.should_use_async(&id), rollout.bucket(&id) < 370_000);
        }
    }

    #[test]
    fn explain_agrees_with_should_use_async() {
        let ids: Vec<String> = (0..500).map(|i| format!("upload-{i}")).collect();
        let mut listed = config(0);
        listed.force_sync = vec!["upload-1".into(), "upload-2".into()];
        listed.force_async = vec!["upload-2".into(), "upload-3".into()];
        for percent in [0, 1, 37, 99, 100] {
            for (kill_switch, halt, lists) in [
                (false, false, true),
                (true, false, true),
                (false, true, true),
                (false, false, false),
            ] {
                let mut c = if lists { listed.clone() } else { config(0) };
                c.percent = Percent::from_whole(percent).unwrap();
                c.kill_switch = kill_switch;
                let rollout = Rollout::new(c);
                if halt {
                    rollout.halt();
                }
                let mut handle = rollout.handle();
                for id in &ids {
                    let decision = rollout.decide(id);
                    let case = format!("{id} at {percent}%, kill {kill_switch}, halt {halt}");
                    assert_eq!(decision.use_async, rollout.should_use_async(id), "{case}");
                    assert_eq!(decision.use_async, handle.should_use_async(id), "{case}");
                    if let Some(bucket) = decision.bucket {
                        assert_eq!(bucket, rollout.bucket(id));
                    }
                }
            }
        }
    }

    #[test]
    fn decide_names_the_rule_that_decided() {
        let mut c = config(50);
        c.force_sync = vec!["both".into(), "deny".into()];
        c.force_async = vec!["both".into(), "allow".into()];
        let rollout = Rollout::new(c);
        let cases: &[(&str, bool, DecisionReason)] = &[
            ("both", false, DecisionReason::ForceSync),
            ("deny", false, DecisionReason::ForceSync),
            ("allow", true, DecisionReason::ForceAsync),
        ];
        for &(id, use_async, reason) in cases {
            let decision = rollout.decide(id);
            assert_eq!(
                decision,
                Decision {
                    use_async,
                    reason,
                    bucket: None
                },
                "{id}"
            );
        }
        let other = rollout.decide("anyone");
        assert_eq!(other.reason, DecisionReason::Bucket);
        assert_eq!(other.bucket, Some(rollout.bucket("anyone")));

        rollout.set_kill_switch(true);
        for id in ["both", "deny", "allow", "anyone"] {
            let decision = rollout.decide(id);
            assert_eq!(decision.reason, DecisionReason::KillSwitch, "{id}");
            assert!(!decision.use_async, "{id}");
        }
    }

    #[test]
    fn decide_reports_the_bucket_at_zero_and_hundred_percent() {
        for (percent, use_async) in [(0, false), (100, true)] {
            let rollout = Rollout::new(config(percent));
            let decision = rollout.decide("id-7");
            assert_eq!(decision.reason, DecisionReason::Bucket);
            assert_eq!(decision.use_async, use_async);
            assert_eq!(decision.bucket, Some(rollout.bucket("id-7")));
        }
    }

    #[test]
    fn a_halt_wins_over_force_async_and_survives_config_changes() {
        let mut c = config(50);
        c.force_async = vec!["allow".into()];
        let rollout = Rollout::new(c.clone());
        assert!(!rollout.halt(), "was not halted");
        assert!(rollout.is_halted());
        let ids = ["allow", "anyone", "upload-1", "upload-2"];
        assert!(ids.iter().all(|id| !rollout.should_use_async(id)));
        assert_eq!(rollout.decide("allow").reason, DecisionReason::Halted);
        assert_eq!(rollout.percent(), Percent::ZERO);

        // A reloaded config (even one at 100%) or a kill-switch change keeps it.
        rollout.store(config(100));
        rollout.update(|c| c.force_async = vec!["allow".into()]);
        rollout.set_kill_switch(false);
        assert!(rollout.is_halted());
        assert_eq!(rollout.percent(), Percent::ZERO);
        assert!(!rollout.should_use_async("allow"));
        let mut handle = rollout.handle();
        assert!(!handle.should_use_async("allow"));

        // Only set_percent lifts it.
        rollout.set_percent(Percent::from_whole(50).unwrap());
        assert!(!rollout.is_halted());
        assert!(rollout.should_use_async("allow"));
        assert!(handle.should_use_async("allow"));
    }

    #[test]
    fn rollout_and_handle_are_thread_safe() {
        fn assert_send_sync<T: Send + Sync>() {}
        fn assert_send<T: Send>() {}
        assert_send_sync::<Rollout>();
        assert_send::<RolloutHandle>();
    }
}
