//! [`EtcdStateStoreBuilder`]: how an [`EtcdStateStore`] reaches etcd (TLS,
//! a client certificate, a user), checked before the store starts; and
//! [`explain`], which turns a failed call into a sentence that says what is
//! wrong (a certificate etcd's CA did not sign, a missing client
//! certificate, a wrong password) instead of "transport error".

use std::path::PathBuf;

use etcd_client::{Certificate, ConnectOptions, Identity, TlsOptions};

use super::EtcdStateStore;
use crate::act::store::StoreError;
use crate::fleet::security::{
    ConnectError, CredentialFile, EtcdTls, EtcdUser, certificates, check_key, read_pem,
};

/// Builds an [`EtcdStateStore`]: endpoints, rollout name and replica id,
/// then TLS and a user if etcd asks for them. From
/// [`EtcdStateStore::builder`].
///
/// ```no_run
/// use async_upload_rollout::fleet::{EtcdStateStore, EtcdTls, EtcdUser};
///
/// let endpoints = ["https://127.0.0.1:2379".to_owned()];
/// let store = EtcdStateStore::builder(&endpoints, "async-upload", "web-1")
///     .tls(EtcdTls {
///         ca: Some("ca.pem".into()),
///         cert: Some("client.pem".into()),
///         key: Some("client-key.pem".into()),
///     })
///     .etcd_user(EtcdUser::from_env("rollout")?) // the password from ETCD_PASSWORD
///     .connect()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until connect() is called"]
pub struct EtcdStateStoreBuilder {
    endpoints: Vec<String>,
    name: String,
    replica: String,
    tls: EtcdTls,
    user: Option<EtcdUser>,
}

impl EtcdStateStoreBuilder {
    pub(super) fn new(endpoints: &[String], name: &str, replica: &str) -> EtcdStateStoreBuilder {
        EtcdStateStoreBuilder {
            endpoints: endpoints.to_vec(),
            name: name.to_owned(),
            replica: replica.to_owned(),
            tls: EtcdTls::default(),
            user: None,
        }
    }

    /// TLS: the CA that signed etcd's certificate (default: the system's
    /// roots) and a client certificate and key. The endpoints must be
    /// `https://`.
    pub fn tls(mut self, tls: EtcdTls) -> Self {
        self.tls = tls;
        self
    }

    /// Authenticates as etcd user `name` with `password` (etcd with
    /// authentication enabled). The token etcd hands out is refreshed when
    /// it expires.
    pub fn user(self, name: &str, password: &str) -> Self {
        self.etcd_user(EtcdUser::new(name, password))
    }

    /// Authenticates as `user` ([`EtcdUser::from_env`] reads the password
    /// from `ETCD_PASSWORD`).
    pub fn etcd_user(mut self, user: EtcdUser) -> Self {
        self.user = Some(user);
        self
    }

    /// Checks the options and files, and starts the store: it connects
    /// lazily, so an etcd that is down now is not an error here (calls fail
    /// until it answers, naming why).
    ///
    /// # Errors
    ///
    /// [`ConnectError::Unreadable`] or [`ConnectError::Invalid`] naming a
    /// TLS file that cannot be read or is not a CA certificate, a
    /// certificate, or the certificate's private key;
    /// [`ConnectError::Unpaired`] for a certificate without its key or the
    /// other way round; [`ConnectError::TlsOverHttp`] for TLS files with an
    /// `http://` endpoint; [`ConnectError::Store`] when no endpoint is
    /// given or the store's runtime cannot start.
    pub fn connect(self) -> Result<EtcdStateStore, ConnectError> {
        let options = self.options()?;
        Ok(EtcdStateStore::start(
            &self.endpoints,
            &self.name,
            &self.replica,
            options,
        )?)
    }

    /// The TLS and user part of the connection options, checked.
    fn options(&self) -> Result<Security, ConnectError> {
        let mut security = Security::default();
        let https = self.endpoints.iter().any(|e| e.starts_with("https://"));
        if !self.tls.is_empty()
            && let Some(plain) = self.endpoints.iter().find(|e| e.starts_with("http://"))
        {
            return Err(ConnectError::TlsOverHttp {
                endpoint: plain.clone(),
            });
        }
        if https || !self.tls.is_empty() {
            security.tls = Some(self.tls_options()?);
            security.ca.clone_from(&self.tls.ca);
            security.cert.clone_from(&self.tls.cert);
        }
        security.user.clone_from(&self.user);
        Ok(security)
    }

    fn tls_options(&self) -> Result<TlsOptions, ConnectError> {
        let mut options = TlsOptions::new();
        match &self.tls.ca {
            Some(path) => {
                let pem = read_pem(CredentialFile::EtcdCa, path)?;
                certificates(CredentialFile::EtcdCa, path, &pem)?;
                options = options.ca_certificate(Certificate::from_pem(pem));
            }
            None => options = options.with_native_roots(),
        }
        match (&self.tls.cert, &self.tls.key) {
            (None, None) => {}
            (Some(path), None) => {
                return Err(ConnectError::Unpaired {
                    given: CredentialFile::EtcdCert,
                    path: path.clone(),
                });
            }
            (None, Some(path)) => {
                return Err(ConnectError::Unpaired {
                    given: CredentialFile::EtcdKey,
                    path: path.clone(),
                });
            }
            (Some(cert_path), Some(key_path)) => {
                let cert = read_pem(CredentialFile::EtcdCert, cert_path)?;
                let chain = certificates(CredentialFile::EtcdCert, cert_path, &cert)?;
                let key = read_pem(CredentialFile::EtcdKey, key_path)?;
                check_key(key_path, &key, cert_path, chain)?;
                options = options.identity(Identity::from_pem(cert, key));
            }
        }
        Ok(options)
    }
}

/// The TLS and user options of a store's connections.
#[derive(Clone, Default)]
pub(super) struct Security {
    tls: Option<TlsOptions>,
    /// The CA and client certificate files, for error messages.
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    user: Option<EtcdUser>,
}

impl Security {
    /// `options` with TLS and the user added.
    pub(super) fn apply(&self, mut options: ConnectOptions) -> ConnectOptions {
        if let Some(tls) = &self.tls {
            options = options.with_tls(tls.clone());
        }
        if let Some(user) = &self.user {
            options = options
                .with_user(user.name(), user.password())
                .with_auto_token_refresh(true);
        }
        options
    }

    /// Why `err` happened, in words: its message and causes, and what the
    /// likely fix is for the failures TLS and authentication cause.
    pub(super) fn explain(&self, err: &etcd_client::Error) -> String {
        let mut text = match err {
            etcd_client::Error::GRpcStatus(status) => {
                let mut text = format!("{:?}: {}", status.code(), status.message());
                add_causes(&mut text, std::error::Error::source(status));
                text
            }
            etcd_client::Error::TransportError(transport) => {
                let mut text = transport.to_string();
                add_causes(&mut text, std::error::Error::source(transport));
                text
            }
            other => other.to_string(),
        };
        if let Some(hint) = self.hint(&text) {
            text.push_str(" (");
            text.push_str(&hint);
            text.push(')');
        }
        text
    }

    fn hint(&self, text: &str) -> Option<String> {
        let lower = text.to_ascii_lowercase();
        let has = |words: &[&str]| words.iter().any(|w| lower.contains(w));
        if has(&["unknownissuer", "unknown issuer", "badsignature"]) {
            return Some(match &self.ca {
                Some(ca) => format!(
                    "etcd's certificate is not signed by the CA in {}",
                    ca.display()
                ),
                None => "etcd's certificate is not signed by any of the system's trusted CAs: name its CA (--etcd-ca)".to_owned(),
            });
        }
        if has(&["notvalidforname", "not valid for name"]) {
            return Some("etcd's certificate does not name the endpoint's host".to_owned());
        }
        let refused_connection = has(&[
            "certificaterequired",
            "certificate required",
            "badcertificate",
            "bad certificate",
            "unknownca",
            "unknown ca",
            "broken pipe",
            "connection reset",
        ]);
        if self.tls.is_some() && refused_connection {
            return Some(match &self.cert {
                Some(cert) => format!(
                    "etcd refused the client certificate {}: is it signed by a CA etcd trusts (its --trusted-ca-file)?",
                    cert.display()
                ),
                None => {
                    "etcd asks for a client certificate (--etcd-cert and --etcd-key)".to_owned()
                }
            });
        }
        // TLS 1.3: the client's handshake is done before etcd checks its
        // certificate, so a refusal can reach it as a closed connection
        // before the alert is read.
        if self.tls.is_some() && has(&["connection closed"]) {
            return Some(match &self.cert {
                Some(cert) => format!(
                    "etcd closed the connection after the TLS handshake, as it does when it refused the client certificate {}: is it signed by a CA etcd trusts (its --trusted-ca-file)?",
                    cert.display()
                ),
                None => "etcd closed the connection after the TLS handshake, as it does when it asks for a client certificate and none is sent (--etcd-cert and --etcd-key)".to_owned(),
            });
        }
        if (self.tls.is_none() && refused_connection)
            || has(&["frame with invalid size", "http2 error"])
        {
            return Some("does etcd serve TLS? Then name it https://".to_owned());
        }
        if has(&["authentication failed", "invalid user id or password"]) {
            let user = self
                .user
                .as_ref()
                .map_or_else(String::new, |u| format!(" of the user {}", u.name()));
            return Some(format!("etcd refused the password{user}"));
        }
        if has(&[
            "user name is empty",
            "user name not found",
            "permission denied",
        ]) {
            return Some(match &self.user {
                Some(user) => format!(
                    "the etcd user {} has no permission on the rollout's keys",
                    user.name()
                ),
                None => "etcd has authentication enabled: name a user (--etcd-user, its password in ETCD_PASSWORD)".to_owned(),
            });
        }
        None
    }
}

/// Appends each cause of a chain not already said.
fn add_causes(text: &mut String, mut source: Option<&(dyn std::error::Error + 'static)>) {
    while let Some(cause) = source {
        let said = cause.to_string();
        if !said.is_empty() && !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
}

impl EtcdStateStore {
    /// Starts building a store for rollout `name` on the etcd cluster at
    /// `endpoints`, identifying this process as `replica`: add
    /// [`tls`](EtcdStateStoreBuilder::tls) and
    /// [`user`](EtcdStateStoreBuilder::user) for an etcd that asks for them,
    /// then [`connect`](EtcdStateStoreBuilder::connect).
    pub fn builder(endpoints: &[String], name: &str, replica: &str) -> EtcdStateStoreBuilder {
        EtcdStateStoreBuilder::new(endpoints, name, replica)
    }
}

/// A setup error as the store's, for [`EtcdStateStore::connect`], which
/// keeps [`StoreError`]: `Unavailable`, with the message.
pub(super) fn into_store_error(err: ConnectError) -> StoreError {
    match err {
        ConnectError::Store(store) => store,
        other => StoreError::Unavailable {
            store: "etcd".to_owned(),
            message: other.to_string(),
        },
    }
}
