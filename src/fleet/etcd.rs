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
//!
//! The store keeps a watch on the prefix from the revision it read (read
//! again and re-watched after a compaction or a broken stream), so
//! [`load`](StateStore::load) answers from memory while the watch is live
//! and polling it every few milliseconds costs nothing. When the watch has
//! not heard from etcd for [`CONTACT_TIMEOUT`], `load` asks etcd directly
//! and fails with [`StoreError::Unavailable`] if it cannot: the controller
//! then keeps the last state for `stale_after` and fails closed.
//!
//! etcd-client is async; the store runs it on a small runtime of its own,
//! so its blocking methods can be called from any thread, inside another
//! async runtime included.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, mpsc};
use std::time::{Duration, Instant, SystemTime};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, PutOptions, Txn, TxnOp,
    TxnOpResponse, WatchOptions,
};

use crate::act::config_store::ConfigStore;
use crate::act::state::RolloutState;
use crate::act::store::{
    Acknowledgement, Applied, Revision, Salvaged, StateStore, StoreError, Stored,
};
use crate::act::trace::{self, Severity};
use crate::decide::config::RolloutConfig;

mod connect;

pub use connect::EtcdStateStoreBuilder;
use connect::Security;

/// The default rollout name (`--name`).
pub const DEFAULT_ROLLOUT_NAME: &str = "async-upload";

/// How long one etcd call may take before it counts as failed.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the watch may go without hearing from etcd before `load` asks
/// etcd directly.
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
    /// Whether a watch stream is open and has answered.
    watching: bool,
    /// When etcd last answered (a read, a watch event or progress).
    contact: Option<Instant>,
    /// The etcd revision the cached state is as of: a read, watch event or
    /// own write older than it does not replace it (a write of this store
    /// shows in its next `load` even before the watch delivers it).
    state_as_of: i64,
    /// The same for the cached config.
    config_as_of: i64,
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
    /// The replica's lease for acknowledgements (0: none yet).
    ack_lease: AtomicI64,
    /// The leadership fencing this store's writes, if any.
    fence: Mutex<Option<Fence>>,
    closed: AtomicBool,
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
/// turns true (and writes already fail). Dropping it revokes the lease, so
/// another controller can take over at once.
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
        let lease = self.lease;
        let _ = self
            .store
            .call(move |mut client| async move { client.lease_revoke(lease).await.map(|_| ()) });
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
            ack_lease: AtomicI64::new(0),
            fence: Mutex::new(None),
            closed: AtomicBool::new(false),
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

    fn unavailable(&self, message: impl std::fmt::Display) -> StoreError {
        StoreError::Unavailable {
            store: self.describe(),
            message: message.to_string(),
        }
    }

    fn corrupt(&self, message: String) -> StoreError {
        StoreError::Corrupt {
            store: self.describe(),
            message,
        }
    }

    /// The client, connected on first use.
    async fn client(inner: &Inner) -> Result<Client, etcd_client::Error> {
        inner.client().await
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

    /// Reads the state and config keys into the cache; returns the
    /// revision read at.
    async fn read_all(&self, client: &mut Client) -> Result<i64, etcd_client::Error> {
        let response = client
            .get(self.prefix.clone(), Some(GetOptions::new().with_prefix()))
            .await?;
        let revision = response.header().map_or(0, |h| h.revision());
        let (state_key, config_key) = (self.key("state"), self.key("config"));
        let mut cache = lock(&self.cache);
        // A read older than what the cache holds (an own write that
        // finished while it was under way) leaves the state alone.
        let state_current = revision >= cache.state_as_of;
        if state_current {
            cache.state = None;
            cache.state_error = None;
            cache.state_as_of = revision;
        }
        let config_current = revision >= cache.config_as_of;
        if config_current {
            cache.config = None;
            cache.config_error = None;
            cache.config_as_of = revision;
        }
        for kv in response.kvs() {
            if kv.key() == state_key.as_bytes() {
                if state_current {
                    self.cache_state(&mut cache, kv.value(), kv.mod_revision());
                }
            } else if kv.key() == config_key.as_bytes() && config_current {
                self.cache_config(&mut cache, kv.value());
            }
        }
        cache.contact = Some(Instant::now());
        Ok(revision)
    }

    fn cache_state(&self, cache: &mut Cache, value: &[u8], mod_revision: i64) {
        match parse_state(value) {
            Ok(state) => {
                cache.state = Some(Stored {
                    state,
                    revision: Revision(u64::try_from(mod_revision).unwrap_or(0)),
                });
                cache.state_error = None;
            }
            Err(message) => {
                cache.state = None;
                cache.state_error = Some(format!("{}state: {message}", self.prefix));
            }
        }
    }

    fn cache_config(&self, cache: &mut Cache, value: &[u8]) {
        match serde_json::from_slice::<RolloutConfig>(value) {
            Ok(config) => {
                cache.config = Some(config);
                cache.config_error = None;
            }
            Err(err) => {
                cache.config_error = Some(format!("{}config: {err}", self.prefix));
            }
        }
    }

    /// Keeps the cache current: read, watch from the next revision, and
    /// start again (read, re-watch) when the watch breaks or is compacted.
    async fn watch_loop(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(50);
        while !self.closed.load(Ordering::Acquire) {
            // The next load asks etcd directly and reports an error to the
            // controller; here it is only traced.
            match self.watch_once().await {
                Err(err) => trace::fleet(
                    Severity::Warn,
                    &format!(
                        "the etcd watch on {} broke: {}; reading again and re-watching",
                        self.prefix,
                        self.security.explain(&err)
                    ),
                ),
                Ok(()) => trace::fleet(
                    Severity::Info,
                    &format!(
                        "the etcd watch on {} ended (compacted or closed); reading again and re-watching",
                        self.prefix
                    ),
                ),
            }
            lock(&self.cache).watching = false;
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    async fn watch_once(&self) -> Result<(), etcd_client::Error> {
        let mut client = self.client().await?;
        let revision = self.read_all(&mut client).await?;
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision + 1)
            .with_progress_notify();
        let mut stream = client.watch(self.prefix.clone(), Some(options)).await?;
        let (state_key, config_key) = (self.key("state"), self.key("config"));
        let mut progress = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = progress.tick() => {
                    stream.request_progress().await?;
                }
                message = stream.message() => {
                    let Some(response) = message? else {
                        return Ok(()); // closed: read again
                    };
                    if response.canceled() || response.compact_revision() > 0 {
                        return Ok(()); // compacted or canceled: read again
                    }
                    let mut cache = lock(&self.cache);
                    cache.watching = true;
                    cache.contact = Some(Instant::now());
                    for event in response.events() {
                        let Some(kv) = event.kv() else { continue };
                        let deleted = event.event_type() == EventType::Delete;
                        if kv.key() == state_key.as_bytes() {
                            if kv.mod_revision() <= cache.state_as_of {
                                // Already in the cache (an own write, or a read since).
                            } else if deleted {
                                cache.state = None;
                                cache.state_error = None;
                                cache.state_as_of = kv.mod_revision();
                            } else {
                                self.cache_state(&mut cache, kv.value(), kv.mod_revision());
                                cache.state_as_of = kv.mod_revision();
                            }
                        } else if kv.key() == config_key.as_bytes() {
                            if kv.mod_revision() <= cache.config_as_of {
                                // Already in the cache (an own write, or a read since).
                            } else if deleted {
                                cache.config = None;
                                cache.config_error = None;
                            } else {
                                self.cache_config(&mut cache, kv.value());
                            }
                            cache.config_as_of = cache.config_as_of.max(kv.mod_revision());
                        }
                    }
                }
            }
            if self.closed.load(Ordering::Acquire) {
                return Ok(());
            }
        }
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
            Ok(Ok(Ok(value))) => {
                self.touched();
                Ok(value)
            }
            Ok(Ok(Err(err))) => Err(self.unavailable(self.inner.security.explain(&err))),
            Ok(Err(_)) | Err(_) => Err(self.unavailable(format!(
                "no answer within {}",
                humantime::format_duration(CALL_TIMEOUT * 2)
            ))),
        }
    }

    fn touched(&self) {
        lock(&self.inner.cache).contact = Some(Instant::now());
    }

    /// Whether the watch has heard from etcd recently.
    fn fresh(&self) -> bool {
        let cache = lock(&self.inner.cache);
        cache.watching
            && cache
                .contact
                .is_some_and(|at| at.elapsed() < CONTACT_TIMEOUT)
    }

    /// Reads etcd directly (the watch is not live).
    fn refresh_cache(&self) -> Result<(), StoreError> {
        let inner = Arc::clone(&self.inner);
        self.call(move |mut client| async move { inner.read_all(&mut client).await.map(|_| ()) })
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
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when etcd cannot be reached.
    pub fn campaign(&self, ttl: i64) -> Result<Option<Leadership>, StoreError> {
        let lease = self.call(move |mut client| async move {
            client.lease_grant(ttl, None).await.map(|r| r.id())
        })?;
        let key = self.key("leader");
        let me = self.inner.replica.clone();
        let attempt = self.call(move |mut client| async move {
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
            Ok((response.succeeded(), revision))
        });
        let (won, revision) = match attempt {
            Ok(done) => done,
            Err(err) => {
                self.revoke(lease);
                return Err(err);
            }
        };
        if !won {
            self.revoke(lease);
            return Ok(None);
        }
        let lost = Arc::new(AtomicBool::new(false));
        *lock(&self.inner.fence) = Some(Fence {
            revision,
            lost: Arc::clone(&lost),
        });
        self.keep_alive(lease, ttl, Arc::clone(&lost));
        Ok(Some(Leadership {
            store: self.clone(),
            lease,
            lost,
        }))
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

    fn revoke(&self, lease: i64) {
        let _ = self
            .call(move |mut client| async move { client.lease_revoke(lease).await.map(|_| ()) });
    }

    /// Keeps `lease` alive every third of its TTL; sets `lost` when a
    /// keep-alive fails or etcd says the lease is gone.
    fn keep_alive(&self, lease: i64, ttl: i64, lost: Arc<AtomicBool>) {
        let inner = Arc::clone(&self.inner);
        let every = Duration::from_millis(u64::try_from(ttl.max(1)).unwrap_or(1) * 1000 / 3);
        let deadline = Duration::from_secs(u64::try_from(ttl.max(1)).unwrap_or(1));
        self.inner.handle.spawn(async move {
            let mut last_ok = Instant::now();
            let mut keeper = None;
            while !lost.load(Ordering::Acquire) && !inner.closed.load(Ordering::Acquire) {
                let alive = tokio::time::timeout(every, async {
                    if keeper.is_none() {
                        let mut client = EtcdStateStore::client(&inner).await?;
                        keeper = Some(client.lease_keep_alive(lease).await?);
                    }
                    let Some((keeper_handle, stream)) = keeper.as_mut() else {
                        return Ok(false);
                    };
                    keeper_handle.keep_alive().await?;
                    let ttl = stream.message().await?.map_or(0, |r| r.ttl());
                    Ok::<bool, etcd_client::Error>(ttl > 0)
                })
                .await;
                match alive {
                    Ok(Ok(true)) => last_ok = Instant::now(),
                    Ok(Ok(false)) => {
                        // etcd says the lease is gone.
                        lost.store(true, Ordering::Release);
                        return;
                    }
                    Ok(Err(_)) | Err(_) => keeper = None,
                }
                if last_ok.elapsed() >= deadline {
                    // The lease has expired for all we know.
                    lost.store(true, Ordering::Release);
                    return;
                }
                tokio::time::sleep(every).await;
            }
        });
    }

    /// The lease of this replica's acknowledgements, granted on first use.
    fn ack_lease(&self) -> Result<i64, StoreError> {
        let lease = self.inner.ack_lease.load(Ordering::Acquire);
        if lease != 0 {
            return Ok(lease);
        }
        let ttl = DEFAULT_LEASE_TTL;
        let lease = self.call(move |mut client| async move {
            client.lease_grant(ttl, None).await.map(|r| r.id())
        })?;
        self.inner.ack_lease.store(lease, Ordering::Release);
        let lost = Arc::new(AtomicBool::new(false));
        self.keep_alive(lease, ttl, Arc::clone(&lost));
        // A lost ack lease is granted again at the next acknowledgement.
        let store = self.clone();
        self.inner.handle.spawn(async move {
            while !lost.load(Ordering::Acquire) {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if store.inner.closed.load(Ordering::Acquire) {
                    return;
                }
            }
            let _ = store.inner.ack_lease.compare_exchange(
                lease,
                0,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        });
        Ok(lease)
    }
}

fn parse_state(value: &[u8]) -> Result<RolloutState, String> {
    let state: RolloutState = serde_json::from_slice(value).map_err(|e| e.to_string())?;
    state.validate_shape().map_err(|e| e.to_string())?;
    Ok(state)
}

impl StateStore for EtcdStateStore {
    fn load(&self) -> Result<Option<Stored>, StoreError> {
        if !self.fresh() {
            self.refresh_cache()?;
        }
        let cache = lock(&self.inner.cache);
        match &cache.state_error {
            Some(message) => Err(self.corrupt(message.clone())),
            None => Ok(cache.state.clone()),
        }
    }

    fn compare_and_swap(
        &self,
        expected: Option<Revision>,
        state: &RolloutState,
    ) -> Result<Revision, StoreError> {
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
        let value = serde_json::to_vec(state).map_err(|e| self.corrupt(e.to_string()))?;
        let key = self.key("state");
        let leader_key = self.key("leader");
        let expected_revision = expected.map_or(0, |r| i64::try_from(r.0).unwrap_or(i64::MAX));
        let fence_revision = fence.as_ref().map(|f| f.revision);
        let (succeeded, revision, found, leader) = self.call(move |mut client| async move {
            let mut compares = vec![Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                expected_revision,
            )];
            if let Some(fence) = fence_revision {
                compares.push(Compare::create_revision(
                    leader_key.clone(),
                    CompareOp::Equal,
                    fence,
                ));
            }
            let txn = Txn::new()
                .when(compares)
                .and_then([TxnOp::put(key.clone(), value, None)])
                .or_else([TxnOp::get(key.clone(), None), TxnOp::get(leader_key, None)]);
            let response = client.txn(txn).await?;
            let revision = response.header().map_or(0, |h| h.revision());
            let mut found = None;
            let mut leader = None;
            if !response.succeeded() {
                for (i, op) in response.op_responses().into_iter().enumerate() {
                    if let TxnOpResponse::Get(get) = op {
                        let rev = get.kvs().first().map(|kv| {
                            if i == 0 {
                                kv.mod_revision()
                            } else {
                                kv.create_revision()
                            }
                        });
                        if i == 0 {
                            found = rev;
                        } else {
                            leader = rev;
                        }
                    }
                }
            }
            Ok((response.succeeded(), revision, found, leader))
        })?;
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
            return Ok(Revision(u64::try_from(revision).unwrap_or(0)));
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
        let key = self.key("state");
        let read = key.clone();
        let found = self.call(move |mut client| async move {
            client
                .get(read, None)
                .await
                .map(|mut r| r.take_kvs().into_iter().next())
        })?;
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
            Err(problem) => format!("{}state: {problem}", self.inner.prefix),
        };
        let state = build(&Salvaged::scan(kv.value(), problem));
        state
            .validate_shape()
            .map_err(|err| self.corrupt(format!("refusing to write an invalid state: {err}")))?;
        let value = serde_json::to_vec(&state).map_err(|e| self.corrupt(e.to_string()))?;
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
        let leader_key = self.key("leader");
        let fence_revision = fence.as_ref().map(|f| f.revision);
        let (succeeded, revision) = self.call(move |mut client| async move {
            let mut compares = vec![Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                mod_revision,
            )];
            if let Some(fence) = fence_revision {
                compares.push(Compare::create_revision(
                    leader_key,
                    CompareOp::Equal,
                    fence,
                ));
            }
            let txn = Txn::new()
                .when(compares)
                .and_then([TxnOp::put(key, value, None)]);
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
        Ok(stored)
    }

    fn load_config(&self) -> Result<Option<RolloutConfig>, StoreError> {
        if !self.fresh() {
            self.refresh_cache()?;
        }
        let cache = lock(&self.inner.cache);
        match &cache.config_error {
            Some(message) => Err(self.corrupt(message.clone())),
            None => Ok(cache.config.clone()),
        }
    }

    fn acknowledge(&self, applied: &Applied) -> Result<(), StoreError> {
        let lease = self.ack_lease()?;
        let key = self.key(&format!("acks/{}", self.inner.replica));
        let ack = Acknowledgement::of_this_process(
            &self.inner.replica,
            applied.clone(),
            SystemTime::now(),
        );
        let value = serde_json::to_string(&ack).map_err(|e| self.corrupt(e.to_string()))?;
        let result = self.call(move |mut client| async move {
            client
                .put(key, value, Some(PutOptions::new().with_lease(lease)))
                .await
                .map(|_| ())
        });
        if result.is_err() {
            // Perhaps the lease expired: grant a new one next time.
            let _ = self.inner.ack_lease.compare_exchange(
                lease,
                0,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
        result
    }

    fn acknowledgements(&self) -> Result<Option<Vec<Acknowledgement>>, StoreError> {
        self.list_acks().map(Some)
    }

    fn withdraw(&self) -> Result<(), StoreError> {
        let key = self.key(&format!("acks/{}", self.inner.replica));
        self.call(move |mut client| async move { client.delete(key, None).await.map(|_| ()) })
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
                let mut applied = Applied::new(0, crate::Percent::ZERO);
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
