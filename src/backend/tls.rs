//! TLS to PostgreSQL, with libpq's `sslmode` meanings.
//!
//! tokio-postgres understands only `disable`, `prefer` and `require` and leaves certificate
//! checks to the TLS connector. tenantctl reads `sslmode` and `sslrootcert` from the connection
//! string itself and builds a rustls connector that behaves as libpq does:
//!
//! | sslmode | encryption | certificate checked |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (default) | if the server offers it | no (as libpq) |
//! | `require` | always | no, unless `sslrootcert` is given (then as `verify-ca`) |
//! | `verify-ca` | always | chain to `sslrootcert` (or the public web roots) |
//! | `verify-full` | always | chain and host name |

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::PathBuf;
use std::sync::Arc;

/// A connection string whose TLS or syntax tenantctl cannot use. Messages never quote the
/// input beyond what names the problem: it may hold a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    #[error("unknown sslmode `{0}` (use disable, prefer, require, verify-ca or verify-full)")]
    UnknownMode(String),
    #[error("expected `key=value` pairs separated by spaces")]
    NotKeyValue,
    #[error("unterminated quoted value")]
    UnterminatedQuote,
    #[error("a value ends with `\\`")]
    TrailingBackslash,
    #[error("cannot read sslrootcert `{}`: {reason}", path.display())]
    RootCert { path: PathBuf, reason: String },
    #[error("sslrootcert `{}` holds no PEM certificate", .0.display())]
    NoCertificate(PathBuf),
    #[error("{0}")]
    Verifier(String),
}

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    /// libpq's name of the mode.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    pub(crate) fn parse(value: &str) -> Result<Self, TlsError> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => return Err(TlsError::UnknownMode(other.to_string())),
        })
    }
}

/// The TLS settings of a connection string, and the string without them (for tokio-postgres,
/// which would reject `verify-ca`/`verify-full`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub mode: SslMode,
    pub root_cert: Option<PathBuf>,
    pub rest: String,
}

/// Splits `sslmode` and `sslrootcert` out of a URL (`postgres://...?sslmode=...`) or a
/// key=value connection string (libpq's syntax: spaces around `=` allowed, values quoted with
/// `'...'` and backslash escapes).
///
/// # Errors
/// An unknown `sslmode`, or a string that is neither form. Messages never quote the input:
/// it may hold a password.
pub fn split(connection: &str) -> Result<TlsSettings, TlsError> {
    let mut mode = None;
    let mut root_cert = None;
    if connection.starts_with("postgres://") || connection.starts_with("postgresql://") {
        // Not `url::Url`: it refuses the multi-host form (`h1:5432,h2:5433`) that libpq and
        // tokio-postgres accept. The query is everything after the first `?`.
        let (base, query) = match connection.split_once('?') {
            Some((base, query)) => (base, query),
            None => (connection, ""),
        };
        let mut kept = url::form_urlencoded::Serializer::new(String::new());
        let mut any = false;
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match key.as_ref() {
                "sslmode" => mode = Some(SslMode::parse(&value)?),
                "sslrootcert" => root_cert = Some(PathBuf::from(value.as_ref())),
                _ => {
                    kept.append_pair(&key, &value);
                    any = true;
                }
            }
        }
        let rest = if any {
            format!("{base}?{}", kept.finish())
        } else {
            base.to_string()
        };
        return Ok(TlsSettings {
            mode: mode.unwrap_or(SslMode::Prefer),
            root_cert,
            rest,
        });
    }
    let mut kept = Vec::new();
    for (key, value) in key_value_pairs(connection)? {
        match key.as_str() {
            "sslmode" => mode = Some(SslMode::parse(&value)?),
            "sslrootcert" => root_cert = Some(PathBuf::from(value)),
            _ => kept.push(format!(
                "{key}='{}'",
                value.replace('\\', "\\\\").replace('\'', "\\'")
            )),
        }
    }
    Ok(TlsSettings {
        mode: mode.unwrap_or(SslMode::Prefer),
        root_cert,
        rest: kept.join(" "),
    })
}

/// Tokenizes a libpq key=value connection string: `key = value` with optional spaces around
/// `=`, values either bare (up to the next space) or single-quoted, `\\` escaping the next
/// character in both.
///
/// # Errors
/// A key without `=` or an unterminated quote; the message never repeats the input.
pub fn key_value_pairs(connection: &str) -> Result<Vec<(String, String)>, TlsError> {
    let mut pairs = Vec::new();
    let mut chars = connection.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| c.is_ascii_alphanumeric() || *c == '_') {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if key.is_empty() || chars.next() != Some('=') {
            return Err(TlsError::NotKeyValue);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\\') => match chars.next() {
                        Some(c) => value.push(c),
                        None => return Err(TlsError::UnterminatedQuote),
                    },
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => return Err(TlsError::UnterminatedQuote),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    match chars.next() {
                        Some(escaped) => value.push(escaped),
                        None => return Err(TlsError::TrailingBackslash),
                    }
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
}

/// The tokio-postgres mode for a libpq mode: verification happens in the connector.
pub fn transport_mode(mode: SslMode) -> tokio_postgres::config::SslMode {
    match mode {
        SslMode::Disable => tokio_postgres::config::SslMode::Disable,
        SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
            tokio_postgres::config::SslMode::Require
        }
    }
}

/// The rustls connector for these settings.
///
/// # Errors
/// `sslrootcert` cannot be read or holds no certificate.
pub fn connector(
    settings: &TlsSettings,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    match &settings.root_cert {
        Some(path) => {
            let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|iter| iter.collect::<Result<_, _>>())
                .map_err(|error| TlsError::RootCert {
                    path: path.clone(),
                    reason: error.to_string(),
                })?;
            if certificates.is_empty() {
                return Err(TlsError::NoCertificate(path.clone()));
            }
            for certificate in certificates {
                roots.add(certificate).map_err(|error| TlsError::RootCert {
                    path: path.clone(),
                    reason: error.to_string(),
                })?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let verify_ca = settings.mode == SslMode::VerifyCa
        || (settings.mode == SslMode::Require && settings.root_cert.is_some());
    let policy = match settings.mode {
        SslMode::VerifyFull => Policy::Full,
        _ if verify_ca => Policy::ChainOnly,
        _ => Policy::None,
    };
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|error| TlsError::Verifier(error.to_string()))?;
    let verifier = Arc::new(Verifier {
        policy,
        webpki,
        provider: provider.clone(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsError::Verifier(error.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Policy {
    /// `prefer`/`require` without a root certificate: encryption only, as libpq does.
    None,
    /// `verify-ca`: the chain must lead to a trusted root; the host name is not checked.
    ChainOnly,
    /// `verify-full`: chain and host name.
    Full,
}

/// Applies the policy; signatures of the handshake are always verified.
#[derive(Debug)]
struct Verifier {
    policy: Policy,
    webpki: Arc<WebPkiServerVerifier>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.policy == Policy::None {
            return Ok(ServerCertVerified::assertion());
        }
        match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if self.policy == Policy::ChainOnly => Ok(ServerCertVerified::assertion()),
            other => other,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_settings_are_split_out() {
        let settings = split(
            "postgres://app:pw@db.internal:5432/saas?sslmode=verify-full&sslrootcert=/etc/ca.pem&application_name=x",
        )
        .unwrap();
        assert_eq!(settings.mode, SslMode::VerifyFull);
        assert_eq!(settings.root_cert, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(
            settings.rest,
            "postgres://app:pw@db.internal:5432/saas?application_name=x"
        );
        let plain = split("postgres://app@db/saas").unwrap();
        assert_eq!(plain.mode, SslMode::Prefer);
        assert_eq!(plain.rest, "postgres://app@db/saas");
    }

    #[test]
    fn key_value_settings_are_split_out() {
        let settings = split("host=db user=app sslmode=require dbname=saas").unwrap();
        assert_eq!(settings.mode, SslMode::Require);
        assert_eq!(settings.rest, "host='db' user='app' dbname='saas'");
        // libpq's syntax: spaces around `=`, quoted values with escapes
        let settings =
            split(r"host = db  password = 'it\'s \\ secret' sslmode= verify-ca").unwrap();
        assert_eq!(settings.mode, SslMode::VerifyCa);
        assert_eq!(
            key_value_pairs(&settings.rest).unwrap(),
            vec![
                ("host".to_string(), "db".to_string()),
                ("password".to_string(), r"it's \ secret".to_string()),
            ]
        );
    }

    #[test]
    fn key_value_pairs_follow_libpq() {
        assert_eq!(
            key_value_pairs("password = 'a b' user=x\\ y").unwrap(),
            vec![
                ("password".to_string(), "a b".to_string()),
                ("user".to_string(), "x y".to_string()),
            ]
        );
        let error = key_value_pairs("password secret").unwrap_err();
        assert!(!error.to_string().contains("secret"), "{error}");
        let error = key_value_pairs("password='secret").unwrap_err();
        assert!(!error.to_string().contains("secret"), "{error}");
    }

    #[test]
    fn multi_host_urls_keep_their_hosts() {
        let settings =
            split("postgres://app:pw@h1:5432,h2:5433/saas?sslmode=require&connect_timeout=5")
                .unwrap();
        assert_eq!(settings.mode, SslMode::Require);
        assert_eq!(
            settings.rest,
            "postgres://app:pw@h1:5432,h2:5433/saas?connect_timeout=5"
        );
    }

    #[test]
    fn unknown_modes_are_errors() {
        assert!(split("postgres://db/saas?sslmode=sometimes")
            .unwrap_err()
            .to_string()
            .contains("unknown sslmode `sometimes`"));
    }

    #[test]
    fn missing_root_certificate_is_an_error_naming_the_file() {
        let settings =
            split("postgres://db/saas?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem")
                .unwrap();
        let error = connector(&settings).err().unwrap();
        assert!(error.to_string().contains("/nonexistent/ca.pem"), "{error}");
    }
}
