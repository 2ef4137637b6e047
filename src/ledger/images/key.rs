//! The key that seals Secret images: its file format, and AES-256-GCM sealing and opening.
//!
//! Owns: reading `ledger.pre_images.secret_key_file` (32 random bytes written as 64 hex
//! digits, surrounding whitespace ignored) and the sealed image format: a fresh 96-bit nonce
//! followed by the AES-256-GCM ciphertext and tag of the image's JSON. Does not own where
//! sealed images are stored (the store, `super`).

use std::fmt;
use std::path::Path;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

use super::ImageError;

/// Length of the key in bytes (AES-256).
pub const KEY_BYTES: usize = 32;

/// The key Secret images are sealed with. Its bytes are never printed.
pub struct SecretKey {
    key: LessSafeKey,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl SecretKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: &[u8; KEY_BYTES]) -> SecretKey {
        let unbound = UnboundKey::new(&AES_256_GCM, bytes).expect("a 32-byte AES-256 key");
        SecretKey {
            key: LessSafeKey::new(unbound),
        }
    }

    /// A key from the text of a key file: 64 hex digits, whitespace around them ignored.
    pub fn from_hex(text: &str) -> Result<SecretKey, String> {
        let text = text.trim();
        if text.len() != KEY_BYTES * 2 {
            return Err(format!(
                "holds {} characters; a key is {} hex digits ({KEY_BYTES} random bytes), e.g. \
                 from `openssl rand -hex {KEY_BYTES}`",
                text.len(),
                KEY_BYTES * 2
            ));
        }
        let mut bytes = [0u8; KEY_BYTES];
        for (index, pair) in text.as_bytes().chunks(2).enumerate() {
            let digits = std::str::from_utf8(pair).ok();
            bytes[index] = digits
                .and_then(|d| u8::from_str_radix(d, 16).ok())
                .ok_or_else(|| {
                    format!(
                        "is not hexadecimal at character {}; a key is {} hex digits",
                        index * 2 + 1,
                        KEY_BYTES * 2
                    )
                })?;
        }
        Ok(SecretKey::from_bytes(&bytes))
    }

    /// Seals `plaintext`: nonce, then ciphertext and tag.
    pub(super) fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>, ImageError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| ImageError::Random)?;
        let mut sealed = Vec::with_capacity(NONCE_LEN + plaintext.len() + AES_256_GCM.tag_len());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(plaintext);
        let mut body = sealed.split_off(NONCE_LEN);
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut body)
            .map_err(|_| ImageError::Random)?;
        sealed.append(&mut body);
        Ok(sealed)
    }

    /// Opens what [`SecretKey::seal`] sealed; `None` when the bytes were not sealed with
    /// this key (another key, or altered).
    pub(super) fn open(&self, sealed: &[u8]) -> Option<Vec<u8>> {
        let nonce_bytes: [u8; NONCE_LEN] = sealed.get(..NONCE_LEN)?.try_into().ok()?;
        let mut body = sealed[NONCE_LEN..].to_vec();
        let nonce = Nonce::assume_unique_for_key(nonce_bytes);
        let plaintext = self
            .key
            .open_in_place(nonce, Aad::empty(), &mut body)
            .ok()?;
        let length = plaintext.len();
        body.truncate(length);
        Some(body)
    }
}

/// Reads a key file (`ledger.pre_images.secret_key_file`, `pathgate undo --secret-key-file`).
pub fn load_key(path: &Path) -> Result<SecretKey, ImageError> {
    let text = std::fs::read_to_string(path).map_err(|source| ImageError::Key {
        path: path.to_path_buf(),
        reason: format!("cannot be read: {source}"),
    })?;
    SecretKey::from_hex(&text).map_err(|reason| ImageError::Key {
        path: path.to_path_buf(),
        reason,
    })
}
