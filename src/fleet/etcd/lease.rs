//! Leases: keeping one alive, revoking a lost one, and the replica's
//! acknowledgement, written by a task of its own that grants a new lease
//! and writes the acknowledgement again at once when the old lease is lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use etcd_client::PutOptions;

use super::{CALL_TIMEOUT, DEFAULT_LEASE_TTL, Inner, lock};
use crate::act::store::{ACK_TTL, Acknowledgement, Applied};

/// How often a failed acknowledgement (or lease grant) is tried again.
const ACK_RETRY: Duration = Duration::from_millis(100);

/// How long a lost lease is tried to be revoked (a restarted etcd keeps
/// leases, and gives them a whole TTL again).
const REVOKE_FOR: Duration = Duration::from_secs(60);

/// What the store's acknowledgement task writes.
#[derive(Debug, Default)]
pub(super) struct Acks {
    /// What this process applies, as last told; `None` before the first
    /// acknowledgement and after a withdrawal.
    latest: Option<Applied>,
    /// Bumped on every acknowledgement (a heartbeat included).
    generation: u64,
    /// The generation last written.
    written: u64,
    /// When the controller last acknowledged: a lost lease is granted again
    /// and the acknowledgement written again only while this is recent (a
    /// process whose controller stopped acknowledging is not kept alive).
    told: Option<Instant>,
    /// Whether the task runs.
    running: bool,
}

/// A lease and whether it is lost.
struct Held {
    id: i64,
    lost: Arc<AtomicBool>,
}

impl Inner {
    /// Keeps `lease` alive every third of its `ttl`. Sets `lost` (and wakes
    /// the acknowledgement task) when etcd says the lease is gone, or when
    /// no keep-alive got through for `ttl`, counted from the time the last
    /// answered one was **sent**: a process never believes it holds a
    /// lease that etcd may have expired.
    pub(super) fn keep_alive(self: &Arc<Self>, lease: i64, ttl: i64, lost: Arc<AtomicBool>) {
        let inner = Arc::clone(self);
        let ttl = Duration::from_secs(u64::try_from(ttl.max(1)).unwrap_or(1));
        let every = ttl / 3;
        self.handle.spawn(async move {
            let mut confirmed = Instant::now();
            let mut keeper = None;
            while !lost.load(Ordering::Acquire) && !inner.closed.load(Ordering::Acquire) {
                let sent = Instant::now();
                let alive = tokio::time::timeout(every, async {
                    if keeper.is_none() {
                        let mut client = inner.client().await?;
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
                    Ok(Ok(true)) => confirmed = sent,
                    Ok(Ok(false)) => {
                        // etcd says the lease is gone.
                        lost.store(true, Ordering::Release);
                        break;
                    }
                    Ok(Err(_)) | Err(_) => keeper = None,
                }
                if confirmed.elapsed() >= ttl {
                    // The lease has expired for all we know.
                    lost.store(true, Ordering::Release);
                    break;
                }
                tokio::time::sleep(every.saturating_sub(sent.elapsed())).await;
            }
            inner.ack_wake.notify_one();
        });
    }

    /// Revokes `lease` in the background, trying again until etcd answers
    /// (at most [`REVOKE_FOR`]): its keys go at once instead of when it
    /// expires (a restarted etcd gives every lease a whole TTL again).
    pub(super) fn revoke_later(self: &Arc<Self>, lease: i64) {
        let inner = Arc::clone(self);
        self.handle.spawn(async move {
            let until = Instant::now() + REVOKE_FOR;
            while Instant::now() < until && !inner.closed.load(Ordering::Acquire) {
                let revoked = tokio::time::timeout(CALL_TIMEOUT, async {
                    let mut client = inner.client().await?;
                    client.lease_revoke(lease).await.map(|_| ())
                })
                .await;
                match revoked {
                    Ok(Ok(())) => return,
                    // Gone already (expired, or revoked).
                    Ok(Err(err)) if err.to_string().contains("not found") => return,
                    _ => tokio::time::sleep(ACK_RETRY).await,
                }
            }
        });
    }

    /// Records `applied` as what this process applies and wakes the task
    /// that writes it (started on first use).
    pub(super) fn queue_ack(self: &Arc<Self>, applied: &Applied) {
        let start = {
            let mut acks = lock(&self.acks);
            acks.latest = Some(applied.clone());
            acks.generation += 1;
            acks.told = Some(Instant::now());
            !std::mem::replace(&mut acks.running, true)
        };
        if start {
            let inner = Arc::clone(self);
            self.handle.spawn(async move { inner.ack_loop().await });
        }
        self.ack_wake.notify_one();
    }

    /// Stops writing this process's acknowledgement (it stops serving).
    pub(super) fn stop_acks(&self) {
        let mut acks = lock(&self.acks);
        acks.latest = None;
        acks.told = None;
    }

    /// Writes the latest acknowledgement under this replica's lease: when it
    /// changes or is told again (a heartbeat), and at once when the lease is
    /// lost (a new lease is granted: after an outage longer than the lease,
    /// the acknowledgement is back as soon as etcd answers).
    async fn ack_loop(self: Arc<Self>) {
        let mut lease: Option<Held> = None;
        let mut retry = false;
        loop {
            if retry {
                tokio::select! {
                    () = self.ack_wake.notified() => {}
                    () = tokio::time::sleep(ACK_RETRY) => {}
                }
            } else {
                self.ack_wake.notified().await;
            }
            if self.closed.load(Ordering::Acquire) {
                return;
            }
            let lost = lease
                .as_ref()
                .is_none_or(|l| l.lost.load(Ordering::Acquire));
            let (applied, generation) = {
                let acks = lock(&self.acks);
                let told_recently = acks.told.is_some_and(|at| at.elapsed() <= ACK_TTL);
                match &acks.latest {
                    Some(applied) if told_recently && (lost || acks.written != acks.generation) => {
                        (applied.clone(), acks.generation)
                    }
                    Some(_) => {
                        retry = false;
                        continue;
                    }
                    None => {
                        // Withdrawn: the lease goes too.
                        if let Some(old) = lease.take() {
                            old.lost.store(true, Ordering::Release);
                            self.revoke_later(old.id);
                        }
                        retry = false;
                        continue;
                    }
                }
            };
            if lost {
                if let Some(old) = lease.take() {
                    self.revoke_later(old.id);
                }
                match self.grant(DEFAULT_LEASE_TTL).await {
                    Ok(id) => {
                        let held = Held {
                            id,
                            lost: Arc::new(AtomicBool::new(false)),
                        };
                        self.keep_alive(id, DEFAULT_LEASE_TTL, Arc::clone(&held.lost));
                        lease = Some(held);
                    }
                    Err(_) => {
                        retry = true;
                        continue;
                    }
                }
            }
            let Some(held) = &lease else { continue };
            let ack = Acknowledgement::of_this_process(&self.replica, applied, SystemTime::now());
            let Ok(value) = serde_json::to_string(&ack) else {
                continue;
            };
            let key = self.key(&format!("acks/{}", self.replica));
            let id = held.id;
            let put = tokio::time::timeout(CALL_TIMEOUT, async {
                let mut client = self.client().await?;
                client
                    .put(key, value, Some(PutOptions::new().with_lease(id)))
                    .await
                    .map(|_| ())
            })
            .await;
            match put {
                Ok(Ok(())) => {
                    let mut acks = lock(&self.acks);
                    acks.written = acks.written.max(generation);
                    retry = false;
                }
                Ok(Err(err)) => {
                    if err.to_string().contains("lease not found") {
                        held.lost.store(true, Ordering::Release);
                    }
                    retry = true;
                }
                Err(_) => retry = true,
            }
        }
    }

    /// Grants a lease of `ttl` seconds.
    pub(super) async fn grant(&self, ttl: i64) -> Result<i64, String> {
        match tokio::time::timeout(CALL_TIMEOUT, async {
            let mut client = self.client().await?;
            client.lease_grant(ttl, None).await.map(|r| r.id())
        })
        .await
        {
            Ok(Ok(id)) => Ok(id),
            Ok(Err(err)) => Err(err.to_string()),
            Err(_) => Err("no answer".to_owned()),
        }
    }
}
