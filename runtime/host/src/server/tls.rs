//! TLS for the HTTPS listener: rustls with the aws-lc-rs provider, which offers the hybrid
//! post-quantum key exchange X25519MLKEM768 first, then X25519, P-256 and P-384.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::Error;

/// A certificate chain and its private key. `Debug` does not show the key.
pub struct TlsIdentity {
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    /// The PEM texts, for the HTTP/3 listener's BoringSSL.
    #[cfg(feature = "http3")]
    cert_pem: Vec<u8>,
    #[cfg(feature = "http3")]
    key_pem: Vec<u8>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("certs", &self.certs.len())
            .field("key", &"<hidden>")
            .finish()
    }
}

impl TlsIdentity {
    /// Reads a PEM certificate chain and a PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, Error> {
        let cert_pem =
            std::fs::read(cert).map_err(|e| Error::io(format!("reading {}", cert.display()), e))?;
        let key_pem =
            std::fs::read(key).map_err(|e| Error::io(format!("reading {}", key.display()), e))?;
        Self::from_pem(&cert_pem, &key_pem).map_err(|e| match e {
            Error::Tls(m) => Error::Tls(format!("{} / {}: {m}", cert.display(), key.display())),
            other => other,
        })
    }

    /// Parses a PEM certificate chain and a PEM private key.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, Error> {
        let certs = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::Tls(format!("bad certificate PEM: {e}")))?;
        if certs.is_empty() {
            return Err(Error::Tls("no certificate found in the PEM".into()));
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| Error::Tls(format!("bad private key PEM: {e}")))?;
        Ok(Self {
            certs,
            key,
            #[cfg(feature = "http3")]
            cert_pem: cert_pem.to_vec(),
            #[cfg(feature = "http3")]
            key_pem: key_pem.to_vec(),
        })
    }

    /// A BoringSSL context holding this certificate chain and key, for quiche.
    #[cfg(feature = "http3")]
    pub(crate) fn boring_context(
        &self,
    ) -> Result<boring::ssl::SslContextBuilder, boring::error::ErrorStack> {
        use boring::pkey::PKey;
        use boring::x509::X509;
        let mut builder = boring::ssl::SslContextBuilder::new(boring::ssl::SslMethod::tls())?;
        let mut chain = X509::stack_from_pem(&self.cert_pem)?.into_iter();
        if let Some(leaf) = chain.next() {
            builder.set_certificate(&leaf)?;
        }
        for cert in chain {
            builder.add_extra_chain_cert(cert)?;
        }
        let key = PKey::private_key_from_pem(&self.key_pem)?;
        builder.set_private_key(&key)?;
        builder.check_private_key()?;
        Ok(builder)
    }

    /// A self-signed certificate for `localhost`, `127.0.0.1` and `::1`, kept in `dir` as
    /// `self-signed.pem` (certificate, then key, in one file written atomically, so that
    /// concurrent hosts never pair one's certificate with another's key). Generated on first
    /// use and reused after, so clients can trust it once. Returns the identity and the path.
    pub fn self_signed(dir: &Path) -> Result<(Self, PathBuf), Error> {
        let path = dir.join("self-signed.pem");
        if !path.exists() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
            let names = vec![
                "localhost".to_owned(),
                "127.0.0.1".to_owned(),
                "::1".to_owned(),
            ];
            let generated = rcgen::generate_simple_self_signed(names)
                .map_err(|e| Error::Tls(format!("generating a self-signed certificate: {e}")))?;
            let pem = format!(
                "{}{}",
                generated.cert.pem(),
                generated.signing_key.serialize_pem()
            );
            write_atomically(&path, pem.as_bytes())?;
        }
        // One read for both: another host may replace the file between two reads.
        let pem = std::fs::read(&path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let identity = Self::from_pem(&pem, &pem)
            .map_err(|e| Error::Tls(format!("{}: {e}", path.display())))?;
        Ok((identity, path))
    }

    /// A rustls server configuration offering h2 and http/1.1 by ALPN.
    pub fn server_config(&self, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, Error> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(self.certs.clone(), self.key.clone_key())
            .map_err(|e| {
                Error::Tls(format!(
                    "certificate and key do not form a usable pair: {e}"
                ))
            })?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }
}

/// Writes a file so that a crash leaves either the old or the new content: temp, fsync, rename.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    use std::io::Write;
    use std::sync::atomic::{AtomicU64, Ordering};
    // A temp name of its own, so that concurrent writers never share one.
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let unique = NEXT.fetch_add(1, Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp.{}.{unique}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(parent) = path.parent() {
            std::fs::File::open(parent)?.sync_all()?;
        }
        Ok(())
    })();
    result.map_err(|e| Error::io(format!("writing {}", path.display()), e))
}
