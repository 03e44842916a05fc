//! C2SP signed notes (c2sp.org/signed-note) with Ed25519 keys in the text
//! encoding of Go's `golang.org/x/mod/sumdb/note`.
//!
//! - a signer key: `PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || seed)>`;
//! - a verifier key: `<name>+<hex key id>+<base64(0x01 || public key)>`;
//! - key id: the first 4 bytes (big-endian) of
//!   `SHA-256(name || 0x0A || 0x01 || public key)`;
//! - a signed note: the text (ending in a newline), a blank line, then lines
//!   `— <name> <base64(key id || signature)>`.
//!
//! Owns parsing, signing and opening notes; it makes no keys (the seed
//! comes from `jaros keygen`) and knows nothing of checkpoints.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest as _, Sha256};

/// The signature type byte of Ed25519 in signed notes.
const ALG_ED25519: u8 = 0x01;
/// What starts a signer key.
const PRIVATE_PREFIX: &str = "PRIVATE+KEY+";
/// What starts a signature line: an em dash (U+2014) and a space.
const SIG_PREFIX: &str = "\u{2014} ";
/// Largest note opened: a checkpoint is a few hundred bytes.
pub const MAX_NOTE_BYTES: usize = 64 * 1024;
/// Most signature lines in a note opened (the spec asks for at least 16).
pub const MAX_SIGNATURES: usize = 100;

/// What is wrong with a key or a note, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("key name '{0}' must be non-empty, without spaces or '+'")]
    BadName(String),
    #[error("not a signer key ({0}); expected PRIVATE+KEY+<name>+<hex id>+<base64>, as `jaros keygen` writes")]
    BadSignerKey(String),
    #[error(
        "not a verifier key ({0}); expected <name>+<hex id>+<base64>, as `jaros keygen` prints"
    )]
    BadVerifierKey(String),
    #[error("not a signed note: {0}")]
    Malformed(String),
    #[error("line {line} of the note: {reason}")]
    BadLine { line: usize, reason: String },
    #[error("line {line} of the note: the signature by {name}+{id:08x} does not verify: the note was altered after it was signed")]
    BadSignature { line: usize, name: String, id: u32 },
    #[error("the note has no signature by {name}+{id:08x} (signed by: {signers}); pass the verifier key of the log that signed it")]
    NotSigned {
        name: String,
        id: u32,
        signers: String,
    },
}

fn check_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty() || name.contains('+') || name.chars().any(char::is_whitespace) {
        return Err(NoteError::BadName(name.into()));
    }
    Ok(())
}

/// `SHA-256(name || 0x0A || 0x01 || public key)[:4]`, big-endian.
pub fn key_id(name: &str, public: &[u8; 32]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ALG_ED25519]);
    h.update(public);
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// Splits `<name>+<hex id>+<base64(0x01 || 32 bytes)>`.
fn split_key(text: &str) -> Option<(&str, u32, [u8; 32])> {
    // The base64 may hold '+' itself: it is everything after the second.
    let mut parts = text.splitn(3, '+');
    let (name, id, b64) = (parts.next()?, parts.next()?, parts.next()?);
    if id.len() != 8 || check_name(name).is_err() {
        return None;
    }
    let id = u32::from_str_radix(id, 16).ok()?;
    let bytes = B64.decode(b64).ok()?;
    let (&alg, key) = bytes.split_first()?;
    if alg != ALG_ED25519 {
        return None;
    }
    Some((name, id, key.try_into().ok()?))
}

/// A private key that signs notes.
pub struct SignerKey {
    name: String,
    id: u32,
    key: SigningKey,
}

impl std::fmt::Debug for SignerKey {
    // Never the seed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SignerKey({}+{:08x})", self.name, self.id)
    }
}

impl SignerKey {
    /// The key of `name` with this Ed25519 seed.
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<SignerKey, NoteError> {
        check_name(name)?;
        let key = SigningKey::from_bytes(&seed);
        let id = key_id(name, key.verifying_key().as_bytes());
        Ok(SignerKey {
            name: name.into(),
            id,
            key,
        })
    }

    /// Parses `PRIVATE+KEY+<name>+<hex id>+<base64(0x01 || seed)>` (one
    /// trailing newline allowed); the id must be the one the key has.
    pub fn parse(text: &str) -> Result<SignerKey, NoteError> {
        let text = text.strip_suffix('\n').unwrap_or(text);
        let bad = |why: &str| NoteError::BadSignerKey(why.into());
        let rest = text
            .strip_prefix(PRIVATE_PREFIX)
            .ok_or_else(|| bad("it does not start with PRIVATE+KEY+"))?;
        let (name, id, seed) = split_key(rest).ok_or_else(|| bad("malformed"))?;
        let key = SignerKey::from_seed(name, seed)?;
        if key.id != id {
            return Err(bad("its key id does not match its key"));
        }
        Ok(key)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key's text encoding, as a key file holds it (without newline).
    pub fn encode(&self) -> String {
        let mut bytes = vec![ALG_ED25519];
        bytes.extend_from_slice(self.key.as_bytes());
        format!(
            "{PRIVATE_PREFIX}{}+{:08x}+{}",
            self.name,
            self.id,
            B64.encode(bytes)
        )
    }

    pub fn verifier(&self) -> VerifierKey {
        VerifierKey {
            name: self.name.clone(),
            id: self.id,
            key: self.key.verifying_key(),
        }
    }

    /// The signed note of `text`: `text` must be a note text (non-empty,
    /// ending in a newline, no control characters but newlines).
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        check_text(text)?;
        let mut sig = self.id.to_be_bytes().to_vec();
        sig.extend_from_slice(&self.key.sign(text.as_bytes()).to_bytes());
        Ok(format!(
            "{text}\n{SIG_PREFIX}{} {}\n",
            self.name,
            B64.encode(sig)
        ))
    }
}

fn check_text(text: &str) -> Result<(), NoteError> {
    if text.is_empty() || !text.ends_with('\n') {
        return Err(NoteError::Malformed(
            "the text must be non-empty and end in a newline".into(),
        ));
    }
    if let Some(line) = control_line(text) {
        return Err(NoteError::BadLine {
            line,
            reason: "a control character other than newline".into(),
        });
    }
    Ok(())
}

/// The 1-based line of the first ASCII control character other than a
/// newline, if any.
fn control_line(text: &str) -> Option<usize> {
    text.split('\n')
        .position(|l| l.chars().any(|c| (c as u32) < 0x20))
        .map(|i| i + 1)
}

/// The text of a note *without checking any signature*: for choosing
/// among notes (the newest checkpoint of a size), never for trusting one.
pub fn unverified_text(note: &str) -> Option<&str> {
    note.rfind("\n\n").map(|i| &note[..i + 1])
}

/// A public key that opens notes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    id: u32,
    key: VerifyingKey,
}

impl VerifierKey {
    /// Parses `<name>+<hex id>+<base64(0x01 || public key)>`.
    pub fn parse(text: &str) -> Result<VerifierKey, NoteError> {
        let text = text.trim_end_matches('\n');
        let bad = |why: &str| NoteError::BadVerifierKey(why.into());
        let (name, id, public) = split_key(text).ok_or_else(|| bad("malformed"))?;
        if key_id(name, &public) != id {
            return Err(bad("its key id does not match its key"));
        }
        let key = VerifyingKey::from_bytes(&public).map_err(|_| bad("not an Ed25519 point"))?;
        Ok(VerifierKey {
            name: name.into(),
            id,
            key,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn encode(&self) -> String {
        let mut bytes = vec![ALG_ED25519];
        bytes.extend_from_slice(self.key.as_bytes());
        format!("{}+{:08x}+{}", self.name, self.id, B64.encode(bytes))
    }

    /// Opens a signed note: checks its form, then that it carries a valid
    /// signature by this key. Signatures by other keys are ignored, as the
    /// spec requires; one by this key that fails rejects the whole note.
    /// Returns the note's text.
    pub fn open<'a>(&self, note: &'a str) -> Result<&'a str, NoteError> {
        if note.len() > MAX_NOTE_BYTES {
            return Err(NoteError::Malformed(format!(
                "{} bytes, more than the {MAX_NOTE_BYTES} a note may have",
                note.len()
            )));
        }
        if let Some(line) = control_line(note) {
            return Err(NoteError::BadLine {
                line,
                reason: "a control character other than newline (a CR of a Windows line end?)"
                    .into(),
            });
        }
        if !note.ends_with('\n') {
            return Err(NoteError::Malformed(
                "it does not end in a newline after its last signature line".into(),
            ));
        }
        // The text ends at the last blank line: everything after it is
        // signature lines.
        let split = note
            .rfind("\n\n")
            .ok_or_else(|| NoteError::Malformed("no blank line before the signatures".into()))?;
        let text = &note[..split + 1];
        let first_sig_line = text.matches('\n').count() + 2;
        let sigs = &note[split + 2..];
        let mut signers = Vec::new();
        let mut verified = false;
        for (i, line) in sigs.trim_end_matches('\n').split('\n').enumerate() {
            let at = first_sig_line + i;
            if i >= MAX_SIGNATURES {
                return Err(NoteError::BadLine {
                    line: at,
                    reason: format!("more than {MAX_SIGNATURES} signatures"),
                });
            }
            let bad = |reason: &str| NoteError::BadLine {
                line: at,
                reason: reason.into(),
            };
            let rest = line.strip_prefix(SIG_PREFIX).ok_or_else(|| {
                bad("a signature line starts with an em dash (U+2014) and a space")
            })?;
            let (name, b64) = rest
                .split_once(' ')
                .ok_or_else(|| bad("expected '— <key name> <base64 signature>'"))?;
            check_name(name).map_err(|e| bad(&e.to_string()))?;
            let sig = B64
                .decode(b64)
                .map_err(|_| bad("the signature is not standard base64"))?;
            if sig.len() < 4 {
                return Err(bad("the signature is shorter than its 4-byte key id"));
            }
            let id = u32::from_be_bytes([sig[0], sig[1], sig[2], sig[3]]);
            signers.push(format!("{name}+{id:08x}"));
            if name != self.name || id != self.id {
                continue;
            }
            let failed = || NoteError::BadSignature {
                line: at,
                name: name.into(),
                id,
            };
            let bytes: [u8; 64] = sig[4..].try_into().map_err(|_| failed())?;
            let signature = ed25519_dalek::Signature::from_bytes(&bytes);
            self.key
                .verify_strict(text.as_bytes(), &signature)
                .map_err(|_| failed())?;
            verified = true;
        }
        if !verified {
            return Err(NoteError::NotSigned {
                name: self.name.clone(),
                id: self.id,
                signers: signers.join(", "),
            });
        }
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of Go's `golang.org/x/mod/sumdb/note` documentation.
    const SKEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const TEXT: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
    const NOTE_SIG: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

    #[test]
    fn the_go_note_example_signs_and_opens_byte_for_byte() {
        let skey = SignerKey::parse(SKEY).unwrap();
        assert_eq!(skey.encode(), SKEY);
        assert_eq!(skey.verifier().encode(), VKEY);
        let note = skey.sign(TEXT).unwrap();
        assert_eq!(note, format!("{TEXT}\n{NOTE_SIG}"));
        let vkey = VerifierKey::parse(VKEY).unwrap();
        assert_eq!(vkey.open(&note).unwrap(), TEXT);
    }

    #[test]
    fn an_edited_note_or_signature_is_rejected_and_other_keys_are_ignored() {
        let vkey = VerifierKey::parse(VKEY).unwrap();
        let note = format!("{TEXT}\n{NOTE_SIG}");
        let edited = note.replace("cryptography", "cryptographY");
        assert!(matches!(
            vkey.open(&edited),
            Err(NoteError::BadSignature { line: 4, .. })
        ));
        // Another key's signature line only: ignored, so not signed.
        let other = SignerKey::from_seed("other.example/log", [7; 32]).unwrap();
        let by_other = other.sign(TEXT).unwrap();
        assert!(matches!(
            vkey.open(&by_other),
            Err(NoteError::NotSigned { .. })
        ));
        // Both: the known one verifies, the unknown one is ignored.
        let both = format!("{}{}", by_other, NOTE_SIG);
        assert_eq!(vkey.open(&both).unwrap(), TEXT);
        assert!(vkey.open(&note.replace('\u{2014}', "-")).is_err());
        assert!(vkey.open(&note.replace('\n', "\r\n")).is_err());
        assert!(vkey.open(TEXT).is_err());
    }

    #[test]
    fn keys_with_a_wrong_id_or_name_are_refused() {
        assert!(SignerKey::parse(&SKEY.replace("c74f20a3", "c74f20a4")).is_err());
        assert!(VerifierKey::parse(&VKEY.replace("c74f20a3", "c74f20a4")).is_err());
        assert!(VerifierKey::parse(&VKEY.replace("PeterNeumann", "Peter")).is_err());
        assert!(SignerKey::from_seed("a b", [0; 32]).is_err());
        assert!(SignerKey::from_seed("a+b", [0; 32]).is_err());
    }
}
