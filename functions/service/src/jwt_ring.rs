//! jsonwebtoken's signature checks on ring, the crypto library the bootstraps already link
//! for TLS (Cargo.toml): jsonwebtoken's own providers would add aws-lc (~1.2 MB of C) or the
//! RustCrypto RSA/EC stack. Verification only: the service never signs a token, so the
//! signer factory refuses every algorithm.

use jsonwebtoken::crypto::{CryptoProvider, JwkUtils, JwtSigner, JwtVerifier};
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::signature::{self, Verifier};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::signature as sig;

/// Installs the ring provider as jsonwebtoken's process default (once; later calls are no-ops).
pub fn install() {
    // An Err only says a provider is installed already (this one: nothing else installs one).
    let _ = PROVIDER.install_default();
}

static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: refuse_signing,
    verifier_factory: verifier,
    jwk_utils: JwkUtils::new_unimplemented(),
};

fn refuse_signing(_: &Algorithm, _: &EncodingKey) -> Result<Box<dyn JwtSigner>, Error> {
    Err(ErrorKind::Signing("this service verifies tokens and never signs one".into()).into())
}

/// What the token's signature is checked with.
enum PublicKey {
    /// DER (RSA) or raw bytes (an EC point, an Ed25519 key), as ring reads them.
    Bytes(Vec<u8>),
    /// An RSA key as a JWK gives it.
    RsaComponents { n: Vec<u8>, e: Vec<u8> },
}

struct RingVerifier {
    algorithm: Algorithm,
    ring_algorithm: &'static dyn sig::VerificationAlgorithm,
    rsa_parameters: Option<&'static sig::RsaParameters>,
    key: PublicKey,
}

fn verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>, Error> {
    use Algorithm::*;
    let (ring_algorithm, rsa_parameters): (
        &'static dyn sig::VerificationAlgorithm,
        Option<&'static sig::RsaParameters>,
    ) = match algorithm {
        RS256 => (
            &sig::RSA_PKCS1_2048_8192_SHA256,
            Some(&sig::RSA_PKCS1_2048_8192_SHA256),
        ),
        RS384 => (
            &sig::RSA_PKCS1_2048_8192_SHA384,
            Some(&sig::RSA_PKCS1_2048_8192_SHA384),
        ),
        RS512 => (
            &sig::RSA_PKCS1_2048_8192_SHA512,
            Some(&sig::RSA_PKCS1_2048_8192_SHA512),
        ),
        PS256 => (
            &sig::RSA_PSS_2048_8192_SHA256,
            Some(&sig::RSA_PSS_2048_8192_SHA256),
        ),
        PS384 => (
            &sig::RSA_PSS_2048_8192_SHA384,
            Some(&sig::RSA_PSS_2048_8192_SHA384),
        ),
        PS512 => (
            &sig::RSA_PSS_2048_8192_SHA512,
            Some(&sig::RSA_PSS_2048_8192_SHA512),
        ),
        ES256 => (&sig::ECDSA_P256_SHA256_FIXED, None),
        ES384 => (&sig::ECDSA_P384_SHA384_FIXED, None),
        EdDSA => (&sig::ED25519, None),
        // shared-secret tokens are refused before they get here (jwt.rs)
        HS256 | HS384 | HS512 => return Err(ErrorKind::InvalidAlgorithm.into()),
    };
    let key = match key.kind() {
        DecodingKeyKind::SecretOrDer(bytes) => PublicKey::Bytes(bytes.clone()),
        DecodingKeyKind::RsaModulusExponent { n, e } if rsa_parameters.is_some() => {
            PublicKey::RsaComponents {
                n: n.clone(),
                e: e.clone(),
            }
        }
        DecodingKeyKind::RsaModulusExponent { .. } => {
            return Err(ErrorKind::InvalidKeyFormat.into())
        }
    };
    Ok(Box::new(RingVerifier {
        algorithm: *algorithm,
        ring_algorithm,
        rsa_parameters,
        key,
    }))
}

impl Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, message: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        let checked = match (&self.key, self.rsa_parameters) {
            (PublicKey::Bytes(bytes), _) => {
                sig::UnparsedPublicKey::new(self.ring_algorithm, bytes).verify(message, signature)
            }
            (PublicKey::RsaComponents { n, e }, Some(parameters)) => {
                sig::RsaPublicKeyComponents { n, e }.verify(parameters, message, signature)
            }
            (PublicKey::RsaComponents { .. }, None) => return Err(signature::Error::new()),
        };
        checked.map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use ring::rand::SystemRandom;
    use ring::signature::KeyPair;

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    /// A compact JWS of `claims` signed by `sign`.
    fn token(alg: &str, claims: &str, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
        let signed = format!(
            "{}.{}",
            b64(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#).as_bytes()),
            b64(claims.as_bytes())
        );
        let signature = sign(signed.as_bytes());
        format!("{signed}.{}", b64(&signature))
    }

    fn check(token: &str, key: &DecodingKey, alg: Algorithm) -> Result<(), ErrorKind> {
        install();
        let mut validation = jsonwebtoken::Validation::new(alg);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_aud = false;
        jsonwebtoken::decode::<serde_json::Value>(token, key, &validation)
            .map(|_| ())
            .map_err(|e| e.into_kind())
    }

    fn p256() -> sig::EcdsaKeyPair {
        let rng = SystemRandom::new();
        let pkcs8 = sig::EcdsaKeyPair::generate_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("key");
        sig::EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("key")
    }

    fn es256_token(pair: &sig::EcdsaKeyPair, claims: &str) -> String {
        let rng = SystemRandom::new();
        token("ES256", claims, |m| {
            pair.sign(&rng, m).expect("sign").as_ref().to_vec()
        })
    }

    /// The JWK form of the pair's public key, as an issuer's JWKS publishes it.
    fn es256_jwk_key(pair: &sig::EcdsaKeyPair) -> DecodingKey {
        let point = pair.public_key().as_ref();
        DecodingKey::from_ec_components(&b64(&point[1..33]), &b64(&point[33..]))
            .expect("components")
    }

    #[test]
    fn an_es256_token_verifies_against_its_jwk_and_fails_once_altered() {
        let pair = p256();
        let key = es256_jwk_key(&pair);
        let good = es256_token(&pair, r#"{"sub":"alice"}"#);
        check(&good, &key, Algorithm::ES256).expect("a valid token");

        // the same signature over other claims
        let (_, signature) = good.rsplit_once('.').expect("three parts");
        let other = es256_token(&pair, r#"{"sub":"mallory"}"#);
        let (signed, _) = other.rsplit_once('.').expect("three parts");
        let forged = format!("{signed}.{signature}");
        assert!(matches!(
            check(&forged, &key, Algorithm::ES256),
            Err(ErrorKind::InvalidSignature)
        ));

        // a token signed by another key
        let stranger = es256_token(&p256(), r#"{"sub":"alice"}"#);
        assert!(matches!(
            check(&stranger, &key, Algorithm::ES256),
            Err(ErrorKind::InvalidSignature)
        ));
    }

    #[test]
    fn an_eddsa_token_verifies_against_its_jwk_key() {
        let rng = SystemRandom::new();
        let pkcs8 = sig::Ed25519KeyPair::generate_pkcs8(&rng).expect("key");
        let pair = sig::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("key");
        let key = DecodingKey::from_ed_components(&b64(pair.public_key().as_ref())).expect("x");
        let good = token("EdDSA", r#"{"sub":"alice"}"#, |m| {
            pair.sign(m).as_ref().to_vec()
        });
        check(&good, &key, Algorithm::EdDSA).expect("a valid token");
        let truncated = &good[..good.len() - 2];
        assert!(check(truncated, &key, Algorithm::EdDSA).is_err());
    }

    #[test]
    fn an_rsa_token_verifies_against_modulus_and_exponent() {
        // A 2048-bit test key (tests/fixtures/rsa-2048.der, PKCS#1, made with openssl for these
        // tests only): ring signs but cannot generate RSA keys.
        let der = include_bytes!("../tests/fixtures/rsa-2048.der");
        let pair = sig::RsaKeyPair::from_der(der).expect("RSAPrivateKey DER");
        let components: sig::RsaPublicKeyComponents<Vec<u8>> = pair.public().into();
        let key = DecodingKey::from_rsa_components(&b64(&components.n), &b64(&components.e))
            .expect("components");
        let rng = SystemRandom::new();
        for (alg, name, padding) in [
            (
                Algorithm::RS256,
                "RS256",
                &sig::RSA_PKCS1_SHA256 as &dyn sig::RsaEncoding,
            ),
            (Algorithm::PS256, "PS256", &sig::RSA_PSS_SHA256),
        ] {
            let good = token(name, r#"{"sub":"alice"}"#, |m| {
                let mut out = vec![0; pair.public().modulus_len()];
                pair.sign(padding, &rng, m, &mut out).expect("sign");
                out
            });
            check(&good, &key, alg).expect(name);
            // the RS256 signature does not pass as RS512
            if alg == Algorithm::RS256 {
                let relabelled = good.replacen(
                    &b64(br#"{"alg":"RS256","typ":"JWT"}"#),
                    &b64(br#"{"alg":"RS512","typ":"JWT"}"#),
                    1,
                );
                assert!(matches!(
                    check(&relabelled, &key, Algorithm::RS512),
                    Err(ErrorKind::InvalidSignature)
                ));
            }
        }
    }

    #[test]
    fn shared_secret_algorithms_and_signing_are_refused() {
        install();
        let key = DecodingKey::from_secret(b"secret");
        assert!(verifier(&Algorithm::HS256, &key).is_err());
        let signed = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::EdDSA),
            &serde_json::json!({"sub": "x"}),
            &EncodingKey::from_ed_der(&[0; 48]),
        );
        assert!(signed.is_err());
    }
}
