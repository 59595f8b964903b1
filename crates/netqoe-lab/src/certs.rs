//! Self-signed CA and server certificate generated at start.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Generates a CA and a server certificate for the zone, writes `ca.pem` (and
/// `server.pem`) to `cert_dir` and returns the server TLS config and the CA path.
pub(crate) fn generate(
    cert_dir: &Path,
    zone: &str,
) -> anyhow::Result<(Arc<rustls::ServerConfig>, PathBuf)> {
    std::fs::create_dir_all(cert_dir)
        .with_context(|| format!("failed to create cert dir {}", cert_dir.display()))?;

    let ca_key = KeyPair::generate().context("failed to generate ca key")?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "netqoe-lab CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .context("failed to sign ca")?;

    let sans = vec![
        zone.to_string(),
        format!("*.{zone}"),
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let server_key = KeyPair::generate().context("failed to generate server key")?;
    let mut params = CertificateParams::new(sans).context("invalid subject alt names")?;
    params.distinguished_name.push(DnType::CommonName, zone);
    let server_cert = params
        .signed_by(&server_key, &ca_cert, &ca_key)
        .context("failed to sign server certificate")?;

    let ca_path = cert_dir.join("ca.pem");
    std::fs::write(&ca_path, ca_cert.pem())
        .with_context(|| format!("failed to write {}", ca_path.display()))?;
    let server_path = cert_dir.join("server.pem");
    std::fs::write(&server_path, server_cert.pem())
        .with_context(|| format!("failed to write {}", server_path.display()))?;

    let chain: Vec<CertificateDer<'static>> =
        vec![server_cert.der().clone(), ca_cert.der().clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("failed to pick tls versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("failed to build tls config")?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((Arc::new(cfg), ca_path))
}
