//! What the handlers share: the rollout, its metrics and controller, the
//! exporter, the upload route's layer and the server's settings, built from
//! a [`ServerConfig`]. The handlers (`uploads`, `status`, `admin`, ...)
//! read it and the routes (`app`) sit above them; it imports none of them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_upload_rollout::export::prometheus::PrometheusExporter;
use async_upload_rollout::tower::{FromFn, LayerHandle, RolloutLayer};
use async_upload_rollout::{
    JsonlSink, MetricsAccumulator, MonitorHandle, Rollout, RolloutController,
    act::{ConfigStore, ConfigWatcher, PollOutcome},
};

use crate::config::ServerConfig;
use crate::error::StartError;
use crate::in_flight::InFlight;
use crate::inject::InjectedFailures;
use crate::storage::sweep_partial_uploads;
use crate::stores::state_store;
use crate::upload_id::{IdFinder, IdSource, request_upload_id};

/// What the handlers share. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct AppState {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) rollout: Arc<Rollout>,
    pub(crate) metrics: Arc<MetricsAccumulator>,
    pub(crate) exporter: PrometheusExporter,
    /// Decides and records each upload (the `POST /uploads` route's layer).
    pub(crate) layer: RolloutLayer<FromFn<IdFinder>>,
    pub(crate) monitor: MonitorHandle,
    /// Where `PUT /rollout` writes the config every service reads: the
    /// fleet's etcd, or the config file; `None`: this process only.
    pub(crate) config_store: Option<Arc<dyn ConfigStore>>,
    /// Where the state is (named in every answer).
    pub(crate) store_name: String,
    pub(crate) admin_token: Option<Vec<u8>>,
    pub(crate) store_dir: PathBuf,
    pub(crate) max_upload_bytes: usize,
    pub(crate) tick: Duration,
    /// Ids for requests without one (the upload route's middleware holds
    /// it too).
    pub(crate) ids: Arc<IdSource>,
    /// Accepted uploads being stored (each one's guard holds it too).
    pub(crate) in_flight: Arc<InFlight>,
    /// Async uploads to fail on purpose (`--inject-async-error-rate`).
    pub(crate) inject: InjectedFailures,
}

impl AppState {
    /// Opens the log and the upload directory, reads the config file (if
    /// any), and starts the controller on `rollout` with the state in the
    /// state file. The rollout's percent on entry (from
    /// `ASYNC_UPLOAD_ROLLOUT`), or the config file's, is the starting
    /// request, used only when no state is stored.
    ///
    /// # Errors
    ///
    /// [`StartError::StoreDir`], [`StartError::Config`], [`StartError::Log`]
    /// or [`StartError::Controller`]; nothing is left running. A state file
    /// that cannot be read is not an error: the server starts with nothing
    /// async and reports it.
    pub fn new(config: ServerConfig, rollout: Arc<Rollout>) -> Result<AppState, StartError> {
        if config.admin_token.as_deref() == Some("") {
            return Err(StartError::Usage(
                "the admin token must not be empty".to_owned(),
            ));
        }
        std::fs::create_dir_all(&config.store_dir).map_err(|source| StartError::StoreDir {
            dir: config.store_dir.clone(),
            source,
        })?;
        let swept = sweep_partial_uploads(&config.store_dir);
        if swept > 0 {
            eprintln!(
                "upload_server: removed {swept} unfinished upload file(s) from {} (left by a crash)",
                config.store_dir.display()
            );
        }
        // The config file: its salt, kill switch and lists now; its percent
        // (or ASYNC_UPLOAD_ROLLOUT's, which wins) is the starting request.
        // The controller polls it from then on, with the state.
        let watcher = match &config.config_path {
            Some(path) => {
                let mut watcher = ConfigWatcher::new(path, Arc::clone(&rollout))?
                    .with_log(JsonlSink::open(&config.log_path)?);
                if let PollOutcome::Applied(file) = watcher.poll_once()? {
                    rollout.set_percent(file.percent);
                }
                Some(watcher)
            }
            None => None,
        };
        let metrics = Arc::new(MetricsAccumulator::new());
        let (store, rollout_name, config_store) = state_store(&config)?;
        let store_name = store.describe();
        let mut builder = RolloutController::builder(Arc::clone(&rollout), Arc::clone(&metrics))
            .plan(config.plan)
            .auto_advance(config.auto_advance)
            .log_interval(config.log_interval)
            .memory_warmup(config.memory_warmup)
            .stale_after(config.stale_after)
            .state_store(store)
            .log(JsonlSink::open(&config.log_path)?);
        #[cfg(feature = "etcd")]
        if config.fleet.is_some() {
            builder = async_upload_rollout::fleet::replica(builder);
        }
        if let Some(watcher) = watcher {
            builder = builder.config_watcher(watcher);
        }
        let controller = builder.build()?;
        if let Some(error) = controller.state_error() {
            eprintln!(
                "upload_server: STATE ERROR: {error}\nupload_server: serving every upload on the sync path until the state file is fixed"
            );
        }
        if let Some(error) = controller.config_error() {
            eprintln!("upload_server: CONFIG ERROR: {error}");
        }
        let monitor = controller.spawn_with_poll(config.tick, config.state_poll);
        let layer = RolloutLayer::builder(Arc::clone(&rollout), Arc::clone(&metrics))
            .id(FromFn(request_upload_id as IdFinder))
            .build();
        Ok(AppState {
            inner: Arc::new(Inner {
                layer,
                exporter: PrometheusExporter::new(Arc::clone(&rollout), Arc::clone(&metrics))
                    .with_rollout_name(&rollout_name),
                rollout,
                metrics,
                monitor,
                config_store,
                store_name,
                admin_token: config.admin_token.map(String::into_bytes),
                store_dir: config.store_dir,
                max_upload_bytes: config.max_upload_bytes,
                tick: config.tick,
                ids: Arc::new(IdSource::new()),
                in_flight: Arc::default(),
                inject: InjectedFailures::at_rate(config.inject_async_error_rate),
            }),
        })
    }

    /// The rollout the handlers decide with.
    #[must_use]
    pub fn rollout(&self) -> &Arc<Rollout> {
        &self.inner.rollout
    }

    /// The metrics the handlers record into.
    #[must_use]
    pub fn metrics(&self) -> &Arc<MetricsAccumulator> {
        &self.inner.metrics
    }

    /// The upload route's layer: its counters (requests without an id,
    /// cancelled, deferred) and the metrics it records into.
    #[must_use]
    pub fn rollout_layer(&self) -> LayerHandle {
        self.inner.layer.handle()
    }

    /// The background controller: [`MonitorHandle::view`] for status,
    /// [`MonitorHandle::lock`] for operator actions.
    pub fn monitor(&self) -> &MonitorHandle {
        &self.inner.monitor
    }

    /// Where uploads are stored.
    #[must_use]
    pub fn store_dir(&self) -> &Path {
        &self.inner.store_dir
    }

    /// Waits until no accepted (202) upload is still being stored, at most
    /// `timeout`. Returns whether none is left.
    pub async fn drain(&self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.inner.in_flight.idle())
            .await
            .is_ok()
    }
}
