//! X.509 for a node's HTTPS endpoints (webhook callbacks, and later agents over mTLS): an
//! org certificate authority made with `rcgen`, the certificates it issues, and `rustls`
//! configurations that trust exactly that authority and nothing else (no system or
//! WebPKI roots).
//!
//! Every key here is Ed25519, generated from the caller's CSPRNG, and the CA may only sign
//! end-entity certificates (path length 0). Certificate validity during a handshake is
//! checked by rustls against the clock of the process running the TLS connection.

use std::sync::Arc;

use rand_core::CryptoRng;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ED25519, SerialNumber,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::time_provider::{DefaultTimeProvider, TimeProvider};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::keys::Keypair;

/// An org's certificate authority for HTTPS endpoints.
pub struct OrgCa {
    issuer: Issuer<'static, KeyPair>,
    cert: CertificateDer<'static>,
}

/// A certificate issued by an [`OrgCa`], with its private key.
pub struct LeafCert {
    cert: CertificateDer<'static>,
    key: Zeroizing<Vec<u8>>,
}

/// Why a certificate or TLS configuration could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum X509Error {
    /// A time is outside what X.509 can express.
    #[error("time {0} cannot be written in a certificate")]
    Time(u64),
    /// The names for a certificate are missing or invalid.
    #[error("invalid certificate names: {0}")]
    Names(String),
    /// PEM text could not be read.
    #[error("invalid pem: {0}")]
    Pem(String),
    /// rcgen refused to build a certificate.
    #[error("cannot build certificate: {0}")]
    Build(#[from] rcgen::Error),
    /// rustls refused the configuration.
    #[error("cannot build tls configuration: {0}")]
    Tls(String),
}

impl OrgCa {
    /// Creates a CA for `org`, valid from `not_before` until `not_after` (seconds since the
    /// Unix epoch), with a fresh Ed25519 key.
    pub fn generate<R: CryptoRng + ?Sized>(
        org: &str,
        rng: &mut R,
        not_before: u64,
        not_after: u64,
    ) -> Result<Self, X509Error> {
        let key = rcgen_key(&Keypair::generate(rng).pkcs8_der())?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{org} otto ca"));
        params
            .distinguished_name
            .push(DnType::OrganizationName, org);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(serial(rng));
        params.not_before = datetime(not_before)?;
        params.not_after = datetime(not_after)?;
        let cert = params.self_signed(&key)?.der().clone();
        Ok(Self {
            issuer: Issuer::new(params, key),
            cert,
        })
    }

    /// Loads a CA from its certificate and PKCS#8 key, both PEM, as written by
    /// [`OrgCa::cert_pem`] and [`OrgCa::key_pem`].
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, X509Error> {
        let key = KeyPair::from_pkcs8_pem_and_sign_algo(key_pem, &PKCS_ED25519)
            .map_err(|e| X509Error::Pem(e.to_string()))?;
        let cert = parse_cert_pem(cert_pem)?;
        let issuer = Issuer::from_ca_cert_der(&cert, key)?;
        Ok(Self { issuer, cert })
    }

    /// The CA certificate (DER): what clients and servers trust.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// The CA certificate as PEM.
    pub fn cert_pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.cert)
    }

    /// The CA's private key as PKCS#8 PEM; keep it in a file written by
    /// [`crate::persist::write_private_file`].
    pub fn key_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(self.issuer.key().serialize_pem())
    }

    /// Issues a server certificate for `names` (DNS names or IP addresses such as
    /// `127.0.0.1`), valid from `not_before` until `not_after`.
    pub fn issue_server_cert<R: CryptoRng + ?Sized>(
        &self,
        names: &[&str],
        rng: &mut R,
        not_before: u64,
        not_after: u64,
    ) -> Result<LeafCert, X509Error> {
        if names.is_empty() {
            return Err(X509Error::Names(
                "a server certificate needs a name".to_owned(),
            ));
        }
        self.issue(
            names,
            ExtendedKeyUsagePurpose::ServerAuth,
            rng,
            not_before,
            not_after,
        )
    }

    /// Issues a client certificate for `name` (e.g. an agent), for mutual TLS.
    pub fn issue_client_cert<R: CryptoRng + ?Sized>(
        &self,
        name: &str,
        rng: &mut R,
        not_before: u64,
        not_after: u64,
    ) -> Result<LeafCert, X509Error> {
        self.issue(
            &[name],
            ExtendedKeyUsagePurpose::ClientAuth,
            rng,
            not_before,
            not_after,
        )
    }

    fn issue<R: CryptoRng + ?Sized>(
        &self,
        names: &[&str],
        usage: ExtendedKeyUsagePurpose,
        rng: &mut R,
        not_before: u64,
        not_after: u64,
    ) -> Result<LeafCert, X509Error> {
        let key_der = Keypair::generate(rng).pkcs8_der();
        let key = rcgen_key(&key_der)?;
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params =
            CertificateParams::new(names.clone()).map_err(|e| X509Error::Names(e.to_string()))?;
        params.distinguished_name = DistinguishedName::new();
        if let Some(first) = names.first() {
            params
                .distinguished_name
                .push(DnType::CommonName, first.as_str());
        }
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(serial(rng));
        params.not_before = datetime(not_before)?;
        params.not_after = datetime(not_after)?;
        let cert = params.signed_by(&key, &self.issuer)?.der().clone();
        Ok(LeafCert { cert, key: key_der })
    }
}

impl LeafCert {
    /// Loads a certificate and its PKCS#8 key, both PEM.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, X509Error> {
        let cert = parse_cert_pem(cert_pem)?;
        let key = KeyPair::from_pkcs8_pem_and_sign_algo(key_pem, &PKCS_ED25519)
            .map_err(|e| X509Error::Pem(e.to_string()))?;
        Ok(Self {
            cert,
            key: Zeroizing::new(key.serialize_der()),
        })
    }

    /// The certificate (DER).
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// The certificate as PEM.
    pub fn cert_pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.cert)
    }

    /// The private key as PKCS#8 PEM.
    pub fn key_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(pem_encode("PRIVATE KEY", &self.key))
    }

    fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.to_vec()))
    }
}

/// A TLS server configuration presenting `server`; with `client_ca`, it also requires a
/// client certificate issued by that CA (mutual TLS).
pub fn server_config(
    server: &LeafCert,
    client_ca: Option<&CertificateDer<'_>>,
) -> Result<ServerConfig, X509Error> {
    server_config_at(server, client_ca, Arc::new(DefaultTimeProvider))
}

/// A TLS client configuration that trusts only certificates issued by `ca`; with `client`,
/// it presents that certificate when the server asks for one.
pub fn client_config(
    ca: &CertificateDer<'_>,
    client: Option<&LeafCert>,
) -> Result<ClientConfig, X509Error> {
    client_config_at(ca, client, Arc::new(DefaultTimeProvider))
}

pub(crate) fn server_config_at(
    server: &LeafCert,
    client_ca: Option<&CertificateDer<'_>>,
    time: Arc<dyn TimeProvider>,
) -> Result<ServerConfig, X509Error> {
    let provider = provider();
    let builder = ServerConfig::builder_with_details(provider.clone(), time)
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?;
    let builder = match client_ca {
        Some(ca) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider)
                    .build()
                    .map_err(tls_error)?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    builder
        .with_single_cert(vec![server.cert.clone()], server.private_key())
        .map_err(tls_error)
}

pub(crate) fn client_config_at(
    ca: &CertificateDer<'_>,
    client: Option<&LeafCert>,
    time: Arc<dyn TimeProvider>,
) -> Result<ClientConfig, X509Error> {
    let builder = ClientConfig::builder_with_details(provider(), time)
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .with_root_certificates(roots(ca)?);
    match client {
        Some(leaf) => builder
            .with_client_auth_cert(vec![leaf.cert.clone()], leaf.private_key())
            .map_err(tls_error),
        None => Ok(builder.with_no_client_auth()),
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca: &CertificateDer<'_>) -> Result<RootCertStore, X509Error> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone().into_owned()).map_err(tls_error)?;
    Ok(roots)
}

fn rcgen_key(pkcs8: &[u8]) -> Result<KeyPair, X509Error> {
    Ok(KeyPair::from_pkcs8_der_and_sign_algo(
        &PrivatePkcs8KeyDer::from(pkcs8),
        &PKCS_ED25519,
    )?)
}

/// A random positive 16-byte serial number.
fn serial<R: CryptoRng + ?Sized>(rng: &mut R) -> SerialNumber {
    let mut bytes = [0u8; 16];
    rng.fill_bytes(&mut bytes);
    bytes[0] = (bytes[0] & 0x7f).max(1);
    SerialNumber::from_slice(&bytes)
}

fn datetime(secs: u64) -> Result<OffsetDateTime, X509Error> {
    i64::try_from(secs)
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .ok_or(X509Error::Time(secs))
}

fn parse_cert_pem(text: &str) -> Result<CertificateDer<'static>, X509Error> {
    use rustls::pki_types::pem::PemObject as _;
    CertificateDer::from_pem_slice(text.as_bytes()).map_err(|e| X509Error::Pem(e.to_string()))
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn tls_error(e: impl std::fmt::Display) -> X509Error {
    X509Error::Tls(e.to_string())
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};

    use rand::SeedableRng as _;
    use rand::rngs::StdRng;
    use rustls::pki_types::{ServerName, UnixTime};
    use rustls::{ClientConnection, ServerConnection};

    use super::*;

    /// 2025-01-01T00:00:00Z, the fixed "now" of these tests.
    const NOW: u64 = 1_735_689_600;
    const DAY: u64 = 86_400;

    #[derive(Debug)]
    struct FixedTime(u64);

    impl TimeProvider for FixedTime {
        fn current_time(&self) -> Option<UnixTime> {
            Some(UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                self.0,
            )))
        }
    }

    fn at(now: u64) -> Arc<dyn TimeProvider> {
        Arc::new(FixedTime(now))
    }

    fn new_ca(seed: u64) -> OrgCa {
        OrgCa::generate(
            "acme-ops",
            &mut StdRng::seed_from_u64(seed),
            NOW - DAY,
            NOW + 365 * DAY,
        )
        .unwrap()
    }

    fn server_cert(ca: &OrgCa) -> LeafCert {
        ca.issue_server_cert(
            &["localhost", "127.0.0.1"],
            &mut StdRng::seed_from_u64(9),
            NOW - DAY,
            NOW + 30 * DAY,
        )
        .unwrap()
    }

    /// Runs a TLS handshake between the two configurations over in-memory buffers, then
    /// sends one message each way. Returns the first error either side reports.
    fn handshake(
        client: ClientConfig,
        server: ServerConfig,
        name: &str,
    ) -> Result<(), rustls::Error> {
        let name = ServerName::try_from(name.to_owned()).unwrap();
        let mut client = ClientConnection::new(Arc::new(client), name)?;
        let mut server = ServerConnection::new(Arc::new(server))?;
        for _ in 0..20 {
            if !client.is_handshaking() && !server.is_handshaking() {
                break;
            }
            transfer(&mut client, &mut server)?;
            transfer(&mut server, &mut client)?;
        }
        if client.is_handshaking() || server.is_handshaking() {
            // A refused peer certificate shows up as an alert in the other direction.
            transfer(&mut client, &mut server)?;
            transfer(&mut server, &mut client)?;
            return Err(rustls::Error::General("handshake did not finish".into()));
        }
        client.writer().write_all(b"ping").unwrap();
        transfer(&mut client, &mut server)?;
        let mut got = [0u8; 4];
        server.reader().read_exact(&mut got).unwrap();
        assert_eq!(&got, b"ping");
        server.writer().write_all(b"pong").unwrap();
        transfer(&mut server, &mut client)?;
        client.reader().read_exact(&mut got).unwrap();
        assert_eq!(&got, b"pong");
        Ok(())
    }

    fn transfer<A, B, DA, DB>(from: &mut A, to: &mut B) -> Result<(), rustls::Error>
    where
        A: std::ops::DerefMut<Target = rustls::ConnectionCommon<DA>>,
        B: std::ops::DerefMut<Target = rustls::ConnectionCommon<DB>>,
    {
        let mut buf = Vec::new();
        while from.wants_write() {
            from.write_tls(&mut buf).unwrap();
        }
        let mut slice = buf.as_slice();
        while !slice.is_empty() {
            to.read_tls(&mut slice).unwrap();
            to.process_new_packets()?;
        }
        Ok(())
    }

    #[test]
    fn client_trusting_the_org_ca_connects() {
        let ca = new_ca(1);
        let server = server_config_at(&server_cert(&ca), None, at(NOW)).unwrap();
        let client = client_config_at(ca.cert_der(), None, at(NOW)).unwrap();
        handshake(client.clone(), server.clone(), "localhost").unwrap();
        handshake(client, server, "127.0.0.1").unwrap();
    }

    #[test]
    fn client_trusting_another_ca_refuses_the_server() {
        let ca = new_ca(1);
        let server = server_config_at(&server_cert(&ca), None, at(NOW)).unwrap();
        let other =
            OrgCa::generate("acme-dev", &mut StdRng::seed_from_u64(2), 0, NOW + DAY).unwrap();
        let client = client_config_at(other.cert_der(), None, at(NOW)).unwrap();
        let err = handshake(client, server.clone(), "localhost").unwrap_err();
        assert!(
            matches!(
                err,
                rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
            ),
            "{err:?}"
        );
        // An impostor CA with the same name but its own key does not help either.
        let impostor = new_ca(2);
        let client = client_config_at(impostor.cert_der(), None, at(NOW)).unwrap();
        let err = handshake(client, server, "localhost").unwrap_err();
        assert!(
            matches!(
                err,
                rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature)
            ),
            "{err:?}"
        );
    }

    #[test]
    fn wrong_name_and_expired_certificate_are_refused() {
        let ca = new_ca(1);
        let leaf = server_cert(&ca);
        let client = client_config_at(ca.cert_der(), None, at(NOW)).unwrap();
        let server = server_config_at(&leaf, None, at(NOW)).unwrap();
        assert!(matches!(
            handshake(client, server.clone(), "example.com"),
            Err(rustls::Error::InvalidCertificate(_))
        ));
        let later = client_config_at(ca.cert_der(), None, at(NOW + 31 * DAY)).unwrap();
        assert!(matches!(
            handshake(later, server, "localhost"),
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Expired
            )) | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ExpiredContext { .. }
            ))
        ));
    }

    #[test]
    fn mutual_tls_requires_a_client_certificate_from_the_ca() {
        let ca = new_ca(1);
        let server = server_config_at(&server_cert(&ca), Some(ca.cert_der()), at(NOW)).unwrap();
        let agent = ca
            .issue_client_cert(
                "agent-1",
                &mut StdRng::seed_from_u64(3),
                NOW - DAY,
                NOW + DAY,
            )
            .unwrap();
        let with_cert = client_config_at(ca.cert_der(), Some(&agent), at(NOW)).unwrap();
        handshake(with_cert, server.clone(), "localhost").unwrap();

        let without = client_config_at(ca.cert_der(), None, at(NOW)).unwrap();
        assert!(handshake(without, server.clone(), "localhost").is_err());

        let stranger = new_ca(2)
            .issue_client_cert(
                "agent-x",
                &mut StdRng::seed_from_u64(4),
                NOW - DAY,
                NOW + DAY,
            )
            .unwrap();
        let foreign = client_config_at(ca.cert_der(), Some(&stranger), at(NOW)).unwrap();
        assert!(handshake(foreign, server, "localhost").is_err());
    }

    #[test]
    fn pem_round_trip_keeps_issuing_for_the_same_ca() {
        let ca = new_ca(1);
        let loaded = OrgCa::from_pem(&ca.cert_pem(), &ca.key_pem()).unwrap();
        assert_eq!(loaded.cert_der(), ca.cert_der());
        let leaf = server_cert(&loaded);
        let leaf = LeafCert::from_pem(&leaf.cert_pem(), &leaf.key_pem()).unwrap();
        let server = server_config_at(&leaf, None, at(NOW)).unwrap();
        let client = client_config_at(ca.cert_der(), None, at(NOW)).unwrap();
        handshake(client, server, "localhost").unwrap();
        // The public constructors build too (they read the clock only during handshakes).
        assert!(server_config(&leaf, Some(ca.cert_der())).is_ok());
        assert!(client_config(ca.cert_der(), Some(&leaf)).is_ok());
    }

    #[test]
    fn construction_errors() {
        let ca = new_ca(1);
        let mut rng = StdRng::seed_from_u64(5);
        assert!(matches!(
            ca.issue_server_cert(&[], &mut rng, NOW, NOW + 1),
            Err(X509Error::Names(_))
        ));
        assert!(matches!(
            OrgCa::generate("x", &mut rng, 0, u64::MAX),
            Err(X509Error::Time(u64::MAX))
        ));
        assert!(matches!(
            OrgCa::from_pem("nope", &ca.key_pem()),
            Err(X509Error::Pem(_))
        ));
        assert!(matches!(
            OrgCa::from_pem(&ca.cert_pem(), "nope"),
            Err(X509Error::Pem(_))
        ));
    }
}
