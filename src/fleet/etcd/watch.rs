//! The store's watch: keeps the cache of the rollout's keys current, and
//! confirms contact with etcd.
//!
//! The cache is read whole (a range over the prefix), then watched from the
//! next revision. Every [`PROGRESS_EVERY`] the watch asks etcd for a
//! progress notification (one request at a time): its answer proves that
//! etcd answered on the watch stream after the request was **sent**, so the
//! contact is stamped with the send time, never with the arrival time. A
//! read stamps it the same way. Watch events prove nothing about time and
//! do not stamp it. A request unanswered for [`PROGRESS_TIMEOUT`] ends the
//! watch (read again and re-watched); the contact keeps aging meanwhile,
//! which is what closes a replica on time when etcd or the network goes
//! silent instead of refusing.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use etcd_client::{Client, EventType, GetOptions, KeyValue, WatchOptions};
use tokio::time::MissedTickBehavior;

use super::{CALL_TIMEOUT, Cache, Inner, lock, parse_high_water, parse_state};
use crate::act::outage::OutageLog;
use crate::act::store::{Revision, Stored};
use crate::act::trace::{self, Severity};
use crate::decide::config::RolloutConfig;

/// How often the watch asks etcd to confirm that it is current: while etcd
/// answers, the confirmed contact is never much older than this.
pub(super) const PROGRESS_EVERY: Duration = Duration::from_millis(200);

/// A progress request unanswered for this long ends the watch: it is read
/// again and re-watched (on a silent connection, until etcd answers).
pub(super) const PROGRESS_TIMEOUT: Duration = CALL_TIMEOUT;

/// The first pause before trying to reach etcd again, doubled up to
/// [`RETRY_MAX`]: short, so a replica opens again soon after etcd answers.
const RETRY_FIRST: Duration = Duration::from_millis(25);
const RETRY_MAX: Duration = Duration::from_millis(200);

/// The [`OutageLog`] kind of a watch that broke.
const WATCH: &str = "etcd watch";

/// Which of the rollout's keys a key is.
enum Key {
    State,
    Config,
    Epoch,
    Other,
}

impl Cache {
    /// etcd answered a request sent at `sent`.
    fn confirm(&mut self, sent: Instant) {
        if self.contact.is_none_or(|at| at < sent) {
            self.contact = Some(sent);
        }
    }
}

/// `future`, or an error naming `what` when it takes longer than `within`;
/// etcd's errors as `explain` tells them (with TLS, what a closed
/// connection most likely means).
async fn within<T>(
    within: Duration,
    what: &str,
    explain: impl Fn(&etcd_client::Error) -> String,
    future: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(within, future).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(format!("{what}: {}", explain(&err))),
        Err(_) => Err(format!(
            "{what}: no answer within {}",
            humantime::format_duration(within)
        )),
    }
}

impl Inner {
    fn key_kind(&self, key: &[u8]) -> Key {
        let Some(suffix) = key.strip_prefix(self.prefix.as_bytes()) else {
            return Key::Other;
        };
        match suffix {
            b"state" => Key::State,
            b"config" => Key::Config,
            b"epoch" => Key::Epoch,
            _ => Key::Other,
        }
    }

    /// Reads the state, config and epoch keys into the cache, stamps the
    /// contact with the time the read was sent, and wakes the listeners;
    /// returns the revision read at.
    pub(super) async fn read_all(&self, client: &mut Client) -> Result<i64, etcd_client::Error> {
        let sent = Instant::now();
        let response = client
            .get(self.prefix.clone(), Some(GetOptions::new().with_prefix()))
            .await?;
        let revision = response.header().map_or(0, |h| h.revision());
        {
            let mut cache = lock(&self.cache);
            // A read older than what the cache holds (an own write that
            // finished while it was under way) leaves that key alone.
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
            let epoch_current = revision >= cache.high_water_as_of;
            if epoch_current {
                cache.high_water = 0;
                cache.high_water_revision = 0;
                cache.high_water_as_of = revision;
            }
            for kv in response.kvs() {
                match self.key_kind(kv.key()) {
                    Key::State if state_current => Self::cache_state(&mut cache, kv),
                    Key::Config if config_current => Self::cache_config(&mut cache, kv.value()),
                    Key::Epoch if epoch_current => Self::cache_epoch(&mut cache, kv),
                    _ => {}
                }
            }
            cache.confirm(sent);
        }
        self.notify();
        Ok(revision)
    }

    fn cache_state(cache: &mut Cache, kv: &KeyValue) {
        match parse_state(kv.value()) {
            Ok(state) => {
                cache.state = Some(Stored {
                    state,
                    revision: Revision(u64::try_from(kv.mod_revision()).unwrap_or(0)),
                });
                cache.state_error = None;
            }
            Err(message) => {
                cache.state = None;
                cache.state_error = Some(message);
            }
        }
    }

    fn cache_config(cache: &mut Cache, value: &[u8]) {
        match serde_json::from_slice::<RolloutConfig>(value) {
            Ok(config) => {
                cache.config = Some(config);
                cache.config_error = None;
            }
            Err(err) => {
                cache.config_error = Some(format!("not a rollout config: {err}"));
            }
        }
    }

    fn cache_epoch(cache: &mut Cache, kv: &KeyValue) {
        cache.high_water = parse_high_water(kv.value());
        cache.high_water_revision = kv.mod_revision();
    }

    /// Calls every live listener (outside the lock), and forgets the dead.
    pub(super) fn notify(&self) {
        let live: Vec<_> = {
            let mut listeners = lock(&self.listeners);
            listeners.retain(|l| l.strong_count() > 0);
            listeners
                .iter()
                .filter_map(std::sync::Weak::upgrade)
                .collect()
        };
        for listener in live {
            listener();
        }
    }

    /// Keeps the cache current: read, watch from the next revision, and
    /// start again (read, re-watch) when the watch breaks, goes silent or
    /// is compacted. A broken watch is traced once per
    /// [`OUTAGE_LOG_INTERVAL`](crate::act::OUTAGE_LOG_INTERVAL).
    pub(super) async fn watch_loop(self: Arc<Self>) {
        let mut outage = OutageLog::default();
        let mut backoff = RETRY_FIRST;
        while !self.closed.load(Ordering::Acquire) {
            let mut connected = false;
            let result = self.watch_once(&mut connected).await;
            if self.closed.load(Ordering::Acquire) {
                return;
            }
            if connected {
                backoff = RETRY_FIRST;
                if let Some(summary) = outage.recovered(WATCH, SystemTime::now()) {
                    trace::fleet(
                        Severity::Info,
                        &format!("the etcd watch on {} works again ({summary})", self.prefix),
                    );
                }
            }
            match result {
                Err(err) => {
                    let message = format!(
                        "the etcd watch on {} broke: {err}; reading again and re-watching",
                        self.prefix
                    );
                    if let Some(line) = outage.failed(WATCH, &message, SystemTime::now()) {
                        trace::fleet(Severity::Warn, &line);
                    }
                }
                Ok(()) => trace::fleet(
                    Severity::Info,
                    &format!(
                        "the etcd watch on {} ended (compacted or closed); reading again and re-watching",
                        self.prefix
                    ),
                ),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(RETRY_MAX);
        }
    }

    /// One watch, from a read to its end; `connected` is set once the read
    /// answered.
    async fn watch_once(&self, connected: &mut bool) -> Result<(), String> {
        let explain = |err: &etcd_client::Error| self.security.explain(err);
        let mut client = within(CALL_TIMEOUT, "connecting", explain, self.client()).await?;
        let revision = within(CALL_TIMEOUT, "reading", explain, self.read_all(&mut client)).await?;
        *connected = true;
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision + 1);
        let mut stream = within(
            CALL_TIMEOUT,
            "starting the watch",
            explain,
            client.watch(self.prefix.clone(), Some(options)),
        )
        .await?;
        // The send time of the progress request not answered yet.
        let mut asked: Option<Instant> = None;
        let mut ping = tokio::time::interval(PROGRESS_EVERY);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ping.tick() => match asked {
                    Some(sent) if sent.elapsed() > PROGRESS_TIMEOUT => {
                        return Err(format!(
                            "no answer to a progress request within {}: the connection is silent",
                            humantime::format_duration(PROGRESS_TIMEOUT)
                        ));
                    }
                    Some(_) => {}
                    None => {
                        let sent = Instant::now();
                        stream
                            .request_progress()
                            .await
                            .map_err(|e| format!("asking for progress: {e}"))?;
                        asked = Some(sent);
                    }
                },
                message = stream.message() => {
                    let Some(response) =
                        message.map_err(|e| format!("receiving: {e}"))?
                    else {
                        return Ok(()); // closed: read again
                    };
                    if response.canceled() || response.compact_revision() > 0 {
                        return Ok(()); // compacted or canceled: read again
                    }
                    if response.created() {
                        continue;
                    }
                    if response.events().is_empty() {
                        // A progress notification: every event up to its
                        // revision has been sent on this stream.
                        if let Some(sent) = asked.take() {
                            lock(&self.cache).confirm(sent);
                        }
                        continue;
                    }
                    self.apply_events(response.events());
                }
            }
            if self.closed.load(Ordering::Acquire) {
                return Ok(());
            }
        }
    }

    /// Takes watch events into the cache and wakes the listeners when the
    /// state, config or epoch key changed.
    fn apply_events(&self, events: &[etcd_client::Event]) {
        let mut changed = false;
        {
            let mut cache = lock(&self.cache);
            for event in events {
                let Some(kv) = event.kv() else { continue };
                let deleted = event.event_type() == EventType::Delete;
                let revision = kv.mod_revision();
                match self.key_kind(kv.key()) {
                    Key::State => {
                        if revision <= cache.state_as_of {
                            // Already in the cache (an own write, or a read since).
                        } else {
                            if deleted {
                                cache.state = None;
                                cache.state_error = None;
                            } else {
                                Self::cache_state(&mut cache, kv);
                            }
                            cache.state_as_of = revision;
                            changed = true;
                        }
                    }
                    Key::Config => {
                        if revision > cache.config_as_of {
                            if deleted {
                                cache.config = None;
                                cache.config_error = None;
                            } else {
                                Self::cache_config(&mut cache, kv.value());
                            }
                            cache.config_as_of = revision;
                            changed = true;
                        }
                    }
                    Key::Epoch => {
                        if revision > cache.high_water_as_of {
                            if deleted {
                                cache.high_water = 0;
                                cache.high_water_revision = 0;
                            } else {
                                Self::cache_epoch(&mut cache, kv);
                            }
                            cache.high_water_as_of = revision;
                        }
                    }
                    Key::Other => {}
                }
            }
        }
        if changed {
            self.notify();
        }
    }
}
