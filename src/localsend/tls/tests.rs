//! Real TLS handshakes on 127.0.0.1 with the configurations above: the certificates LocalSend
//! apps make (RSA-2048 with SHA-256 signatures, and ECDSA P-256) on TLS 1.2 and 1.3, both as
//! server and as client, and an identity file made when Ferry's TLS ran on ring.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256, RsaKeySize};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConnection, ProtocolVersion, ServerConnection, StreamOwned};

use super::*;
use crate::localsend::identity::CERT_FILE;

/// `localsend.pem` as the ring build of Ferry made it (ECDSA P-256, rcgen), and its fingerprint.
const RING_MADE_PEM: &str = include_str!("../testdata/localsend-made-by-ring.pem");
const RING_MADE_FINGERPRINT: &str =
    "EB9816FA383EFC18E43D0547B04CAE61ED0A58567C731B1813B777A36C9F5472";

const TIMEOUT: Duration = Duration::from_secs(10);

/// One handshake over a real socket; then the server writes "ok" and the client reads it (so
/// a server that refuses the client's certificate fails it too). Returns the version agreed
/// and the client certificate's fingerprint as the server saw it.
fn handshake(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
) -> Result<(ProtocolVersion, Option<String>), String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let serving = std::thread::spawn(move || -> Result<Option<String>, String> {
        let (sock, _) = listener.accept().map_err(|e| e.to_string())?;
        sock.set_read_timeout(Some(TIMEOUT))
            .map_err(|e| e.to_string())?;
        let conn = ServerConnection::new(server).map_err(|e| e.to_string())?;
        let mut tls = StreamOwned::new(conn, sock);
        while tls.conn.is_handshaking() {
            tls.conn
                .complete_io(&mut tls.sock)
                .map_err(|e| format!("server: {e}"))?;
        }
        tls.write_all(b"ok").map_err(|e| e.to_string())?;
        tls.flush().map_err(|e| e.to_string())?;
        Ok(tls
            .conn
            .peer_certificates()
            .and_then(|certs| certs.first())
            .map(|cert| fingerprint_of(cert)))
    });
    let sock = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localsend").map_err(|e| e.to_string())?;
    let conn = ClientConnection::new(client, name).map_err(|e| e.to_string())?;
    let mut tls = StreamOwned::new(conn, sock);
    let mut ok = [0u8; 2];
    let read = tls.read_exact(&mut ok).map_err(|e| format!("client: {e}"));
    let version = tls.conn.protocol_version();
    drop(tls);
    let seen = serving.join().map_err(|_| "server panicked".to_owned())??;
    read?;
    assert_eq!(&ok, b"ok");
    Ok((version.ok_or("no version agreed")?, seen))
}

/// A peer's self-signed certificate and key, as a LocalSend app makes them.
struct Peer {
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

impl Peer {
    fn new(rsa: bool) -> Self {
        let key = if rsa {
            KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048)
        } else {
            KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        }
        .expect("key");
        let cert = CertificateParams::new(vec!["LocalSend User".to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("certificate");
        Peer {
            cert: cert.der().clone(),
            key: PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        }
    }

    fn fingerprint(&self) -> String {
        fingerprint_of(&self.cert)
    }

    fn server(&self, version: &'static rustls::SupportedProtocolVersion) -> Arc<ServerConfig> {
        let config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[version])
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![self.cert.clone()], self.key.clone_key())
            .expect("server config");
        Arc::new(config)
    }

    fn client(&self, version: &'static rustls::SupportedProtocolVersion) -> Arc<ClientConfig> {
        let provider = provider();
        let anything = PinnedServer {
            provider: Arc::clone(&provider),
            expected: None,
            seen: Arc::default(),
        };
        let config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[version])
            .expect("versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(anything))
            .with_client_auth_cert(vec![self.cert.clone()], self.key.clone_key())
            .expect("client config");
        Arc::new(config)
    }
}

#[test]
fn localsend_rsa_and_ecdsa_certificates_work_both_ways_on_tls_1_2_and_1_3() {
    let ours = CertIdentity::generate().expect("our certificate");
    for rsa in [true, false] {
        let peer = Peer::new(rsa);
        for (version, expected) in [
            (&rustls::version::TLS12, ProtocolVersion::TLSv1_2),
            (&rustls::version::TLS13, ProtocolVersion::TLSv1_3),
        ] {
            let what = format!("rsa {rsa}, {expected:?}");
            // We send to the peer: its server certificate is checked against its fingerprint.
            let seen = Arc::default();
            let client = client_config(&ours, Some(&peer.fingerprint()), Arc::clone(&seen))
                .expect("our client config");
            let (agreed, _) = handshake(peer.server(version), client).expect(&what);
            assert_eq!(agreed, expected, "{what}");
            assert_eq!(
                seen.lock().expect("seen").as_deref(),
                Some(peer.fingerprint().as_str()),
                "{what}"
            );
            // The peer sends to us: our server sees its client certificate.
            let server = server_config(&ours).expect("our server config");
            let (agreed, client_seen) = handshake(server, peer.client(version)).expect(&what);
            assert_eq!(agreed, expected, "{what}");
            assert_eq!(client_seen, Some(peer.fingerprint()), "{what}");
        }
    }
}

#[test]
fn a_certificate_file_made_by_the_ring_build_keeps_its_fingerprint_and_still_signs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(CERT_FILE);
    std::fs::write(&path, RING_MADE_PEM).expect("write");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    let old = CertIdentity::load_or_create(dir.path()).expect("loaded");
    assert_eq!(old.fingerprint(), RING_MADE_FINGERPRINT);
    let fresh = CertIdentity::generate().expect("fresh");
    // As a server, and as a client (LocalSend 1.18 asks for our certificate).
    let seen = Arc::default();
    let client = client_config(&fresh, Some(RING_MADE_FINGERPRINT), Arc::clone(&seen))
        .expect("client config");
    handshake(server_config(&old).expect("server config"), client).expect("old as server");
    assert_eq!(
        seen.lock().expect("seen").as_deref(),
        Some(RING_MADE_FINGERPRINT)
    );
    let client = client_config(&old, Some(fresh.fingerprint()), Arc::default()).expect("client");
    let (_, client_seen) =
        handshake(server_config(&fresh).expect("server config"), client).expect("old as client");
    assert_eq!(client_seen.as_deref(), Some(RING_MADE_FINGERPRINT));
}

#[test]
fn a_server_certificate_off_its_pinned_fingerprint_is_refused() {
    let ours = CertIdentity::generate().expect("ours");
    let peer = Peer::new(true);
    let client = client_config(&ours, Some(RING_MADE_FINGERPRINT), Arc::default()).expect("client");
    let refused = handshake(peer.server(&rustls::version::TLS13), client);
    assert!(refused.is_err(), "{refused:?}");
}
