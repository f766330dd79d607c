//! Where the rollout's state and the shared config live: the state file
//! (and the config file, if any), or the fleet's etcd.

use std::sync::Arc;

use async_upload_rollout::{
    FileStateStore, StateStore,
    act::{ConfigFile, ConfigStore},
};

use crate::config::ServerConfig;
use crate::error::StartError;

/// The state store, the config store and the rollout's name.
pub(crate) type Stores = (Arc<dyn StateStore>, String, Option<Arc<dyn ConfigStore>>);

/// The state store: etcd in a fleet, else the state file; the rollout's
/// name for the exported series; and where `PUT /rollout` writes the config
/// (the fleet's etcd, or the config file).
pub(crate) fn state_store(config: &ServerConfig) -> Result<Stores, StartError> {
    match &config.fleet {
        None => {
            let mut store = FileStateStore::new(&config.state_path);
            if let Some(id) = &config.service_id {
                store = store.with_service(id);
            }
            let config_store = match &config.config_path {
                Some(path) => Some(Arc::new(ConfigFile::new(path)?) as Arc<dyn ConfigStore>),
                None => None,
            };
            Ok((
                Arc::new(store),
                async_upload_rollout::decide::DEFAULT_SALT.to_owned(),
                config_store,
            ))
        }
        #[cfg(feature = "etcd")]
        Some(fleet) => {
            use async_upload_rollout::fleet::{EtcdStateStore, EtcdTls, EtcdUser};
            let usage =
                |e: async_upload_rollout::fleet::ConnectError| StartError::Usage(e.to_string());
            let mut builder = EtcdStateStore::builder(&fleet.etcd, &fleet.name, &fleet.replica)
                .tls(EtcdTls {
                    ca: fleet.etcd_ca.clone(),
                    cert: fleet.etcd_cert.clone(),
                    key: fleet.etcd_key.clone(),
                });
            if let Some(user) = &fleet.etcd_user {
                builder = builder.etcd_user(EtcdUser::from_env(user).map_err(usage)?);
            }
            let store = builder.connect().map_err(usage)?;
            Ok((
                Arc::new(store.clone()),
                fleet.name.clone(),
                Some(Arc::new(store)),
            ))
        }
        #[cfg(not(feature = "etcd"))]
        Some(_) => Err(StartError::Usage(
            "--etcd needs the `etcd` feature: cargo run -p upload-server --features etcd"
                .to_owned(),
        )),
    }
}
