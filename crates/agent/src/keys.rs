//! Command signatures: the server signs every command with its project's Ed25519 key; an agent
//! holds only the public half and runs nothing that does not verify. A broker, or anyone who can
//! publish to an agent's topic, cannot make an agent act.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use crate::protocol::{Command, SignedCommand};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not an Ed25519 private key in PKCS#8 PEM: {0}")]
    Private(String),
    #[error("not an Ed25519 public key in PEM (SubjectPublicKeyInfo): {0}")]
    Public(String),
    #[error("cannot encode the key: {0}")]
    Encode(String),
}

/// A project's command-signing key (server side).
pub struct CommandSigner {
    key: SigningKey,
}

impl CommandSigner {
    pub fn generate() -> CommandSigner {
        CommandSigner { key: SigningKey::generate(&mut rand::rngs::OsRng) }
    }

    pub fn from_pem(pem: &str) -> Result<CommandSigner, KeyError> {
        SigningKey::from_pkcs8_pem(pem).map(|key| CommandSigner { key }).map_err(|e| KeyError::Private(e.to_string()))
    }

    pub fn private_pem(&self) -> Result<String, KeyError> {
        self.key.to_pkcs8_pem(LineEnding::LF).map(|pem| pem.to_string()).map_err(|e| KeyError::Encode(e.to_string()))
    }

    pub fn public_pem(&self) -> Result<String, KeyError> {
        self.key.verifying_key().to_public_key_pem(LineEnding::LF).map_err(|e| KeyError::Encode(e.to_string()))
    }

    pub fn sign(&self, command: &Command) -> SignedCommand {
        // Serializing a plain struct of strings, numbers and JSON values cannot fail.
        let text = serde_json::to_string(command).unwrap_or_default();
        let signature = STANDARD.encode(self.key.sign(text.as_bytes()).to_bytes());
        SignedCommand { command: text, signature }
    }
}

/// What an agent checks commands with.
#[derive(Clone)]
pub struct CommandVerifier {
    key: VerifyingKey,
}

impl CommandVerifier {
    pub fn from_pem(pem: &str) -> Result<CommandVerifier, KeyError> {
        VerifyingKey::from_public_key_pem(pem.trim())
            .map(|key| CommandVerifier { key })
            .map_err(|e| KeyError::Public(e.to_string()))
    }

    /// The command, when its signature verifies.
    pub fn verify(&self, signed: &SignedCommand) -> Option<Command> {
        let bytes = STANDARD.decode(&signed.signature).ok()?;
        let signature = Signature::from_slice(&bytes).ok()?;
        self.key.verify(signed.command.as_bytes(), &signature).ok()?;
        serde_json::from_str(&signed.command).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Op;

    fn command() -> Command {
        Command {
            id: "c1".into(),
            agent_id: "sim-0".into(),
            issued_at: 1,
            expires_at: 2,
            op: Op::Call {
                method: "DELETE".into(),
                path: "/api/ekuiper/rules/r1".into(),
                body: None,
                then: Vec::new(),
            },
        }
    }

    #[test]
    fn a_signed_command_verifies_and_an_altered_or_foreign_one_does_not() {
        let signer = CommandSigner::generate();
        let pem = signer.private_pem().expect("pem");
        let again = CommandSigner::from_pem(&pem).expect("read back");
        let verifier = CommandVerifier::from_pem(&again.public_pem().expect("public")).expect("verifier");
        let signed = signer.sign(&command());
        assert_eq!(verifier.verify(&signed), Some(command()));

        let altered = SignedCommand { command: signed.command.replace("r1", "r2"), ..signed.clone() };
        assert_eq!(verifier.verify(&altered), None);
        let foreign = CommandSigner::generate().sign(&command());
        assert_eq!(verifier.verify(&foreign), None);
        let garbage = SignedCommand { signature: "!!".into(), ..signed };
        assert_eq!(verifier.verify(&garbage), None);
        assert!(CommandVerifier::from_pem("not a key").is_err());
        assert!(CommandSigner::from_pem("not a key").is_err());
    }
}
