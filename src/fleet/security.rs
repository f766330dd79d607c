//! How a fleet's processes prove who they are to etcd and Prometheus, and
//! how they check who answers: TLS files ([`EtcdTls`]), an etcd user
//! ([`EtcdUser`]), Prometheus credentials ([`PrometheusAuth`]), and
//! [`ConnectError`], which names the file or variable at fault.
//!
//! Passwords never come from a command-line flag (a flag shows in `ps` and
//! in shell history): the command line and the upload server read them from
//! the environment, [`ETCD_PASSWORD_ENV`], [`PROMETHEUS_USER_ENV`] and
//! [`PROMETHEUS_PASSWORD_ENV`]. A bearer token is read from a file, again
//! before every query, so a token that is rotated on disk (a Kubernetes
//! projected service-account token) is picked up without a restart.
//!
//! Every file is read and checked when the store or source is built, so a
//! wrong path or a file of the wrong kind fails at start, naming the file:
//! a CA file must hold at least one certificate that parses, a client
//! certificate file at least one certificate, a key file a private key that
//! belongs to that certificate.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::act::store::StoreError;

/// The environment variable holding the etcd user's password
/// (`--etcd-user USER` on the command line and the upload server).
pub const ETCD_PASSWORD_ENV: &str = "ETCD_PASSWORD";

/// The environment variable naming the user for Prometheus's basic auth.
pub const PROMETHEUS_USER_ENV: &str = "PROMETHEUS_USER";

/// The environment variable holding the password for Prometheus's basic
/// auth.
pub const PROMETHEUS_PASSWORD_ENV: &str = "PROMETHEUS_PASSWORD";

/// TLS to etcd: which CA to trust, and the client certificate to present.
///
/// With `https://` endpoints and no `ca`, the system's trusted roots are
/// used. `cert` and `key` go together (etcd started with
/// `--client-cert-auth` asks for them). All files are PEM.
///
/// ```no_run
/// use async_upload_rollout::fleet::{EtcdStateStore, EtcdTls};
///
/// let store = EtcdStateStore::builder(&["https://etcd-0.internal:2379".to_owned()], "async-upload", "web-1")
///     .tls(EtcdTls {
///         ca: Some("/etc/etcd/ca.pem".into()),
///         cert: Some("/etc/etcd/client.pem".into()),
///         key: Some("/etc/etcd/client-key.pem".into()),
///     })
///     .user("rollout", &std::env::var("ETCD_PASSWORD")?)
///     .connect()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EtcdTls {
    /// The CA certificate(s) that signed etcd's server certificate
    /// (`--etcd-ca`); `None`: the system's trusted roots.
    pub ca: Option<PathBuf>,
    /// This client's certificate (`--etcd-cert`), presented to an etcd that
    /// verifies client certificates.
    pub cert: Option<PathBuf>,
    /// The private key of `cert` (`--etcd-key`).
    pub key: Option<PathBuf>,
}

impl EtcdTls {
    /// Whether any file is named.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ca.is_none() && self.cert.is_none() && self.key.is_none()
    }
}

/// An etcd user and its password (etcd with authentication enabled). The
/// password is never shown: `Debug` prints the name only.
#[derive(Clone, PartialEq, Eq)]
pub struct EtcdUser {
    name: String,
    password: String,
}

impl EtcdUser {
    /// The user `name` with `password`.
    #[must_use]
    pub fn new(name: &str, password: &str) -> EtcdUser {
        EtcdUser {
            name: name.to_owned(),
            password: password.to_owned(),
        }
    }

    /// The user `name` with the password from [`ETCD_PASSWORD_ENV`].
    ///
    /// # Errors
    ///
    /// [`ConnectError::MissingPassword`] when the variable is unset or
    /// empty (or not UTF-8).
    pub fn from_env(name: &str) -> Result<EtcdUser, ConnectError> {
        match std::env::var(ETCD_PASSWORD_ENV) {
            Ok(password) if !password.is_empty() => Ok(EtcdUser::new(name, &password)),
            _ => Err(ConnectError::MissingPassword {
                variable: ETCD_PASSWORD_ENV,
                user: name.to_owned(),
            }),
        }
    }

    /// The user's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn password(&self) -> &str {
        &self.password
    }
}

impl fmt::Debug for EtcdUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdUser")
            .field("name", &self.name)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// How a [`PrometheusSource`](crate::fleet::PrometheusSource) proves itself
/// to a Prometheus that asks for credentials (its `--web.config.file`, or a
/// proxy in front of it). Secrets are never shown by `Debug`.
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum PrometheusAuth {
    /// No credentials.
    #[default]
    None,
    /// `Authorization: Bearer <token>`, the token read from this file
    /// (surrounding whitespace trimmed) before every query
    /// (`--prometheus-bearer-token-file`).
    BearerTokenFile(PathBuf),
    /// HTTP basic auth ([`PROMETHEUS_USER_ENV`], [`PROMETHEUS_PASSWORD_ENV`]).
    Basic {
        /// The user.
        user: String,
        /// The password.
        password: String,
    },
}

impl PrometheusAuth {
    /// Basic auth as `user` with `password`.
    #[must_use]
    pub fn basic(user: &str, password: &str) -> PrometheusAuth {
        PrometheusAuth::Basic {
            user: user.to_owned(),
            password: password.to_owned(),
        }
    }

    /// A bearer token read from `path` before every query.
    #[must_use]
    pub fn bearer_token_file(path: impl Into<PathBuf>) -> PrometheusAuth {
        PrometheusAuth::BearerTokenFile(path.into())
    }

    /// Basic auth from [`PROMETHEUS_USER_ENV`] and
    /// [`PROMETHEUS_PASSWORD_ENV`] when the user is set, else none.
    ///
    /// # Errors
    ///
    /// [`ConnectError::MissingPassword`] when the user is set without a
    /// password, [`ConnectError::MissingUser`] when the password is set
    /// without a user.
    pub fn from_env() -> Result<PrometheusAuth, ConnectError> {
        let set = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        match (set(PROMETHEUS_USER_ENV), set(PROMETHEUS_PASSWORD_ENV)) {
            (None, None) => Ok(PrometheusAuth::None),
            (Some(user), Some(password)) => Ok(PrometheusAuth::basic(&user, &password)),
            (Some(user), None) => Err(ConnectError::MissingPassword {
                variable: PROMETHEUS_PASSWORD_ENV,
                user,
            }),
            (None, Some(_)) => Err(ConnectError::MissingUser {
                variable: PROMETHEUS_USER_ENV,
                password: PROMETHEUS_PASSWORD_ENV,
            }),
        }
    }

    /// Checks that a token file can be read and is not empty.
    pub(crate) fn check(&self) -> Result<(), ConnectError> {
        if let PrometheusAuth::BearerTokenFile(path) = self {
            read_token(path)?;
        }
        Ok(())
    }

    /// The `Authorization` header's value, if any (a token file is read
    /// again each time).
    pub(crate) fn header(&self) -> Result<Option<String>, ConnectError> {
        match self {
            PrometheusAuth::None => Ok(None),
            PrometheusAuth::BearerTokenFile(path) => {
                read_token(path).map(|token| Some(format!("Bearer {token}")))
            }
            PrometheusAuth::Basic { user, password } => {
                use base64::Engine as _;
                let pair = format!("{user}:{password}");
                Ok(Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                )))
            }
        }
    }

    /// What is sent, without the secret: `basic auth as user ops`.
    pub(crate) fn describe(&self) -> String {
        match self {
            PrometheusAuth::None => "no credentials".to_owned(),
            PrometheusAuth::BearerTokenFile(path) => {
                format!("the bearer token in {}", path.display())
            }
            PrometheusAuth::Basic { user, .. } => format!("basic auth as user {user}"),
        }
    }
}

impl fmt::Debug for PrometheusAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrometheusAuth::None => f.write_str("None"),
            PrometheusAuth::BearerTokenFile(path) => {
                f.debug_tuple("BearerTokenFile").field(path).finish()
            }
            PrometheusAuth::Basic { user, .. } => f
                .debug_struct("Basic")
                .field("user", user)
                .field("password", &"<redacted>")
                .finish(),
        }
    }
}

fn read_token(path: &Path) -> Result<String, ConnectError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConnectError::Unreadable {
        file: CredentialFile::PrometheusBearerToken,
        path: path.to_owned(),
        source,
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(ConnectError::Invalid {
            file: CredentialFile::PrometheusBearerToken,
            path: path.to_owned(),
            problem: "it is empty".to_owned(),
        });
    }
    if token.contains(['\r', '\n']) {
        return Err(ConnectError::Invalid {
            file: CredentialFile::PrometheusBearerToken,
            path: path.to_owned(),
            problem: "it holds more than one line".to_owned(),
        });
    }
    Ok(token.to_owned())
}

/// Which credential file a [`ConnectError`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CredentialFile {
    /// [`EtcdTls::ca`] (`--etcd-ca`).
    EtcdCa,
    /// [`EtcdTls::cert`] (`--etcd-cert`).
    EtcdCert,
    /// [`EtcdTls::key`] (`--etcd-key`).
    EtcdKey,
    /// [`PrometheusAuth::BearerTokenFile`] (`--prometheus-bearer-token-file`).
    PrometheusBearerToken,
    /// The CA of an `https://` Prometheus (`--prometheus-ca`).
    PrometheusCa,
}

impl fmt::Display for CredentialFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CredentialFile::EtcdCa => "etcd CA file (--etcd-ca)",
            CredentialFile::EtcdCert => "etcd client certificate (--etcd-cert)",
            CredentialFile::EtcdKey => "etcd client key (--etcd-key)",
            CredentialFile::PrometheusBearerToken => {
                "Prometheus bearer token file (--prometheus-bearer-token-file)"
            }
            CredentialFile::PrometheusCa => "Prometheus CA file (--prometheus-ca)",
        })
    }
}

/// A fleet store or source could not be set up: a credential file that
/// cannot be read or is not what it should be, a missing password, options
/// that do not fit together, or the store itself.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// A file could not be read.
    #[error("cannot read the {file} {}: {source}", path.display())]
    Unreadable {
        /// Which file.
        file: CredentialFile,
        /// Its path.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// A file was read but is not what it should be.
    #[error("the {file} {}: {problem}", path.display())]
    Invalid {
        /// Which file.
        file: CredentialFile,
        /// Its path.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// A client certificate without its key, or a key without its
    /// certificate.
    #[error(
        "a client certificate needs its key and a key its certificate: the {given} {} is given without the other (--etcd-cert and --etcd-key go together)",
        path.display()
    )]
    Unpaired {
        /// The one given.
        given: CredentialFile,
        /// Its path.
        path: PathBuf,
    },
    /// TLS files were given for a plain `http://` endpoint.
    #[error("{endpoint}: TLS files are given but the endpoint is plain http://; name it https://")]
    TlsOverHttp {
        /// The endpoint.
        endpoint: String,
    },
    /// A user is given but its password is not.
    #[error("no password for the user {user}: set {variable} (passwords are never taken as flags)")]
    MissingPassword {
        /// The variable that should hold it.
        variable: &'static str,
        /// The user.
        user: String,
    },
    /// A password is given but no user.
    #[error("{password} is set but {variable} is not: set both for basic auth, or neither")]
    MissingUser {
        /// The variable that should name the user.
        variable: &'static str,
        /// The variable holding the password.
        password: &'static str,
    },
    /// Two ways of authenticating at once.
    #[error("{0}")]
    Conflicting(String),
    /// Something asked for needs a crate feature this build lacks.
    #[error("{what} needs the crate feature `{feature}`, which this build lacks")]
    FeatureMissing {
        /// What was asked for.
        what: String,
        /// The feature.
        feature: &'static str,
    },
    /// The store could not be started.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Reads a PEM file for `file`.
pub(crate) fn read_pem(file: CredentialFile, path: &Path) -> Result<Vec<u8>, ConnectError> {
    std::fs::read(path).map_err(|source| ConnectError::Unreadable {
        file,
        path: path.to_owned(),
        source,
    })
}

/// The certificates in a PEM file's bytes; a CA file's are checked to be
/// usable as trust anchors.
pub(crate) fn certificates(
    file: CredentialFile,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, ConnectError> {
    use rustls_pki_types::pem::PemObject as _;
    let invalid = |problem: String| ConnectError::Invalid {
        file,
        path: path.to_owned(),
        problem,
    };
    let certs = rustls_pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(
            "holds no certificate (no -----BEGIN CERTIFICATE----- block)".to_owned(),
        ));
    }
    if matches!(file, CredentialFile::EtcdCa | CredentialFile::PrometheusCa) {
        let mut roots = rustls::RootCertStore::empty();
        for (i, cert) in certs.iter().enumerate() {
            roots
                .add(cert.clone())
                .map_err(|e| invalid(format!("certificate {} is not a CA: {e}", i + 1)))?;
        }
    }
    Ok(certs)
}

/// Checks that `key` (PEM bytes) is a private key belonging to the first of
/// `chain`.
pub(crate) fn check_key(
    path: &Path,
    key: &[u8],
    cert_path: &Path,
    chain: Vec<rustls_pki_types::CertificateDer<'static>>,
) -> Result<(), ConnectError> {
    use rustls_pki_types::pem::PemObject as _;
    let invalid = |problem: String| ConnectError::Invalid {
        file: CredentialFile::EtcdKey,
        path: path.to_owned(),
        problem,
    };
    let der = rustls_pki_types::PrivateKeyDer::from_pem_slice(key).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => invalid(
            "holds no private key (no -----BEGIN PRIVATE KEY----- or RSA/EC PRIVATE KEY block)"
                .to_owned(),
        ),
        other => invalid(format!("not a PEM private key: {other}")),
    })?;
    let key = rustls::crypto::ring::sign::any_supported_type(&der)
        .map_err(|e| invalid(format!("not a usable private key: {e}")))?;
    match rustls::sign::CertifiedKey::new(chain, key).keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(()),
        Err(rustls::Error::InconsistentKeys(_)) => Err(invalid(format!(
            "is not the key of the certificate {}",
            cert_path.display()
        ))),
        Err(other) => Err(ConnectError::Invalid {
            file: CredentialFile::EtcdCert,
            path: cert_path.to_owned(),
            problem: format!("not a usable certificate: {other}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_not_shown() {
        let user = EtcdUser::new("rollout", "hunter2");
        assert!(!format!("{user:?}").contains("hunter2"));
        let basic = PrometheusAuth::basic("ops", "hunter2");
        assert!(!format!("{basic:?}").contains("hunter2"));
        assert_eq!(basic.describe(), "basic auth as user ops");
    }

    #[test]
    fn basic_auth_is_base64_of_user_colon_password() {
        // RFC 7617's example.
        let header = PrometheusAuth::basic("Aladdin", "open sesame")
            .header()
            .unwrap();
        assert_eq!(
            header.as_deref(),
            Some("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")
        );
    }

    #[test]
    fn a_token_file_is_read_trimmed_and_must_hold_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "abc.def\n").unwrap();
        let auth = PrometheusAuth::bearer_token_file(&path);
        assert_eq!(auth.header().unwrap().as_deref(), Some("Bearer abc.def"));
        std::fs::write(&path, "\n").unwrap();
        let err = auth.check().unwrap_err().to_string();
        assert!(err.contains("is empty") && err.contains("token"), "{err}");
        std::fs::write(&path, "a\nb").unwrap();
        assert!(auth.check().is_err());
        let missing = PrometheusAuth::bearer_token_file(dir.path().join("nope"));
        let err = missing.check().unwrap_err();
        assert!(
            matches!(err, ConnectError::Unreadable { .. }) && err.to_string().contains("nope"),
            "{err}"
        );
    }

    #[test]
    fn a_file_without_certificates_is_named() {
        let path = Path::new("/x/ca.pem");
        let err = certificates(CredentialFile::EtcdCa, path, b"hello").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("/x/ca.pem") && text.contains("no certificate"),
            "{text}"
        );
    }
}
