//! Destination headers (tokens, API keys) sealed at rest: AES-256-GCM under
//! a key derived from the deployment's telemetry secret, a fresh random
//! nonce per seal. The sealed text is what events and tables hold; only the
//! exporter and the control plane's "send test span" open it.

use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};

use crate::ExporterError;

/// Associated data binding a sealed value to its use.
const AAD: &[u8] = b"modelrouter telemetry headers v1";

/// Seals and opens header sets with one deployment secret.
pub struct Sealer {
    key: LessSafeKey,
    random: SystemRandom,
}

impl Sealer {
    /// A sealer for `secret` (at least 32 bytes; the key is its SHA-256).
    pub fn new(secret: &[u8]) -> Result<Sealer, ExporterError> {
        if secret.len() < 32 {
            return Err(ExporterError::Config(
                "the telemetry secret must be at least 32 bytes".into(),
            ));
        }
        let digest = Sha256::digest(secret);
        let key = UnboundKey::new(&AES_256_GCM, &digest)
            .map_err(|_| ExporterError::Config("telemetry secret: no AES key".into()))?;
        Ok(Sealer {
            key: LessSafeKey::new(key),
            random: SystemRandom::new(),
        })
    }

    /// `headers` sealed: base64 of nonce then ciphertext and tag.
    pub fn seal(&self, headers: &[(String, String)]) -> Result<String, ExporterError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| ExporterError::Config("no randomness for a nonce".into()))?;
        let mut data =
            serde_json::to_vec(headers).map_err(|e| ExporterError::Config(e.to_string()))?;
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(AAD),
                &mut data,
            )
            .map_err(|_| ExporterError::Config("sealing failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Ok(base64::engine::general_purpose::STANDARD.encode(out))
    }

    /// The headers in `sealed`; an error when it was sealed under another
    /// secret or altered.
    pub fn open(&self, sealed: &str) -> Result<Vec<(String, String)>, ExporterError> {
        let refused = || ExporterError::Sealed;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .map_err(|_| refused())?;
        if bytes.len() < NONCE_LEN {
            return Err(refused());
        }
        let (nonce, rest) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| refused())?;
        let mut data = rest.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(AAD), &mut data)
            .map_err(|_| refused())?;
        serde_json::from_slice(plain).map_err(|_| refused())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_headers_open_only_under_the_same_secret_and_unaltered() {
        let sealer = Sealer::new(&[7u8; 32]).unwrap();
        let headers = vec![("x-honeycomb-team".to_owned(), "hc_secret_token".to_owned())];
        let sealed = sealer.seal(&headers).unwrap();
        assert!(!sealed.contains("hc_secret"), "{sealed}");
        assert_ne!(
            sealed,
            sealer.seal(&headers).unwrap(),
            "fresh nonce each time"
        );
        assert_eq!(sealer.open(&sealed).unwrap(), headers);

        let other = Sealer::new(&[8u8; 32]).unwrap();
        assert!(matches!(other.open(&sealed), Err(ExporterError::Sealed)));
        let mut bytes = base64::engine::general_purpose::STANDARD
            .decode(&sealed)
            .unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let altered = base64::engine::general_purpose::STANDARD.encode(bytes);
        assert!(matches!(sealer.open(&altered), Err(ExporterError::Sealed)));
        assert!(matches!(
            sealer.open("not base64!"),
            Err(ExporterError::Sealed)
        ));
        assert!(Sealer::new(b"short").is_err());
    }
}
