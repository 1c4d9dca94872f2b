//! Sealing personal fields of events with their owner's data key, and data keys with the
//! master key: the cryptography of crypto-shredding, with no I/O (the keys' table and cache
//! are [`crate::keyring`]'s).
//!
//! **Cipher.** XChaCha20-Poly1305 (RustCrypto's `chacha20poly1305`), an AEAD whose 192-bit
//! nonces are safe to draw at random for every field, so nothing needs counting across
//! replicas. Each sealed value is bound to where it stands by its associated data: the
//! event's identity (aggregate type, stream, sequence) and the field's name. Copied into
//! another event or field, it fails to open rather than saying something it did not.
//!
//! **Stored form.** A sealed field's value becomes `{"sealed": BASE64, "key": SUBJECT}`: the
//! nonce and ciphertext of the field's JSON text, and whose key seals it. An object, where
//! the domain's field is a string, so that a reader which forgot to open it fails to
//! deserialise instead of showing ciphertext as text. Naming the key in the value makes
//! opening independent of the domain's rules at the time: any sealed value can be opened.
//!
//! **Keys.** A data key is 32 random bytes, stored wrapped: sealed with the master key, its
//! subject as associated data (a wrapped key moved to another person's row does not open).
//! The master key comes from configuration and never touches the database; a check value
//! sealed with it tells a wrong master key at start (see [`MasterKey::check_value`]).

use std::fmt;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore as _;
use serde_json::{Map, Value};

/// The bytes of a nonce, stored in front of each ciphertext.
const NONCE_BYTES: usize = 24;
/// The bytes of a key.
const KEY_BYTES: usize = 32;
/// What the master key check value holds, and its associated data.
const CHECK_PLAINTEXT: &[u8] = b"minitwit master key check v1";
const CHECK_CONTEXT: &[u8] = b"minitwit master key check";

/// Why something could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The master key is not 32 bytes of base64.
    #[error("the master key must be 32 random bytes in base64 (44 characters), as `head -c 32 /dev/urandom | base64` makes")]
    MalformedMasterKey,
    /// A ciphertext did not open with the key: the wrong key, or altered or moved data.
    #[error("{0} does not open with its key: the wrong master key, or altered data")]
    DoesNotOpen(String),
    /// A stored value is not in the sealed form.
    #[error("{0} is not a sealed value")]
    Malformed(String),
}

/// The key every data key is wrapped with, from configuration.
#[derive(Clone)]
pub struct MasterKey(Arc<XChaCha20Poly1305>);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    /// The key written as base64 (surrounding whitespace ignored).
    pub fn from_base64(text: &str) -> Result<Self, SealError> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| SealError::MalformedMasterKey)?;
        // Any other length than the cipher's 32 bytes is refused here.
        let cipher =
            XChaCha20Poly1305::new_from_slice(&bytes).map_err(|_| SealError::MalformedMasterKey)?;
        Ok(Self(Arc::new(cipher)))
    }

    /// A new random key, as base64: what an operator puts in the master key's file.
    pub fn generate_base64() -> String {
        STANDARD.encode(random_bytes::<KEY_BYTES>())
    }

    /// Wraps a new random data key for `subject`: the key, and its wrapped bytes to store.
    pub fn new_data_key(&self, subject: &str) -> (DataKey, Vec<u8>) {
        let raw = random_bytes::<KEY_BYTES>();
        let wrapped = seal_bytes(&self.0, &raw, &wrapping_context(subject));
        (DataKey::from_raw(&raw), wrapped)
    }

    /// Unwraps `subject`'s stored data key.
    pub fn unwrap_data_key(&self, subject: &str, wrapped: &[u8]) -> Result<DataKey, SealError> {
        let raw = open_bytes(&self.0, wrapped, &wrapping_context(subject))
            .ok_or_else(|| SealError::DoesNotOpen(format!("the data key of {subject:?}")))?;
        if raw.len() != KEY_BYTES {
            return Err(SealError::Malformed(format!("the data key of {subject:?}")));
        }
        Ok(DataKey::from_raw(&raw))
    }

    /// A value sealed with this key that [`MasterKey::checks`] recognises: stored once, it
    /// lets a server tell at start whether it was given the key the data keys are wrapped
    /// with.
    pub fn check_value(&self) -> Vec<u8> {
        seal_bytes(&self.0, CHECK_PLAINTEXT, CHECK_CONTEXT)
    }

    /// Whether `check` was made by [`MasterKey::check_value`] with this key.
    pub fn checks(&self, check: &[u8]) -> bool {
        open_bytes(&self.0, check, CHECK_CONTEXT).as_deref() == Some(CHECK_PLAINTEXT)
    }
}

/// One person's key, unwrapped.
#[derive(Clone)]
pub struct DataKey(Arc<XChaCha20Poly1305>);

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

impl DataKey {
    fn from_raw(raw: &[u8]) -> Self {
        Self(Arc::new(
            XChaCha20Poly1305::new_from_slice(raw).expect("data keys are 32 bytes"),
        ))
    }
}

/// Where a field stands in the log: what its sealed value is bound to.
#[derive(Debug, Clone, Copy)]
pub struct EventIdentity<'a> {
    pub aggregate_type: &'a str,
    pub aggregate_id: &'a str,
    pub sequence: i64,
}

impl EventIdentity<'_> {
    /// The associated data of `field`'s sealed value. Stored text cannot hold NUL, so the
    /// parts cannot run into each other.
    fn context(&self, field: &str) -> Vec<u8> {
        format!(
            "{}\0{}\0{}\0{field}",
            self.aggregate_type, self.aggregate_id, self.sequence
        )
        .into_bytes()
    }
}

/// The event body inside a payload: serde's externally tagged enums store an event as
/// `{"VariantName": {fields…}}`.
fn body_mut(payload: &mut Value) -> Option<&mut Map<String, Value>> {
    payload
        .as_object_mut()?
        .values_mut()
        .next()?
        .as_object_mut()
}

/// Seals `fields` of `payload` (an event of `identity`) with `subject`'s `key`. A field the
/// body does not have is left alone; one already sealed too.
pub fn seal_fields(
    payload: &mut Value,
    identity: EventIdentity<'_>,
    fields: &[&str],
    subject: &str,
    key: &DataKey,
) {
    let Some(body) = body_mut(payload) else {
        return;
    };
    for field in fields {
        let Some(value) = body.get_mut(*field) else {
            continue;
        };
        if sealed_subject(value).is_some() {
            continue;
        }
        let sealed = seal_bytes(
            &key.0,
            value.to_string().as_bytes(),
            &identity.context(field),
        );
        *value = serde_json::json!({ "sealed": STANDARD.encode(sealed), "key": subject });
    }
}

/// Replaces `fields` of `payload` with sealed values that nothing opens, naming `subject`'s
/// key: for a forgotten person's fields that an older build stored in plain text. They read
/// as a forgotten person's fields do: empty.
pub fn erase_fields(payload: &mut Value, fields: &[&str], subject: &str) {
    let Some(body) = body_mut(payload) else {
        return;
    };
    for field in fields {
        if let Some(value) = body.get_mut(*field) {
            *value = serde_json::json!({ "sealed": "", "key": subject });
        }
    }
}

/// Whose key sealed `value`, if it is a sealed value.
pub fn sealed_subject(value: &Value) -> Option<&str> {
    let object = value.as_object()?;
    if object.len() != 2 || !object.get("sealed")?.is_string() {
        return None;
    }
    object.get("key")?.as_str()
}

/// The subjects whose keys seal fields of `payload`.
pub fn subjects(payload: &Value) -> impl Iterator<Item = &str> {
    payload
        .as_object()
        .and_then(|variant| variant.values().next())
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|body| body.values().filter_map(sealed_subject))
}

/// What opening a sealed field found.
pub enum Opening<'a> {
    /// The subject's key, to open it with.
    Key(&'a DataKey),
    /// The subject was forgotten: the field reads as an empty string.
    Forgotten,
}

/// Opens every sealed field of `payload` (an event of `identity`) in place, with the keys
/// `key_of` gives for their subjects; whether any of them was a forgotten person's (and so
/// reads empty).
pub fn open_fields<'k>(
    payload: &mut Value,
    identity: EventIdentity<'_>,
    mut key_of: impl FnMut(&str) -> Result<Opening<'k>, SealError>,
) -> Result<bool, SealError> {
    let mut forgotten = false;
    let Some(body) = body_mut(payload) else {
        return Ok(forgotten);
    };
    for (field, value) in body.iter_mut() {
        let Some(subject) = sealed_subject(value) else {
            continue;
        };
        let described = || {
            format!(
                "{field} of {:?} #{}",
                identity.aggregate_id, identity.sequence
            )
        };
        let opened = match key_of(subject)? {
            Opening::Forgotten => {
                forgotten = true;
                Value::String(String::new())
            }
            Opening::Key(key) => {
                let sealed = value["sealed"].as_str().unwrap_or_default();
                let bytes = STANDARD
                    .decode(sealed)
                    .map_err(|_| SealError::Malformed(described()))?;
                let text = open_bytes(&key.0, &bytes, &identity.context(field))
                    .ok_or_else(|| SealError::DoesNotOpen(described()))?;
                serde_json::from_slice(&text).map_err(|_| SealError::Malformed(described()))?
            }
        };
        *value = opened;
    }
    Ok(forgotten)
}

/// Replaces every sealed field of `payload` with an empty string, unopened: for readers that
/// decide on events without their personal data (the command side).
pub fn blank_fields(payload: &mut Value) {
    let Some(body) = body_mut(payload) else {
        return;
    };
    for value in body.values_mut() {
        if sealed_subject(value).is_some() {
            *value = Value::String(String::new());
        }
    }
}

fn wrapping_context(subject: &str) -> Vec<u8> {
    format!("minitwit data key\0{subject}").into_bytes()
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0; N];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

/// A random nonce, then the ciphertext of `plaintext` bound to `context`.
fn seal_bytes(cipher: &XChaCha20Poly1305, plaintext: &[u8], context: &[u8]) -> Vec<u8> {
    let nonce = random_bytes::<NONCE_BYTES>();
    let ciphertext = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: context,
            },
        )
        .expect("XChaCha20-Poly1305 seals any length a field has");
    [nonce.as_slice(), &ciphertext].concat()
}

/// The plaintext of what [`seal_bytes`] made, if it opens with `cipher` and `context`.
fn open_bytes(cipher: &XChaCha20Poly1305, sealed: &[u8], context: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < NONCE_BYTES {
        return None;
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
    cipher
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad: context,
            },
        )
        .ok()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn master() -> MasterKey {
        MasterKey::from_base64(&MasterKey::generate_base64()).unwrap()
    }

    fn identity(sequence: i64) -> EventIdentity<'static> {
        EventIdentity {
            aggregate_type: "user",
            aggregate_id: "alice",
            sequence,
        }
    }

    fn registered() -> Value {
        json!({"UserRegistered": {"username": "alice", "email": "alice@example.org",
                                  "password_hash": "$argon2id$x", "registered_at": "2026"}})
    }

    #[test]
    fn sealed_fields_open_to_what_was_sealed_and_hide_it_meanwhile() {
        let (key, _) = master().new_data_key("alice");
        let mut payload = registered();
        seal_fields(
            &mut payload,
            identity(1),
            &["email", "password_hash"],
            "alice",
            &key,
        );
        let stored = payload.to_string();
        assert!(!stored.contains("alice@example.org") && !stored.contains("argon2id"));
        assert_eq!(subjects(&payload).collect::<Vec<_>>(), ["alice", "alice"]);
        open_fields(&mut payload, identity(1), |_| Ok(Opening::Key(&key))).unwrap();
        assert_eq!(payload, registered());
    }

    #[test]
    fn a_sealed_value_does_not_open_elsewhere_or_with_another_key() {
        let master = master();
        let (key, _) = master.new_data_key("alice");
        let (other, _) = master.new_data_key("bob");
        let mut payload = registered();
        seal_fields(&mut payload, identity(1), &["email"], "alice", &key);
        let sealed = payload.clone();
        let moved = open_fields(&mut payload, identity(2), |_| Ok(Opening::Key(&key)));
        assert!(matches!(moved, Err(SealError::DoesNotOpen(_))));
        let mut payload = sealed;
        let wrong = open_fields(&mut payload, identity(1), |_| Ok(Opening::Key(&other)));
        assert!(matches!(wrong, Err(SealError::DoesNotOpen(_))));
    }

    #[test]
    fn a_forgotten_subjects_fields_read_empty_and_blanking_needs_no_key() {
        let (key, _) = master().new_data_key("alice");
        let mut payload = registered();
        seal_fields(&mut payload, identity(1), &["email"], "alice", &key);
        let mut blanked = payload.clone();
        assert!(open_fields(&mut payload, identity(1), |_| Ok(Opening::Forgotten)).unwrap());
        assert_eq!(payload["UserRegistered"]["email"], "");
        blank_fields(&mut blanked);
        assert_eq!(blanked, payload);
    }

    #[test]
    fn erased_fields_read_as_forgotten_and_hold_nothing() {
        let mut payload = registered();
        erase_fields(&mut payload, &["email", "password_hash"], "alice");
        assert!(!payload.to_string().contains("alice@example.org"));
        open_fields(&mut payload, identity(1), |_| Ok(Opening::Forgotten)).unwrap();
        assert_eq!(payload["UserRegistered"]["email"], "");
        assert_eq!(payload["UserRegistered"]["password_hash"], "");
    }

    #[test]
    fn data_keys_unwrap_only_with_their_master_key_and_subject() {
        let master = master();
        let (key, wrapped) = master.new_data_key("alice");
        let unwrapped = master.unwrap_data_key("alice", &wrapped).unwrap();
        let mut payload = registered();
        seal_fields(&mut payload, identity(1), &["email"], "alice", &key);
        open_fields(&mut payload, identity(1), |_| Ok(Opening::Key(&unwrapped))).unwrap();
        assert!(master.unwrap_data_key("bob", &wrapped).is_err());
        assert!(self::master().unwrap_data_key("alice", &wrapped).is_err());
    }

    #[test]
    fn the_check_value_tells_the_right_master_key() {
        let master = master();
        let check = master.check_value();
        assert!(master.checks(&check));
        assert!(!self::master().checks(&check));
    }

    #[test]
    fn master_keys_must_be_32_bytes_of_base64() {
        assert!(MasterKey::from_base64(&STANDARD.encode([7; 32])).is_ok());
        assert!(MasterKey::from_base64(&STANDARD.encode([7; 16])).is_err());
        assert!(MasterKey::from_base64("not base64!").is_err());
    }

    #[test]
    fn a_user_string_shaped_like_a_sealed_value_is_not_one() {
        assert_eq!(
            sealed_subject(&json!("{\"sealed\":\"x\",\"key\":\"a\"}")),
            None
        );
        assert_eq!(
            sealed_subject(&json!({"sealed": "x", "key": "a"})),
            Some("a")
        );
    }
}
