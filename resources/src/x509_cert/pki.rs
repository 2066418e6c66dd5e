//! The certificate side of `x509_cert`: what a certificate must say
//! ([`Subject`]: common name, SANs, key type), what an existing one says
//! (read with `x509-parser`), whether it must be made again, and making a
//! new key and self-signed certificate (`rcgen`). No files and no context:
//! the resource in `x509_cert.rs` reads and writes those.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;

/// A new certificate is valid from a little before now: a peer whose clock
/// is slightly behind still accepts it.
const BACKDATE: Duration = Duration::from_secs(300);

/// `key_type:` of a certificate.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
pub(super) enum KeyType {
    #[default]
    #[serde(rename = "ecdsa-p256")]
    EcdsaP256,
    #[serde(rename = "ecdsa-p384")]
    EcdsaP384,
    #[serde(rename = "ed25519")]
    Ed25519,
    /// Refused with a hint: rcgen's ring backend cannot generate RSA keys.
    #[serde(rename = "rsa")]
    Rsa,
}

impl KeyType {
    fn algorithm(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            KeyType::EcdsaP256 | KeyType::Rsa => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyType::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyType::Ed25519 => &rcgen::PKCS_ED25519,
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyType::EcdsaP256 => "ecdsa-p256",
            KeyType::EcdsaP384 => "ecdsa-p384",
            KeyType::Ed25519 => "ed25519",
            KeyType::Rsa => "rsa",
        })
    }
}

/// One subject alternative name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum San {
    /// Lower-cased: DNS names compare without case.
    Dns(String),
    Ip(IpAddr),
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            San::Dns(d) => write!(f, "DNS:{d}"),
            San::Ip(ip) => write!(f, "IP:{ip}"),
        }
    }
}

/// What the certificate must say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Subject {
    pub(super) common_name: String,
    /// Sorted, without duplicates.
    pub(super) sans: Vec<San>,
    pub(super) key_type: KeyType,
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sans: Vec<String> = self.sans.iter().map(San::to_string).collect();
        write!(
            f,
            "CN={}, SAN [{}], {}",
            self.common_name,
            sans.join(", "),
            self.key_type
        )
    }
}

/// A SAN as written: an IP address, else a DNS name (`*.` allowed first).
pub(super) fn parse_san(text: &str) -> Result<San, String> {
    let t = text.trim();
    if let Ok(ip) = t.parse::<IpAddr>() {
        return Ok(San::Ip(ip));
    }
    let name = t.strip_prefix("*.").unwrap_or(t);
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
    if !ok {
        return Err(format!(
            "subject_alt_names: '{text}' is neither an IP address nor a DNS name"
        ));
    }
    Ok(San::Dns(t.to_ascii_lowercase()))
}

/// What an existing certificate says, as far as this type compares it.
#[derive(Debug)]
pub(super) struct Existing {
    pub(super) common_name: String,
    pub(super) sans: Vec<San>,
    /// Seconds since the epoch.
    pub(super) not_after: i64,
    pub(super) not_after_text: String,
    /// The DER SubjectPublicKeyInfo, to match the key against.
    pub(super) spki: Vec<u8>,
}

/// Reads a PEM certificate.
pub(super) fn read_cert(pem: &[u8]) -> Result<Existing, String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem).map_err(|e| e.to_string())?;
    let cert = pem.parse_x509().map_err(|e| e.to_string())?;
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_string();
    let mut sans = Vec::new();
    if let Some(ext) = cert.subject_alternative_name().map_err(|e| e.to_string())? {
        use x509_parser::extensions::GeneralName;
        for name in &ext.value.general_names {
            match name {
                GeneralName::DNSName(d) => sans.push(San::Dns(d.to_ascii_lowercase())),
                GeneralName::IPAddress(b) => match b.len() {
                    4 => sans.push(San::Ip(IpAddr::from(
                        <[u8; 4]>::try_from(*b).unwrap_or_default(),
                    ))),
                    16 => sans.push(San::Ip(IpAddr::from(
                        <[u8; 16]>::try_from(*b).unwrap_or_default(),
                    ))),
                    _ => return Err("an IP address SAN of odd length".into()),
                },
                other => sans.push(San::Dns(format!("{other}"))),
            }
        }
    }
    sans.sort();
    sans.dedup();
    let not_after = cert.validity().not_after;
    Ok(Existing {
        common_name,
        sans,
        not_after: not_after.timestamp(),
        not_after_text: not_after.to_string(),
        spki: cert.public_key().raw.to_vec(),
    })
}

/// Why the pair must be made again, if it must.
pub(super) fn renew_reason(
    want: &Subject,
    renew_before: Duration,
    cert: Option<&[u8]>,
    key: Option<&[u8]>,
    now: i64,
) -> Option<String> {
    let Some(cert) = cert else {
        return Some("no certificate".into());
    };
    let existing = match read_cert(cert) {
        Ok(e) => e,
        Err(e) => return Some(format!("the certificate is unreadable ({e})")),
    };
    let Some(key) = key else {
        return Some("no key".into());
    };
    // The parse error is not shown: it could quote the key.
    let key = match std::str::from_utf8(key)
        .ok()
        .and_then(|k| rcgen::KeyPair::from_pem(k).ok())
    {
        Some(k) => k,
        None => return Some("the key is unreadable (not a PKCS#8 PEM key)".into()),
    };
    use rcgen::PublicKeyData;
    if key.subject_public_key_info() != existing.spki {
        return Some("the key is not the certificate's".into());
    }
    if key.algorithm() != want.key_type.algorithm() {
        return Some(format!("the key is not {}", want.key_type));
    }
    if existing.common_name != want.common_name {
        return Some(format!("the common name is '{}'", existing.common_name));
    }
    if existing.sans != want.sans {
        let sans: Vec<String> = existing.sans.iter().map(San::to_string).collect();
        return Some(format!("the SANs are [{}]", sans.join(", ")));
    }
    let left = existing.not_after - now;
    let margin = i64::try_from(renew_before.as_secs()).unwrap_or(i64::MAX);
    if left < margin {
        return Some(format!(
            "it expires {} (in {}), within renew_before {}",
            existing.not_after_text,
            humantime::format_duration(Duration::from_secs(
                u64::try_from(left.max(0)).unwrap_or(0)
            )),
            humantime::format_duration(renew_before)
        ));
    }
    None
}

/// A new key and certificate saying `want`, valid `days` from now: (key
/// PEM, certificate PEM).
pub(super) fn generate(want: &Subject, days: u32) -> Result<(String, String), String> {
    let key = rcgen::KeyPair::generate_for(want.key_type.algorithm()).map_err(|e| e.to_string())?;
    let mut params = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, want.common_name.as_str());
    params.distinguished_name = dn;
    for san in &want.sans {
        params.subject_alt_names.push(match san {
            San::Dns(d) => rcgen::SanType::DnsName(
                d.as_str()
                    .try_into()
                    .map_err(|e: rcgen::Error| e.to_string())?,
            ),
            San::Ip(ip) => rcgen::SanType::IpAddress(*ip),
        });
    }
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + time::Duration::days(i64::from(days));
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    Ok((key.serialize_pem(), cert.pem()))
}
