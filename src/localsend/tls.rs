//! TLS as LocalSend uses it: self-signed certificates on both ends, no names and no
//! authorities. Who a peer is comes from its certificate's fingerprint alone:
//! - our server asks every client for a certificate and takes any (LocalSend 1.18 always
//!   sends one; the signature still proves the client holds its key), and the handlers see
//!   the client's fingerprint;
//! - our client presents our certificate and checks the server's against the fingerprint
//!   the device announced (pinned), or, when none is known yet, records what it saw.

use std::sync::{Arc, Mutex, PoisonError};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme,
};

use super::LocalSendError;
use super::identity::{CertIdentity, fingerprint_of};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn tls_error(e: rustls::Error) -> LocalSendError {
    LocalSendError::Tls(e.to_string())
}

/// Accepts any client certificate whose handshake signature checks out.
#[derive(Debug)]
struct AnyClientCert(Arc<CryptoProvider>);

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        // Older LocalSend versions send none; the handlers then know no fingerprint.
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The server's TLS configuration: our certificate, any client certificate requested.
pub fn server_config(identity: &CertIdentity) -> Result<Arc<ServerConfig>, LocalSendError> {
    let provider = provider();
    let mut config = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .with_client_cert_verifier(Arc::new(AnyClientCert(provider)))
        .with_single_cert(vec![identity.cert()], identity.key())
        .map_err(tls_error)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Checks the server's certificate against a pinned fingerprint, and records the one seen.
#[derive(Debug)]
struct PinnedServer {
    provider: Arc<CryptoProvider>,
    expected: Option<String>,
    seen: Arc<Mutex<Option<String>>>,
}

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let fingerprint = fingerprint_of(end_entity);
        let matches = self
            .expected
            .as_ref()
            .is_none_or(|expected| expected.eq_ignore_ascii_case(&fingerprint));
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner) = Some(fingerprint);
        if matches {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the device's certificate does not match its fingerprint".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A client configuration presenting `identity`, accepting only a server whose certificate
/// has the fingerprint `expected` (any, when `None`). `seen` receives the fingerprint the
/// server showed.
pub fn client_config(
    identity: &CertIdentity,
    expected: Option<&str>,
    seen: Arc<Mutex<Option<String>>>,
) -> Result<Arc<ClientConfig>, LocalSendError> {
    let provider = provider();
    let verifier = PinnedServer {
        provider: Arc::clone(&provider),
        expected: expected.map(str::to_owned),
        seen,
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(vec![identity.cert()], identity.key())
        .map_err(tls_error)?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests;
