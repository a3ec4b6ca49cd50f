//! This install's LocalSend identity: one self-signed certificate, made once and kept (with
//! its private key, 0600) in the config folder as `localsend.pem`. LocalSend names a device by
//! the SHA-256 of its DER certificate in upper-case hex (the fingerprint), so the same
//! certificate must come back at every start; it is presented as the server certificate and
//! as the client certificate LocalSend 1.18 requires.
//!
//! This is a different identity from Ferry's own device key ([`crate::secure::Identity`]):
//! a LocalSend device and a trusted Ferry device never stand for each other.

use std::path::{Path, PathBuf};

use aws_lc_rs::digest;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::LocalSendError;
use crate::secure::identity::{check_private_file, create_private_dir, create_private_file_once};

/// The file (certificate and key, PEM) in the config folder.
pub const CERT_FILE: &str = "localsend.pem";

/// A certificate and its key.
pub struct CertIdentity {
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    fingerprint: String,
}

impl std::fmt::Debug for CertIdentity {
    // Never print the private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertIdentity")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl Clone for CertIdentity {
    fn clone(&self) -> Self {
        Self {
            cert: self.cert.clone(),
            key: self.key.clone_key(),
            fingerprint: self.fingerprint.clone(),
        }
    }
}

/// SHA-256 of a DER certificate in upper-case hex: a LocalSend device's fingerprint.
pub fn fingerprint_of(der: &[u8]) -> String {
    digest::digest(&digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

impl CertIdentity {
    /// A fresh certificate that is kept nowhere (tests, and the in-process peers they run).
    pub fn generate() -> Result<Self, LocalSendError> {
        let pem = generate_pem()?;
        Self::from_pem(pem.as_bytes(), Path::new("(generated)"))
    }

    /// The certificate in `dir` (made there the first time, 0600; two processes starting at
    /// once end up with the same one).
    pub fn load_or_create(dir: &Path) -> Result<Self, LocalSendError> {
        let path = dir.join(CERT_FILE);
        if !path.exists() {
            create_private_dir(dir).map_err(|e| LocalSendError::Identity(e.to_string()))?;
            let pem = generate_pem()?;
            create_private_file_once(&path, pem.as_bytes())
                .map_err(|e| LocalSendError::Identity(e.to_string()))?;
        }
        check_private_file(&path).map_err(|e| LocalSendError::Identity(e.to_string()))?;
        let bytes = std::fs::read(&path).map_err(|e| identity_error(&path, &e.to_string()))?;
        Self::from_pem(&bytes, &path)
    }

    fn from_pem(pem: &[u8], path: &Path) -> Result<Self, LocalSendError> {
        let cert = CertificateDer::from_pem_slice(pem)
            .map_err(|e| identity_error(path, &format!("no certificate: {e}")))?;
        let key = PrivateKeyDer::from_pem_slice(pem)
            .map_err(|e| identity_error(path, &format!("no private key: {e}")))?;
        let fingerprint = fingerprint_of(&cert);
        Ok(Self {
            cert,
            key,
            fingerprint,
        })
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub(super) fn cert(&self) -> CertificateDer<'static> {
        self.cert.clone()
    }

    pub(super) fn key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }
}

/// The default place: Ferry's config folder (`None` where there is no home).
pub fn default_cert_dir() -> Option<PathBuf> {
    crate::secure::identity::default_config_dir()
}

fn generate_pem() -> Result<String, LocalSendError> {
    let made = rcgen::generate_simple_self_signed(vec!["localsend".to_owned()])
        .map_err(|e| LocalSendError::Identity(format!("cannot make a certificate: {e}")))?;
    Ok(format!(
        "{}{}",
        made.cert.pem(),
        made.signing_key.serialize_pem()
    ))
}

fn identity_error(path: &Path, what: &str) -> LocalSendError {
    LocalSendError::Identity(format!("{}: {what}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_certificate_is_made_once_kept_private_and_fingerprinted_in_upper_hex() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = CertIdentity::load_or_create(dir.path()).expect("made");
        let again = CertIdentity::load_or_create(dir.path()).expect("loaded");
        assert_eq!(first.fingerprint(), again.fingerprint());
        assert_eq!(first.fingerprint().len(), 64);
        assert!(
            first
                .fingerprint()
                .chars()
                .all(|c| matches!(c, '0'..='9' | 'A'..='F'))
        );
        assert_eq!(first.fingerprint(), fingerprint_of(&first.cert()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(CERT_FILE))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "mode {mode:o}");
        }
        assert_ne!(
            CertIdentity::generate().expect("fresh").fingerprint(),
            first.fingerprint()
        );
    }
}
