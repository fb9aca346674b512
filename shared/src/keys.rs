//! Who holds which secret: every credential of a federation, derived from its root secret.
//!
//! `DOMINION_SEAL` is the root secret. Only the forge and the top operator hold it; a host
//! holds its own node key and public keys, nothing it could sign for anyone else with:
//!
//! | credential | derivation | held by | verifies |
//! |---|---|---|---|
//! | node key | `HMAC(seal, "brh-v1-node-key\n{env}\n{node}")` | that host, the forge | its requests; the forge's answers and pushes to it |
//! | forge key | Ed25519, seed `HMAC(seal, "brh-v1-forge-key")` | the forge | public views, roots (anyone, with the public key) |
//! | operator key | Ed25519, seed `HMAC(seal, "brh-v1-operator-key")` | the top operator | agent API mutations, scoped operator certificates |
//!
//! Derived rather than registered: the forge recomputes a node's key from the claimed node
//! id with one HMAC (no per-node lookup, so no store read per request in the Worker or the
//! Durable Object), and a node key reveals nothing of the seal or of any other node's key
//! (HMAC is a PRF). Binding the env into the key keeps a host of one env from joining, or
//! leading, another.
use alloc::format;
use alloc::string::String;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::hex;
use crate::mac::hmac_sha256;

/// A host's own credential: the key of one node in one env (its first generation).
pub fn node_key(seal: &[u8], env: &str, node: &str) -> [u8; 32] {
    hmac_sha256(seal, format!("brh-v1-node-key\n{env}\n{node}").as_bytes())
}

/// The key of generation `generation` of a node. Revoking a node (`POST /federation/revoke`)
/// makes the forge refuse every generation up to the revoked one; re-enrolling the host gives
/// it the next. Generation 0 is [`node_key`], so a first enrolment carries no number.
pub fn node_key_gen(seal: &[u8], env: &str, node: &str, generation: u32) -> [u8; 32] {
    match generation {
        0 => node_key(seal, env, node),
        g => hmac_sha256(
            seal,
            format!("brh-v1-node-key\n{env}\n{node}\n{g}").as_bytes(),
        ),
    }
}

/// A node credential as a host holds it (`BRH_NODE_KEY`): 64 hex digits for generation 0,
/// `{generation}:{64 hex}` after a re-enrolment.
pub fn format_node_credential(generation: u32, key: &[u8; 32]) -> String {
    match generation {
        0 => hex::encode(key),
        g => format!("{g}:{}", hex::encode(key)),
    }
}

/// Parses [`format_node_credential`]'s form: `(generation, key)`. One spelling per value:
/// `0:` is refused (generation 0 has no number), as are leading zeros.
pub fn parse_node_credential(s: &str) -> Option<(u32, [u8; 32])> {
    // `decode32` takes lowercase hex only: uppercase would be a second spelling.
    let key = hex::decode32;
    match s.trim().split_once(':') {
        None => Some((0, key(s.trim())?)),
        Some((g, k)) => {
            let g = crate::decimal::parse_u64(g)?;
            let g = u32::try_from(g).ok().filter(|g| *g > 0)?;
            Some((g, key(k)?))
        }
    }
}

/// The forge's Ed25519 signing key. Deriving it costs one scalar multiplication: build it
/// once per process (or per isolate), not per request.
pub fn forge_signing_key(seal: &[u8]) -> SigningKey {
    SigningKey::from_bytes(&hmac_sha256(seal, b"brh-v1-forge-key"))
}

/// The top operator's Ed25519 signing key (whoever holds the seal is the top operator).
pub fn operator_signing_key(seal: &[u8]) -> SigningKey {
    SigningKey::from_bytes(&hmac_sha256(seal, b"brh-v1-operator-key"))
}

/// A public key as it travels: 64 lowercase hex digits.
pub fn public_hex(key: &VerifyingKey) -> String {
    hex::encode(key.as_bytes())
}

/// Parses 64 hex digits into a public key; `None` for anything else (including points that
/// are not on the curve).
pub fn parse_public(s: &str) -> Option<VerifyingKey> {
    VerifyingKey::from_bytes(&hex::decode32(s.trim())?).ok()
}

/// Parses a 32-byte secret (a node key, an operator's seed) from 64 hex digits.
pub fn parse_secret(s: &str) -> Option<[u8; 32]> {
    hex::decode32(s.trim())
}

/// The federation's identity: a short, stable name of its forge key, carried by its
/// containers (`brh.federation`) so a leader tells its own federation's containers from
/// another's on the same engine.
pub fn federation_id(forge: &VerifyingKey) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(forge.as_bytes());
    hex::encode(&d[..8])
}

/// An Ed25519 signature as 128 lowercase hex digits.
pub fn sign_hex(key: &SigningKey, msg: &[u8]) -> String {
    hex::encode(&key.sign(msg).to_bytes())
}

/// Checks a 128-hex Ed25519 signature (strict: no malleable encodings, no small-order keys).
/// Malformed hex is simply a mismatch. Never panics.
pub fn verify_hex(key: &VerifyingKey, msg: &[u8], sig_hex: &str) -> bool {
    let Some(bytes) = hex::decode64(sig_hex) else {
        return false;
    };
    key.verify_strict(msg, &Signature::from_bytes(&bytes))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_credentials_have_one_spelling_per_generation() {
        let k = node_key_gen(b"root", "dev", "n1", 0);
        assert_eq!(k, node_key(b"root", "dev", "n1"));
        let k2 = node_key_gen(b"root", "dev", "n1", 2);
        assert_ne!(k, k2);
        for (g, key) in [(0, k), (2, k2)] {
            let text = format_node_credential(g, &key);
            assert_eq!(parse_node_credential(&text), Some((g, key)));
        }
        let hexk = hex::encode(&k);
        for bad in [
            format!("0:{hexk}"),
            format!("02:{hexk}"),
            format!("-1:{hexk}"),
            format!("1:{}", hexk.to_uppercase()),
            format!("1: {hexk}"),
            format!("4294967296:{hexk}"),
            format!("1:{}", &hexk[1..]),
        ] {
            assert_eq!(parse_node_credential(&bad), None, "{bad}");
        }
    }

    #[test]
    fn keys_are_separated_by_env_node_and_purpose() {
        let seal = b"root";
        let a = node_key(seal, "dev", "n1");
        assert_ne!(a, node_key(seal, "dev", "n2"));
        assert_ne!(a, node_key(seal, "prod", "n1"));
        assert_ne!(a, node_key(b"other", "dev", "n1"));
        // No ambiguity between the env/node split: "de" + "v\nn1" is not "dev" + "n1"
        // because ids cannot contain a newline (ids::validate_id).
        assert_ne!(
            forge_signing_key(seal).verifying_key(),
            operator_signing_key(seal).verifying_key()
        );
    }

    #[test]
    fn ed25519_round_trip_and_tamper() {
        let k = forge_signing_key(b"root");
        let pk = k.verifying_key();
        let sig = sign_hex(&k, b"hello");
        assert_eq!(sig.len(), 128);
        assert!(verify_hex(&pk, b"hello", &sig));
        assert!(!verify_hex(&pk, b"hellO", &sig));
        assert!(!verify_hex(
            &operator_signing_key(b"root").verifying_key(),
            b"hello",
            &sig
        ));
        assert!(!verify_hex(&pk, b"hello", &sig[..126]));
        assert!(!verify_hex(&pk, b"hello", &sig.to_uppercase()));
        assert_eq!(parse_public(&public_hex(&pk)), Some(pk));
        assert_eq!(parse_public("zz"), None);
        assert_eq!(federation_id(&pk).len(), 16);
    }

    #[test]
    fn rfc8032_test_1() {
        // RFC 8032 §7.1, TEST 1: empty message.
        let sk = hex::decode32("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
            .unwrap();
        let k = SigningKey::from_bytes(&sk);
        assert_eq!(
            public_hex(&k.verifying_key()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        assert_eq!(
            sign_hex(&k, b""),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
    }
}
