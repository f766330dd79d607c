//! [`EtcdStateStore`]: a fleet's rollout state, config, leader and
//! acknowledgements in etcd.
//!
//! Keys, under one prefix per rollout name (`/async-upload-rollout/<name>/`):
//!
//! | key | value | written by |
//! | --- | --- | --- |
//! | `state` | the [`RolloutState`] (JSON) | the leading controller (fenced), operators, a replica's fuse |
//! | `config` | the [`RolloutConfig`] (JSON): salt, kill switch, id lists | operators (`async-upload-rollout config set`, a replica's `PUT /rollout`: compare-and-swap through [`ConfigStore`]) |
//! | `leader` | the leading controller's id, bound to its lease | [`EtcdStateStore::campaign`] |
//! | `acks/<replica>` | the replica's [`Acknowledgement`] (JSON: epoch, percent, config fingerprint, host, pid, time), bound to its lease | [`StateStore::acknowledge`] |
//! | `epoch` | the largest epoch ever written to `state` (decimal): the high-water mark, written in the same transaction as every state, so deleting `state` cannot send the epoch back | every write of `state` through this store |
//!
//! The store keeps a watch on the prefix from the revision it read (read
//! again and re-watched after a compaction, a broken stream or a silent
//! one), so [`load`](StateStore::load) answers from memory and **never
//! blocks** once etcd has answered once: polling it every few milliseconds
//! costs nothing, and a change wakes the monitor at once
//! ([`StateStore::listen`]).
//!
//! **Contact.** Every 200 ms the watch asks etcd for a progress
//! notification (one request at a time); an answer confirms the cache was
//! current when the request was *sent* ([`StateStore::contact_age`]). A
//! refused, reset, silent or slow connection all show the same way: the
//! confirmed contact ages. After [`CONTACT_TIMEOUT`] without it, `load`
//! fails at once with [`StoreError::Unavailable`]; once it is older than
//! the controller's `stale_after`, the monitor's watchdog closes the
//! rollout (nothing async), even while a call to etcd is blocked.
//!
//! **Acknowledgements** are written by a task of the store, so
//! [`acknowledge`](StateStore::acknowledge) never blocks: it records what
//! the replica applies and returns. The task writes it under the replica's
//! lease, again on every heartbeat, and when the lease is lost (an etcd
//! outage longer than the lease) it revokes the old one, grants a new one
//! and writes the acknowledgement again as soon as etcd answers.
//!
//! **Leadership.** A lost leadership's lease is revoked as soon as etcd
//! answers (a restarted etcd keeps leases and gives them a whole TTL again),
//! and a controller that finds its own id in the leader key on another
//! lease (its own lost one) revokes it and campaigns again: leadership
//! settles within one campaign after etcd answers, never "following"
//! itself.
//!
//! etcd-client is async; the store runs it on a small runtime of its own,
//! so its blocking methods can be called from any thread, inside another
//! async runtime included.
//!
//! One concept in one file of about 1053 lines (170 docs): one StateStore
//! implementation: its keys, compare-and-swap writes and acknowledgements share
//! one client.

mod lease;
mod watch;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak, mpsc};
use std::time::{Duration, Instant, SystemTime};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, KeyValue, PutOptions, Txn, TxnOp,
    TxnOpResponse,
};

use crate::act::config_store::ConfigStore;
use crate::act::state::RolloutState;
use crate::act::store::{
    Acknowledgement, Applied, Revision, Salvaged, StateStore, StoreError, Stored,
};
use crate::decide::config::RolloutConfig;

mod connect;

pub use connect::EtcdStateStoreBuilder;
use connect::Security;

/// The default rollout name (`--name`).
pub const DEFAULT_ROLLOUT_NAME: &str = "async-upload";

/// How long one etcd call may take before it counts as failed.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the store may go without confirmed contact with etcd (see the
/// [module docs](self)) before [`load`](StateStore::load) reports it
/// unavailable instead of answering from its cache.
pub const CONTACT_TIMEOUT: Duration = Duration::from_secs(3);

/// The lease TTL of replicas' acknowledgements and of a controller's
/// leadership, in seconds: a dead process's key is gone within it.
pub const DEFAULT_LEASE_TTL: i64 = 5;

/// The key prefix of rollout `name`.
#[must_use]
pub fn key_prefix(name: &str) -> String {
    format!("/async-upload-rollout/{name}/")
}

/// What the watch knows.
#[derive(Debug, Default)]
struct Cache {
    state: Option<Stored>,
    config: Option<RolloutConfig>,
    /// The problem with the stored config, if it does not parse.
    config_error: Option<String>,
    /// The problem with the stored state, if it does not parse.
    state_error: Option<String>,
    /// The high-water mark: the `epoch` key's value (0 when it is absent),
    /// and its mod revision (0 when absent), which every state write
    /// compares.
    high_water: u64,
    high_water_revision: i64,
    /// The confirmed contact: the send time of the latest request (a read,
    /// a progress request on the watch) whose answer has arrived.
    contact: Option<Instant>,
    /// The etcd revision the cached state is as of: a read, watch event or
    /// own write older than it does not replace it (a write of this store
    /// shows in its next `load` even before the watch delivers it).
    state_as_of: i64,
    /// The same for the cached config.
    config_as_of: i64,
    /// The same for the cached high-water mark.
    high_water_as_of: i64,
}

/// What the store's background tasks share with it (no runtime: a task
/// must never drop the runtime it runs on).
struct Inner {
    endpoints: Vec<String>,
    name: String,
    prefix: String,
    replica: String,
    handle: tokio::runtime::Handle,
    client: Mutex<Option<Client>>,
    /// TLS and the user, added to every connection's options.
    security: Security,
    cache: Mutex<Cache>,
    /// The leadership fencing this store's writes, if any.
    fence: Mutex<Option<Fence>>,
    closed: AtomicBool,
    /// When the store was made (its contact's age before etcd first answers).
    created: Instant,
    /// Who is woken when the state or config changes.
    listeners: Mutex<Vec<Weak<dyn Fn() + Send + Sync>>>,
    /// What the acknowledgement task writes, and its wake-up.
    acks: Mutex<lease::Acks>,
    ack_wake: tokio::sync::Notify,
    /// The lease of the leadership held now (0: none).
    leading: AtomicI64,
}

/// A controller's leadership, as the fence of its writes.
#[derive(Clone, Debug)]
struct Fence {
    /// The leader key's create revision while this controller leads.
    revision: i64,
    lost: Arc<AtomicBool>,
}

/// The rollout's state in etcd. Cheap to clone (two `Arc`s); see the
/// [module docs](self) for the keys.
#[derive(Clone)]
pub struct EtcdStateStore {
    inner: Arc<Inner>,
    _runtime: Arc<RuntimeGuard>,
}

/// Owns the store's runtime: when the last handle goes, the background
/// tasks stop and the runtime shuts down without blocking.
struct RuntimeGuard {
    runtime: Option<tokio::runtime::Runtime>,
    inner: Arc<Inner>,
}

impl Drop for RuntimeGuard {
    fn drop(&mut self) {
        self.inner.closed.store(true, Ordering::Release);
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A controller's leadership of a rollout, from [`EtcdStateStore::campaign`].
///
/// While it is held, every write through the store is fenced on it: a
/// transaction that succeeds only while this controller still holds the
/// leader key. Its lease is kept alive in the background; when a keep-alive
/// fails or etcd reports the lease gone, [`is_lost`](Leadership::is_lost)
/// turns true (and writes already fail). Dropping it revokes the lease (in
/// the background, tried again until etcd answers), so another controller
/// can take over at once.
#[must_use = "dropping the leadership resigns it"]
pub struct Leadership {
    store: EtcdStateStore,
    lease: i64,
    lost: Arc<AtomicBool>,
}

impl Leadership {
    /// Whether the leadership has been lost (the lease expired or could not
    /// be kept alive). A controller that sees it stops acting at once.
    #[must_use]
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.lost.store(true, Ordering::Release);
        *lock(&self.store.inner.fence) = None;
        let _ = self.store.inner.leading.compare_exchange(
            self.lease,
            0,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        self.store.inner.revoke_later(self.lease);
    }
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership")
            .field("lease", &self.lease)
            .field("lost", &self.is_lost())
            .finish()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data replaced whole: a panic elsewhere cannot leave it torn.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One try at the leader key (`try_lead`).
struct LeadAttempt {
    /// Whether the key was absent and is now this controller's.
    won: bool,
    /// The revision of the answer.
    revision: i64,
    /// Else who holds it: its value (a controller's id) and its lease.
    holder: Option<(String, i64)>,
}

impl EtcdStateStore {
    /// A store for rollout `name` on the etcd cluster at `endpoints`
    /// (`http://127.0.0.1:2379`), identifying this process as `replica` in
    /// acknowledgements. Connects lazily and starts the watch; an etcd that
    /// is down now is not an error here (calls fail until it answers). For
    /// TLS, a client certificate or an etcd user, use
    /// [`builder`](EtcdStateStore::builder) (`https://` endpoints work here
    /// too, trusting the system's roots).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when no endpoint is given or the runtime
    /// cannot start.
    pub fn connect(
        endpoints: &[String],
        name: &str,
        replica: &str,
    ) -> Result<EtcdStateStore, StoreError> {
        EtcdStateStore::builder(endpoints, name, replica)
            .connect()
            .map_err(connect::into_store_error)
    }

    /// Starts the store (see [`EtcdStateStoreBuilder::connect`]).
    fn start(
        endpoints: &[String],
        name: &str,
        replica: &str,
        security: Security,
    ) -> Result<EtcdStateStore, StoreError> {
        let describe = format!("etcd {} rollout {name}", endpoints.join(","));
        let unavailable = |message: String| StoreError::Unavailable {
            store: describe.clone(),
            message,
        };
        if endpoints.is_empty() {
            return Err(unavailable("no etcd endpoint given".into()));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("rollout-etcd")
            .enable_all()
            .build()
            .map_err(|e| unavailable(format!("cannot start the etcd runtime: {e}")))?;
        let inner = Arc::new(Inner {
            endpoints: endpoints.to_vec(),
            name: name.to_owned(),
            prefix: key_prefix(name),
            replica: replica.to_owned(),
            handle: runtime.handle().clone(),
            client: Mutex::new(None),
            security,
            cache: Mutex::new(Cache::default()),
            fence: Mutex::new(None),
            closed: AtomicBool::new(false),
            created: Instant::now(),
            listeners: Mutex::new(Vec::new()),
            acks: Mutex::new(lease::Acks::default()),
            ack_wake: tokio::sync::Notify::new(),
            leading: AtomicI64::new(0),
        });
        let watcher = Arc::clone(&inner);
        runtime.spawn(async move { watcher.watch_loop().await });
        Ok(EtcdStateStore {
            _runtime: Arc::new(RuntimeGuard {
                runtime: Some(runtime),
                inner: Arc::clone(&inner),
            }),
            inner,
        })
    }

    /// The rollout name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// This process's id in acknowledgements and leadership.
    #[must_use]
    pub fn replica(&self) -> &str {
        &self.inner.replica
    }

    fn key(&self, suffix: &str) -> String {
        self.inner.key(suffix)
    }

    /// A call that failed: the store is named without a key (a call may be
    /// about the leader key, a lease or an acknowledgement).
    fn unavailable(&self, message: impl std::fmt::Display) -> StoreError {
        StoreError::Unavailable {
            store: format!(
                "etcd {} rollout {}",
                self.inner.endpoints.join(","),
                self.inner.name
            ),
            message: message.to_string(),
        }
    }

    fn corrupt(&self, message: String) -> StoreError {
        StoreError::Corrupt {
            store: self.describe(),
            message,
        }
    }
}

impl Inner {
    fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    /// The client, connected on first use.
    async fn client(&self) -> Result<Client, etcd_client::Error> {
        let inner = self;
        if let Some(client) = lock(&inner.client).clone() {
            return Ok(client);
        }
        let options = ConnectOptions::new()
            .with_connect_timeout(CALL_TIMEOUT)
            .with_timeout(CALL_TIMEOUT)
            .with_keep_alive(Duration::from_secs(1), CALL_TIMEOUT);
        let client = Client::connect(&inner.endpoints, Some(inner.security.apply(options))).await?;
        *lock(&inner.client) = Some(client.clone());
        Ok(client)
    }
}

impl EtcdStateStore {
    /// Runs `call` with a client on the store's runtime and waits for it, at
    /// most [`CALL_TIMEOUT`] (plus the connection).
    fn call<T, F, Fut>(&self, call: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Client) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, etcd_client::Error>> + Send,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        let inner = Arc::clone(&self.inner);
        self.inner.handle.spawn(async move {
            let result = tokio::time::timeout(CALL_TIMEOUT * 2, async {
                let client = inner.client().await?;
                call(client).await
            })
            .await;
            let _ = tx.send(result);
        });
        match rx.recv_timeout(CALL_TIMEOUT * 2 + Duration::from_millis(500)) {
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(err))) => Err(self.unavailable(self.inner.security.explain(&err))),
            Ok(Err(_)) | Err(_) => Err(self.unavailable(format!(
                "no answer within {}",
                humantime::format_duration(CALL_TIMEOUT * 2)
            ))),
        }
    }

    /// Reads etcd once, blocking, when it has never answered yet (a command
    /// line's first call); afterwards the watch keeps the cache and nothing
    /// here blocks.
    fn ensure_read(&self) -> Result<(), StoreError> {
        if lock(&self.inner.cache).contact.is_some() {
            return Ok(());
        }
        let inner = Arc::clone(&self.inner);
        self.call(move |mut client| async move { inner.read_all(&mut client).await.map(|_| ()) })
    }

    /// How long ago etcd last confirmed the cache was current (since the
    /// store was made, when it never did).
    fn contact(&self, cache: &Cache) -> Duration {
        cache
            .contact
            .map_or_else(|| self.inner.created.elapsed(), |at| at.elapsed())
    }

    /// [`StoreError::Unavailable`] when the cache is not confirmed current
    /// within [`CONTACT_TIMEOUT`] (the message does not change while that
    /// lasts, so it is reported once).
    fn check_contact(&self, cache: &Cache, store: String) -> Result<(), StoreError> {
        if self.contact(cache) <= CONTACT_TIMEOUT {
            return Ok(());
        }
        Err(StoreError::Unavailable {
            store,
            message: format!(
                "no confirmed contact with etcd for more than {}: it refuses, resets, or does not answer",
                humantime::format_duration(CONTACT_TIMEOUT)
            ),
        })
    }

    /// Publishes `config` as the fleet's config (its percent is ignored:
    /// the state decides).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when etcd cannot be written.
    pub fn put_config(&self, config: &RolloutConfig) -> Result<(), StoreError> {
        self.replace_config(config).map(|_| ())
    }

    /// Campaigns for the leadership of the rollout as `controller`: returns
    /// once this controller leads, or `Ok(None)` when another one leads now
    /// (call again to retry). The leader key is bound to a lease of `ttl`
    /// seconds kept alive in the background; from now on every write
    /// through this store is fenced on it.
    ///
    /// A leader key that holds this controller's own id on a lease it does
    /// not hold now (its own leadership, lost while etcd was away, which a
    /// restarted etcd keeps for a whole TTL) is revoked, and the campaign
    /// tried again at once.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when etcd cannot be reached.
    pub fn campaign(&self, ttl: i64) -> Result<Option<Leadership>, StoreError> {
        let lease = self.call(move |mut client| async move {
            client.lease_grant(ttl, None).await.map(|r| r.id())
        })?;
        let mut revision = None;
        for _ in 0..2 {
            let attempt = match self.try_lead(lease) {
                Ok(attempt) => attempt,
                Err(err) => {
                    self.inner.revoke_later(lease);
                    return Err(err);
                }
            };
            if attempt.won {
                revision = Some(attempt.revision);
                break;
            }
            // Its own key on a lease it does not lead with: a leadership it
            // lost. Revoke it (its keys go at once) and try again.
            match attempt.holder {
                Some((id, old))
                    if id == self.inner.replica
                        && old != 0
                        && old != self.inner.leading.load(Ordering::Acquire) =>
                {
                    let _ = self.call(move |mut client| async move {
                        client.lease_revoke(old).await.map(|_| ())
                    });
                }
                _ => break,
            }
        }
        let Some(revision) = revision else {
            self.inner.revoke_later(lease);
            return Ok(None);
        };
        let lost = Arc::new(AtomicBool::new(false));
        *lock(&self.inner.fence) = Some(Fence {
            revision,
            lost: Arc::clone(&lost),
        });
        self.inner.leading.store(lease, Ordering::Release);
        self.inner.keep_alive(lease, ttl, Arc::clone(&lost));
        Ok(Some(Leadership {
            store: self.clone(),
            lease,
            lost,
        }))
    }

    /// Puts the leader key on `lease` if it is absent.
    fn try_lead(&self, lease: i64) -> Result<LeadAttempt, StoreError> {
        let key = self.key("leader");
        let me = self.inner.replica.clone();
        self.call(move |mut client| async move {
            let txn = Txn::new()
                .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(
                    key.clone(),
                    me,
                    Some(PutOptions::new().with_lease(lease)),
                )])
                .or_else([TxnOp::get(key.clone(), None)]);
            let response = client.txn(txn).await?;
            let revision = response.header().map_or(0, |h| h.revision());
            let holder = response.op_responses().into_iter().find_map(|op| match op {
                TxnOpResponse::Get(get) => get
                    .kvs()
                    .first()
                    .map(|kv| (String::from_utf8_lossy(kv.value()).into_owned(), kv.lease())),
                _ => None,
            });
            Ok(LeadAttempt {
                won: response.succeeded(),
                revision,
                holder,
            })
        })
    }

    /// Who leads the rollout now, if anyone.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when etcd cannot be read.
    pub fn leader(&self) -> Result<Option<String>, StoreError> {
        let key = self.key("leader");
        let kvs = self.call(move |mut client| async move {
            client.get(key, None).await.map(|mut r| r.take_kvs())
        })?;
        Ok(kvs
            .first()
            .map(|kv| String::from_utf8_lossy(kv.value()).into_owned()))
    }

    /// The state key and the high-water key, read together.
    fn read_state_and_epoch(&self) -> Result<(Option<KeyValue>, Option<KeyValue>), StoreError> {
        let (state, epoch) = (self.key("state"), self.key("epoch"));
        self.call(move |mut client| async move {
            let txn = Txn::new().and_then([TxnOp::get(state, None), TxnOp::get(epoch, None)]);
            let response = client.txn(txn).await?;
            let mut found = response.op_responses().into_iter().map(|op| match op {
                TxnOpResponse::Get(mut get) => get.take_kvs().into_iter().next(),
                _ => None,
            });
            Ok((found.next().flatten(), found.next().flatten()))
        })
    }

    /// The fence of this store's writes, or `Fenced` when its leadership is
    /// lost.
    fn fence(&self) -> Result<Option<Fence>, StoreError> {
        let fence = lock(&self.inner.fence).clone();
        if fence
            .as_ref()
            .is_some_and(|f| f.lost.load(Ordering::Acquire))
        {
            return Err(StoreError::Fenced {
                store: self.describe(),
                message: "the leadership lease is lost".into(),
            });
        }
        Ok(fence)
    }
}

/// The high-water mark in the `epoch` key's value (the largest number in
/// it, 0 when none: a key written by hand is not believed beyond that).
fn parse_high_water(value: &[u8]) -> u64 {
    value
        .split(|b| !b.is_ascii_digit())
        .filter_map(|digits| std::str::from_utf8(digits).ok()?.parse::<u64>().ok())
        .max()
        .unwrap_or(0)
}

fn parse_state(value: &[u8]) -> Result<RolloutState, String> {
    let state: RolloutState = serde_json::from_slice(value).map_err(|e| e.to_string())?;
    state.validate_shape().map_err(|e| e.to_string())?;
    Ok(state)
}

impl StateStore for EtcdStateStore {
    /// From the cache the watch keeps: never blocks once etcd has answered
    /// (the first call of a process reads etcd directly).
    fn load(&self) -> Result<Option<Stored>, StoreError> {
        self.ensure_read()?;
        let cache = lock(&self.inner.cache);
        self.check_contact(&cache, self.describe())?;
        match &cache.state_error {
            Some(message) => Err(self.corrupt(message.clone())),
            None => Ok(cache.state.clone()),
        }
    }

    /// A transaction: the state is at `expected`, the high-water key is as
    /// the cache last saw it (and below `state`'s epoch), and, while this
    /// store leads, the leader key is still its own; then the state and the
    /// high-water mark are written together.
    fn compare_and_swap(
        &self,
        expected: Option<Revision>,
        state: &RolloutState,
    ) -> Result<Revision, StoreError> {
        let fence = self.fence()?;
        self.ensure_read()?;
        let value = serde_json::to_vec(state).map_err(|e| self.corrupt(e.to_string()))?;
        let (high_water, high_water_revision, cached) = {
            let cache = lock(&self.inner.cache);
            (
                cache.high_water,
                cache.high_water_revision,
                cache.state.as_ref().map(|s| s.revision),
            )
        };
        if state.epoch <= high_water {
            // Epochs never go back: decide again above the mark.
            return Err(StoreError::Conflict {
                store: self.describe(),
                expected,
                found: cached,
            });
        }
        let key = self.key("state");
        let leader_key = self.key("leader");
        let epoch_key = self.key("epoch");
        let epoch = state.epoch.to_string();
        let expected_revision = expected.map_or(0, |r| i64::try_from(r.0).unwrap_or(i64::MAX));
        let fence_revision = fence.as_ref().map(|f| f.revision);
        // The mark in this store's cache can be older than etcd's (another
        // store wrote since and its watch event is on the way): then the
        // transaction fails on the mark alone, with the state as expected.
        // One more try against the mark etcd answered with, if this epoch
        // is still above it; any other failure is a real conflict.
        let mut high_water_revision = high_water_revision;
        let mut attempts = 0;
        let (succeeded, revision, found, leader, mark) = loop {
            attempts += 1;
            let (key, leader_key, epoch_key) = (key.clone(), leader_key.clone(), epoch_key.clone());
            let (value, epoch) = (value.clone(), epoch.clone());
            let outcome = self.call(move |mut client| async move {
                let mut compares = vec![
                    Compare::mod_revision(key.clone(), CompareOp::Equal, expected_revision),
                    Compare::mod_revision(epoch_key.clone(), CompareOp::Equal, high_water_revision),
                ];
                if let Some(fence) = fence_revision {
                    compares.push(Compare::create_revision(
                        leader_key.clone(),
                        CompareOp::Equal,
                        fence,
                    ));
                }
                let txn = Txn::new()
                    .when(compares)
                    .and_then([
                        TxnOp::put(key.clone(), value, None),
                        TxnOp::put(epoch_key.clone(), epoch, None),
                    ])
                    .or_else([
                        TxnOp::get(key.clone(), None),
                        TxnOp::get(leader_key, None),
                        TxnOp::get(epoch_key, None),
                    ]);
                let response = client.txn(txn).await?;
                let revision = response.header().map_or(0, |h| h.revision());
                let (mut found, mut leader, mut mark) = (None, None, None);
                if !response.succeeded() {
                    for (i, op) in response.op_responses().into_iter().enumerate() {
                        if let TxnOpResponse::Get(get) = op {
                            let kv = get.kvs().first();
                            match i {
                                0 => found = kv.map(KeyValue::mod_revision),
                                1 => leader = kv.map(KeyValue::create_revision),
                                _ => {
                                    mark = Some(kv.map_or((0, 0, revision), |kv| {
                                        (parse_high_water(kv.value()), kv.mod_revision(), revision)
                                    }));
                                }
                            }
                        }
                    }
                }
                Ok((response.succeeded(), revision, found, leader, mark))
            })?;
            let (succeeded, _, found, leader, mark) = &outcome;
            if !succeeded
                && attempts < 2
                && found.unwrap_or(0) == expected_revision
                && fence_revision.is_none_or(|fence| *leader == Some(fence))
                && let Some((mark, mark_revision, _)) = *mark
                && state.epoch > mark
                && mark_revision != high_water_revision
            {
                high_water_revision = mark_revision;
                continue;
            }
            break outcome;
        };
        if succeeded {
            let mut cache = lock(&self.inner.cache);
            if revision > cache.state_as_of {
                cache.state = Some(Stored {
                    state: state.clone(),
                    revision: Revision(u64::try_from(revision).unwrap_or(0)),
                });
                cache.state_error = None;
                cache.state_as_of = revision;
            }
            if revision > cache.high_water_as_of {
                cache.high_water = state.epoch;
                cache.high_water_revision = revision;
                cache.high_water_as_of = revision;
            }
            return Ok(Revision(u64::try_from(revision).unwrap_or(0)));
        }
        // The mark as etcd holds it now, for the next attempt.
        if let Some((value, mod_revision, as_of)) = mark {
            let mut cache = lock(&self.inner.cache);
            if as_of > cache.high_water_as_of {
                cache.high_water = value;
                cache.high_water_revision = mod_revision;
                cache.high_water_as_of = as_of;
            }
        }
        if let Some(fence_revision) = fence_revision
            && leader != Some(fence_revision)
        {
            if let Some(fence) = &fence {
                fence.lost.store(true, Ordering::Release);
            }
            let fence = fence_revision;
            return Err(StoreError::Fenced {
                store: self.describe(),
                message: format!(
                    "the leader key is {} (this controller's was created at revision {fence})",
                    leader.map_or_else(|| "gone".to_owned(), |r| format!("from revision {r}"))
                ),
            });
        }
        Err(StoreError::Conflict {
            store: self.describe(),
            expected,
            found: found.map(|r| Revision(u64::try_from(r).unwrap_or(0))),
        })
    }

    fn describe(&self) -> String {
        format!(
            "etcd {} rollout {} (key {}state)",
            self.inner.endpoints.join(","),
            self.inner.name,
            self.inner.prefix
        )
    }

    fn replace_unreadable(
        &self,
        build: &mut dyn FnMut(&Salvaged) -> RolloutState,
    ) -> Result<Stored, StoreError> {
        let (found, mark) = self.read_state_and_epoch()?;
        let conflict = |found| StoreError::Conflict {
            store: self.describe(),
            expected: None,
            found,
        };
        let Some(kv) = found else {
            return Err(conflict(None));
        };
        let mod_revision = kv.mod_revision();
        let problem = match parse_state(kv.value()) {
            Ok(_) => {
                return Err(conflict(Some(Revision(
                    u64::try_from(mod_revision).unwrap_or(0),
                ))));
            }
            Err(problem) => problem,
        };
        let (high_water, high_water_revision) = mark.as_ref().map_or((0, 0), |kv| {
            (parse_high_water(kv.value()), kv.mod_revision())
        });
        let mut salvaged = Salvaged::scan(kv.value(), problem);
        if high_water > 0 {
            salvaged.epoch = Some(salvaged.epoch.unwrap_or(0).max(high_water));
        }
        let state = build(&salvaged);
        state
            .validate_shape()
            .map_err(|err| self.corrupt(format!("refusing to write an invalid state: {err}")))?;
        if state.epoch <= high_water {
            return Err(conflict(None));
        }
        let value = serde_json::to_vec(&state).map_err(|e| self.corrupt(e.to_string()))?;
        let fence = self.fence()?;
        let key = self.key("state");
        let leader_key = self.key("leader");
        let epoch_key = self.key("epoch");
        let epoch = state.epoch.to_string();
        let fence_revision = fence.as_ref().map(|f| f.revision);
        let (succeeded, revision) = self.call(move |mut client| async move {
            let mut compares = vec![
                Compare::mod_revision(key.clone(), CompareOp::Equal, mod_revision),
                Compare::mod_revision(epoch_key.clone(), CompareOp::Equal, high_water_revision),
            ];
            if let Some(fence) = fence_revision {
                compares.push(Compare::create_revision(
                    leader_key,
                    CompareOp::Equal,
                    fence,
                ));
            }
            let txn = Txn::new().when(compares).and_then([
                TxnOp::put(key, value, None),
                TxnOp::put(epoch_key, epoch, None),
            ]);
            let response = client.txn(txn).await?;
            let revision = response.header().map_or(0, |h| h.revision());
            Ok((response.succeeded(), revision))
        })?;
        if !succeeded {
            return Err(conflict(None));
        }
        let stored = Stored {
            state,
            revision: Revision(u64::try_from(revision).unwrap_or(0)),
        };
        let mut cache = lock(&self.inner.cache);
        if revision > cache.state_as_of {
            cache.state = Some(stored.clone());
            cache.state_error = None;
            cache.state_as_of = revision;
        }
        if revision > cache.high_water_as_of {
            cache.high_water = stored.state.epoch;
            cache.high_water_revision = revision;
            cache.high_water_as_of = revision;
        }
        Ok(stored)
    }

    fn load_config(&self) -> Result<Option<RolloutConfig>, StoreError> {
        self.ensure_read()?;
        let cache = lock(&self.inner.cache);
        self.check_contact(&cache, self.describe_config())?;
        match &cache.config_error {
            Some(message) => Err(StoreError::Corrupt {
                store: self.describe_config(),
                message: message.clone(),
            }),
            None => Ok(cache.config.clone()),
        }
    }

    /// Records what this replica applies and returns at once: a task of the
    /// store writes it (see the [module docs](self)), so this never blocks
    /// and never fails.
    fn acknowledge(&self, applied: &Applied) -> Result<(), StoreError> {
        self.inner.queue_ack(applied);
        Ok(())
    }

    fn acknowledgements(&self) -> Result<Option<Vec<Acknowledgement>>, StoreError> {
        self.list_acks().map(Some)
    }

    fn withdraw(&self) -> Result<(), StoreError> {
        self.inner.stop_acks();
        self.inner.ack_wake.notify_one();
        let key = self.key(&format!("acks/{}", self.inner.replica));
        self.call(move |mut client| async move { client.delete(key, None).await.map(|_| ()) })
    }

    fn high_water(&self) -> Result<u64, StoreError> {
        self.ensure_read()?;
        let cache = lock(&self.inner.cache);
        self.check_contact(&cache, self.describe())?;
        Ok(cache
            .high_water
            .max(cache.state.as_ref().map_or(0, |s| s.state.epoch)))
    }

    fn contact_age(&self) -> Option<Duration> {
        Some(self.contact(&lock(&self.inner.cache)))
    }

    fn listen(&self, listener: Weak<dyn Fn() + Send + Sync>) {
        lock(&self.inner.listeners).push(listener);
    }
}

impl EtcdStateStore {
    /// The replicas' acknowledgements as stored: every key under `acks/`
    /// (a dead replica's is gone with its lease).
    fn list_acks(&self) -> Result<Vec<Acknowledgement>, StoreError> {
        let prefix = self.key("acks/");
        let keys = prefix.clone();
        let kvs = self.call(move |mut client| async move {
            client
                .get(keys, Some(GetOptions::new().with_prefix()))
                .await
                .map(|mut r| r.take_kvs())
        })?;
        let mut acks = Vec::with_capacity(kvs.len());
        for kv in kvs {
            let replica = String::from_utf8_lossy(&kv.key()[prefix.len()..]).into_owned();
            // The service is the key's; older replicas wrote only the epoch
            // and the time.
            let parsed = serde_json::from_slice::<serde_json::Value>(kv.value())
                .map_err(|e| e.to_string())
                .and_then(|mut value| {
                    if let Some(object) = value.as_object_mut() {
                        object.insert("service".into(), replica.clone().into());
                    }
                    serde_json::from_value::<Acknowledgement>(value).map_err(|e| e.to_string())
                });
            acks.push(parsed.unwrap_or_else(|err| {
                let mut applied = Applied::new(0, crate::decide::Percent::ZERO);
                applied.state_error = Some(format!("unreadable acknowledgement: {err}"));
                let mut ack =
                    Acknowledgement::of_this_process(&replica, applied, SystemTime::UNIX_EPOCH);
                ack.host = String::new();
                ack.pid = 0;
                ack
            }));
        }
        acks.sort_by(|a, b| a.service.cmp(&b.service));
        Ok(acks)
    }
}

impl EtcdStateStore {
    /// Takes an own write of the config at `revision` into the cache, so the
    /// next `load_config` sees it before the watch delivers it.
    fn cached_config(&self, config: &RolloutConfig, revision: i64) {
        let mut cache = lock(&self.inner.cache);
        if revision > cache.config_as_of {
            cache.config = Some(config.clone());
            cache.config_error = None;
            cache.config_as_of = revision;
        }
    }
}

impl ConfigStore for EtcdStateStore {
    fn load_config_revision(&self) -> Result<Option<(RolloutConfig, Revision)>, StoreError> {
        let key = self.key("config");
        let found = self.call(move |mut client| async move {
            client
                .get(key, None)
                .await
                .map(|mut r| r.take_kvs().into_iter().next())
        })?;
        let Some(kv) = found else {
            return Ok(None);
        };
        let config = serde_json::from_slice::<RolloutConfig>(kv.value()).map_err(|err| {
            StoreError::Corrupt {
                store: self.describe_config(),
                message: format!("not a rollout config: {err}"),
            }
        })?;
        let revision = Revision(u64::try_from(kv.mod_revision()).unwrap_or(0));
        Ok(Some((config, revision)))
    }

    fn compare_and_swap_config(
        &self,
        expected: Option<Revision>,
        config: &RolloutConfig,
    ) -> Result<Revision, StoreError> {
        let key = self.key("config");
        let value = serde_json::to_vec(config).map_err(|e| self.corrupt(e.to_string()))?;
        let expected_revision = expected.map_or(0, |r| i64::try_from(r.0).unwrap_or(i64::MAX));
        let (succeeded, revision, found) = self.call(move |mut client| async move {
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    key.clone(),
                    CompareOp::Equal,
                    expected_revision,
                )])
                .and_then([TxnOp::put(key.clone(), value, None)])
                .or_else([TxnOp::get(key, None)]);
            let response = client.txn(txn).await?;
            let revision = response.header().map_or(0, |h| h.revision());
            let found = response.op_responses().into_iter().find_map(|op| match op {
                TxnOpResponse::Get(get) => get.kvs().first().map(|kv| kv.mod_revision()),
                _ => None,
            });
            Ok((response.succeeded(), revision, found))
        })?;
        if succeeded {
            self.cached_config(config, revision);
            return Ok(Revision(u64::try_from(revision).unwrap_or(0)));
        }
        Err(StoreError::Conflict {
            store: self.describe_config(),
            expected,
            found: found.map(|r| Revision(u64::try_from(r).unwrap_or(0))),
        })
    }

    fn replace_config(&self, config: &RolloutConfig) -> Result<Revision, StoreError> {
        let key = self.key("config");
        let value = serde_json::to_vec(config).map_err(|e| self.corrupt(e.to_string()))?;
        let revision = self.call(move |mut client| async move {
            client
                .put(key, value, None)
                .await
                .map(|r| r.header().map_or(0, |h| h.revision()))
        })?;
        self.cached_config(config, revision);
        Ok(Revision(u64::try_from(revision).unwrap_or(0)))
    }

    fn describe_config(&self) -> String {
        format!(
            "etcd {} rollout {} (key {}config)",
            self.inner.endpoints.join(","),
            self.inner.name,
            self.inner.prefix
        )
    }
}

impl std::fmt::Debug for EtcdStateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStateStore")
            .field("endpoints", &self.inner.endpoints)
            .field("name", &self.inner.name)
            .field("replica", &self.inner.replica)
            .finish_non_exhaustive()
    }
}
