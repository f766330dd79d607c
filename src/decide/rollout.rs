//! [`Rollout`]: the hot-path decision behind an atomically swappable config.

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::{ArcSwap, Cache};

use crate::decide::bucket::{BUCKETS, BucketHasher, map_to_bucket};
use crate::decide::config::{ConfigError, RolloutConfig};
use crate::decide::overrides::Overrides;
use crate::decide::percent::Percent;

/// Decides, per upload id, whether an upload takes the new async path.
///
/// Holds the compiled [`RolloutConfig`] in an [`ArcSwap`]: a decision is one
/// wait-free load and (for percents strictly between 0 and 100) one
/// SipHash-1-3 of the id; a config change is one atomic pointer swap, and a
/// decision always sees one whole config, never a mix of two. Share it as
/// `Arc<Rollout>`.
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
/// // Rolling back is one atomic store.
/// rollout.set_percent(Percent::ZERO);
/// assert!(!rollout.should_use_async("0f8fad5b-d9cb-469f-a165-70867728950e"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Rollout {
    current: Arc<ArcSwap<Compiled>>,
    /// Unique per instance: the key of the per-thread config caches.
    id: u64,
}

/// The shared config cell and a worker's cached view of it.
type ConfigCache = Cache<Arc<ArcSwap<Compiled>>, Arc<Compiled>>;

/// Instances decided on per thread without evicting each other.
const CACHE_SLOTS: usize = 2;

thread_local! {
    /// Per-thread caches of the configs of the last [`CACHE_SLOTS`] rollouts
    /// this thread decided with, keyed by [`Rollout::id`], most recent first.
    static RECENT: RefCell<[Option<(u64, ConfigCache)>; CACHE_SLOTS]> =
        const { RefCell::new([None, None]) };
}

/// Source of [`Rollout::id`]s.
static NEXT_ROLLOUT_ID: AtomicU64 = AtomicU64::new(0);

/// A config prepared for the hot path: keys derived, lists keyed by the same
/// hash, the threshold resolved. Immutable once built; replaced whole.
struct Compiled {
    config: Arc<RolloutConfig>,
    /// Set by [`Rollout::halt`]: nothing async, force lists included.
    halted: bool,
    hasher: BucketHasher,
    rule: Rule,
    /// `force_sync` and `force_async`.
    overrides: Overrides,
}

/// The percent part of a decision, resolved at compile time so that 0% and
/// 100% never hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rule {
    /// Kill switch on, or the rollout halted: sync, whatever the lists say.
    Killed,
    /// Everyone not forced is sync (0%).
    Nobody,
    /// Everyone not forced is async (100%).
    Everybody,
    /// In iff the bucket is below this many ppm.
    Below(u32),
}

impl Compiled {
    fn new(config: Arc<RolloutConfig>, halted: bool) -> Compiled {
        let hasher = BucketHasher::new(&config.salt);
        Compiled::with_hasher(config, halted, hasher)
    }

    /// Compiles `config` with keys already derived from its salt.
    fn with_hasher(config: Arc<RolloutConfig>, halted: bool, hasher: BucketHasher) -> Compiled {
        let rule = match config.percent.ppm() {
            _ if halted || config.kill_switch => Rule::Killed,
            0 => Rule::Nobody,
            BUCKETS => Rule::Everybody,
            ppm => Rule::Below(ppm),
        };
        Compiled {
            halted,
            hasher,
            rule,
            overrides: Overrides::new(hasher, &config.force_async, &config.force_sync),
            config,
        }
    }

    #[inline]
    fn decide(&self, id: &[u8]) -> bool {
        if self.rule == Rule::Killed {
            return false;
        }
        if !self.overrides.is_empty() {
            return self.decide_listed(id);
        }
        match self.rule {
            Rule::Killed | Rule::Nobody => false,
            Rule::Everybody => true,
            Rule::Below(ppm) => self.hasher.bucket(id) < ppm,
        }
    }

    /// The decision of a config with override lists, not killed: one hash
    /// finds the id in the lists and, if it is not there, buckets it.
    #[inline(never)]
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
        if self.rule == Rule::Killed {
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
        Rollout {
            current: Arc::new(ArcSwap::from_pointee(Compiled::new(
                Arc::new(config),
                false,
            ))),
            // Relaxed: only uniqueness matters, and fetch_add gives it.
            id: NEXT_ROLLOUT_ID.fetch_add(1, Ordering::Relaxed),
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
    /// Lock-free and allocation-free: for percents strictly between 0% and
    /// 100%, one SipHash-1-3 of the id's bytes, plus a check that this
    /// thread's cached config is still the current one (one relaxed pointer
    /// load). While the config holds, an id always gets the same answer; a new
    /// config is seen by the next decision on every thread.
    ///
    /// # The per-thread cache
    ///
    /// Each thread keeps an [`arc_swap::Cache`] of the configs of the last two
    /// `Rollout`s it decided with, keyed by instance. It makes a decision cost
    /// about what a bare hash does instead of adding an [`ArcSwap::load`]
    /// (see the README's figures). Its price: a thread keeps the config it
    /// last saw alive until its next decision with that rollout, until two
    /// other rollouts push it out, or until the thread exits, and a thread
    /// that alternates among three or more rollouts reloads on most decisions.
    /// Decisions made while the thread is being torn down skip the cache and
    /// use a plain load.
    /// [`should_use_async_uncached`](Rollout::should_use_async_uncached) never
    /// caches.
    #[inline]
    #[must_use]
    pub fn should_use_async<K: AsRef<[u8]> + ?Sized>(&self, upload_id: &K) -> bool {
        let id = upload_id.as_ref();
        RECENT
            .try_with(|recent| {
                let mut recent = recent.try_borrow_mut().ok()?;
                Some(self.decide_cached(&mut recent, id))
            })
            .ok()
            .flatten()
            .unwrap_or_else(|| self.should_use_async_uncached(id))
    }

    /// As [`should_use_async`](Rollout::should_use_async), with one
    /// [`ArcSwap::load`] and no per-thread cache: nothing outlives the call.
    #[inline]
    #[must_use]
    pub fn should_use_async_uncached<K: AsRef<[u8]> + ?Sized>(&self, upload_id: &K) -> bool {
        self.current.load().decide(upload_id.as_ref())
    }

    /// Decides through this thread's cache slot for `self`, making one (the
    /// least recently used) if there is none.
    #[inline]
    fn decide_cached(
        &self,
        recent: &mut [Option<(u64, ConfigCache)>; CACHE_SLOTS],
        id: &[u8],
    ) -> bool {
        if let Some((owner, cache)) = &mut recent[0]
            && *owner == self.id
        {
            return cache.load().decide(id);
        }
        self.decide_cold(recent, id)
    }

    /// Slow path of [`decide_cached`](Rollout::decide_cached): a second
    /// instance on this thread, or the first decision.
    #[cold]
    fn decide_cold(
        &self,
        recent: &mut [Option<(u64, ConfigCache)>; CACHE_SLOTS],
        id: &[u8],
    ) -> bool {
        let hit = recent
            .iter()
            .position(|slot| matches!(slot, Some((owner, _)) if *owner == self.id));
        match hit {
            // Move the hit to the front.
            Some(at) => recent[..=at].rotate_right(1),
            // Evict the least recently used slot, then make this one the front.
            None => {
                recent.rotate_right(1);
                recent[0] = Some((self.id, Cache::new(Arc::clone(&self.current))));
            }
        }
        match &mut recent[0] {
            Some((_, cache)) => cache.load().decide(id),
            // Unreachable: the slot was filled just above; answer safely anyway.
            None => self.should_use_async_uncached(id),
        }
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
        self.current.load().hasher.bucket(upload_id.as_ref())
    }

    /// The decision for `upload_id` and the rule that made it: for support
    /// questions, logs and feature-flag adapters, not for the hot path.
    ///
    /// It reads one config, so its answer always equals
    /// [`should_use_async`](Rollout::should_use_async)'s under that config.
    /// Unlike `should_use_async` it hashes the id whenever the bucket decides,
    /// at 0% and 100% too (to report the bucket), and it does not use the
    /// per-thread cache.
    ///
    /// # Examples
    ///
    /// ```
    /// use async_upload_rollout::{DecisionReason, Percent, Rollout, RolloutConfig};
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
        self.current.load().explain(upload_id.as_ref())
    }

    /// Sets the percent, keeping the rest of the config, and lifts a
    /// [`halt`](Rollout::halt); returns the previous percent. Concurrent
    /// changes are not lost (read-copy-update).
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
    /// undo it. Returns whether it was already halted.
    ///
    /// This is how a rolled-back, off, unknown or stale rollout state fails
    /// closed: the sync path still serves every upload.
    ///
    /// ```
    /// use async_upload_rollout::{DecisionReason, Percent, Rollout, RolloutConfig};
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
        let previous = self.current.rcu(|current| {
            let mut config = RolloutConfig::clone(&current.config);
            config.percent = Percent::ZERO;
            Compiled::with_hasher(Arc::new(config), true, current.hasher)
        });
        previous.halted
    }

    /// Whether the rollout is halted ([`halt`](Rollout::halt)).
    #[must_use]
    pub fn is_halted(&self) -> bool {
        self.current.load().halted
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
    /// atomically, retrying if another writer got in first (a
    /// [`halt`](Rollout::halt) stays, and a halted rollout keeps its 0%).
    /// Returns the config that was replaced.
    pub fn update(&self, change: impl FnMut(&mut RolloutConfig)) -> Arc<RolloutConfig> {
        self.swap(None, change)
    }

    /// The one read-copy-update behind every change: applies `change`, then
    /// either sets the percent and lifts a halt (`Some`), or keeps the halt
    /// and, while halted, the 0% (`None`).
    fn swap(
        &self,
        percent: Option<Percent>,
        mut change: impl FnMut(&mut RolloutConfig),
    ) -> Arc<RolloutConfig> {
        let previous = self.current.rcu(|current| {
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

    /// The config in force now.
    #[must_use]
    pub fn config(&self) -> Arc<RolloutConfig> {
        Arc::clone(&self.current.load().config)
    }

    /// The percent in force now.
    #[must_use]
    pub fn percent(&self) -> Percent {
        self.current.load().config.percent
    }

    /// A per-worker decision handle that caches the config (see [`RolloutHandle`]).
    #[must_use]
    pub fn handle(&self) -> RolloutHandle {
        RolloutHandle {
            cache: Cache::new(Arc::clone(&self.current)),
        }
    }
}

impl fmt::Debug for Rollout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let current = self.current.load();
        f.debug_struct("Rollout")
            .field("config", &current.config)
            .field("halted", &current.halted)
            .finish()
    }
}

/// A decision handle for one worker, made by [`Rollout::handle`].
///
/// It keeps the current config in an [`arc_swap::Cache`]: a decision checks
/// one pointer against the shared one and only reloads when the config has
/// changed. It sees a new config at its next decision. The price: a handle
/// keeps the config it last saw alive until its next decision or its drop,
/// and it needs `&mut self`, so it belongs to one worker (it is `Send`, so it
/// can move between threads, but it is not shared).
pub struct RolloutHandle {
    cache: Cache<Arc<ArcSwap<Compiled>>, Arc<Compiled>>,
}

impl RolloutHandle {
    /// As [`Rollout::should_use_async`], through the cached config.
    #[inline]
    #[must_use]
    pub fn should_use_async<K: AsRef<[u8]> + ?Sized>(&mut self, upload_id: &K) -> bool {
        self.cache.load().decide(upload_id.as_ref())
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
            for kill_switch in [false, true] {
                let mut c = listed.clone();
                c.percent = Percent::from_whole(percent).unwrap();
                c.kill_switch = kill_switch;
                let rollout = Rollout::new(c);
                for id in &ids {
                    let decision = rollout.decide(id);
                    assert_eq!(
                        decision.use_async,
                        rollout.should_use_async(id),
                        "{id} at {percent}%, kill switch {kill_switch}"
                    );
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
        assert!(ids.iter().all(|id| !rollout.should_use_async_uncached(id)));
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
