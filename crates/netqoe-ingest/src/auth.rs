//! Bearer tokens from the tokens file: parsing, constant-time lookup, client_id globs.
//!
//! Every token is kept only as its SHA-256 digest (a plain `token` in the file is hashed at
//! load), and a presented token is compared against every digest in constant time, so neither
//! memory dumps nor timing reveal a secret. `Debug` never prints a digest.

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Fewest characters a plain token may have: anything shorter can be guessed.
pub const MIN_TOKEN_CHARS: usize = 16;

/// SHA-256 of the empty string: a `sha256` entry with it would admit `Bearer ` alone.
const EMPTY_DIGEST: [u8; 32] = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// Problems of a tokens file, naming the token by its position.
#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    #[error("cannot read tokens file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("tokens file is not valid TOML: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("tokens[{index}]{}: {problem}", name.as_ref().map(|n| format!(" (name {n:?})")).unwrap_or_default())]
    Token {
        index: usize,
        name: Option<String>,
        problem: String,
    },
    #[error("the tokens file has no [[tokens]] entries, so every request would be refused: add a [[tokens]] table (see docs/api.md), or run with --insecure-no-auth for a lab")]
    Empty,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    tokens: Vec<RawToken>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    name: Option<String>,
    token: Option<String>,
    sha256: Option<String>,
    #[serde(default)]
    clients: Vec<String>,
    rate: Option<u32>,
    burst: Option<u32>,
}

/// One configured token.
pub struct Token {
    /// Position in the file; the rate limiter's key.
    pub index: u32,
    /// Operator-chosen label for logs (never the secret).
    pub name: String,
    digest: [u8; 32],
    clients: GlobSet,
    patterns: Vec<String>,
    /// Events per second, when this token overrides the default.
    pub rate: Option<NonZeroU32>,
    /// Burst in events, when this token overrides the default.
    pub burst: Option<NonZeroU32>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("index", &self.index)
            .field("name", &self.name)
            .field("clients", &self.patterns)
            .field("rate", &self.rate)
            .field("burst", &self.burst)
            .finish_non_exhaustive()
    }
}

impl Token {
    /// Whether this token may submit events for `client_id`.
    pub fn allows(&self, client_id: &str) -> bool {
        self.clients.is_match(client_id)
    }
}

/// The set of tokens ingest accepts.
#[derive(Debug, Default)]
pub struct Tokens {
    tokens: Vec<Arc<Token>>,
}

impl Tokens {
    /// Reads and parses a tokens file.
    pub fn load(path: &Path) -> Result<Tokens, TokensError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokensError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml_str(&text)
    }

    /// Parses the TOML of a tokens file (`[[tokens]]` tables, at least one).
    pub fn from_toml_str(text: &str) -> Result<Tokens, TokensError> {
        let file: File = toml::from_str(text)?;
        if file.tokens.is_empty() {
            return Err(TokensError::Empty);
        }
        let mut tokens = Vec::with_capacity(file.tokens.len());
        for (index, raw) in file.tokens.into_iter().enumerate() {
            let name = raw.name.clone();
            let fail = |problem: String| TokensError::Token {
                index,
                name: name.clone(),
                problem,
            };
            let digest: [u8; 32] = match (raw.token, raw.sha256) {
                (Some(plain), None) if plain.is_empty() => {
                    return Err(fail("token is empty: it would admit any request with an empty bearer".into()))
                }
                (Some(plain), None) if plain.chars().count() < MIN_TOKEN_CHARS => {
                    return Err(fail(format!(
                        "token is shorter than {MIN_TOKEN_CHARS} characters ({}): use a long random secret, e.g. `openssl rand -hex 16`",
                        plain.chars().count()
                    )))
                }
                (Some(plain), None) => Sha256::digest(plain.as_bytes()).into(),
                (None, Some(hex_digest)) => {
                    let bytes = hex::decode(hex_digest.trim())
                        .map_err(|_| fail("sha256 must be 64 hex characters".into()))?;
                    <[u8; 32]>::try_from(bytes.as_slice())
                        .map_err(|_| fail("sha256 must be 64 hex characters".into()))?
                }
                (Some(_), Some(_)) => {
                    return Err(fail("set either token or sha256, not both".into()))
                }
                (None, None) => {
                    return Err(fail(
                        "one of token (non-empty) or sha256 is required".into(),
                    ))
                }
            };
            if digest == EMPTY_DIGEST {
                return Err(fail(
                    "sha256 is the digest of the empty token: it would admit any request with an empty bearer".into(),
                ));
            }
            if raw.clients.is_empty() {
                return Err(fail(
                    "clients must list at least one client_id pattern (use [\"*\"] for any)".into(),
                ));
            }
            let mut set = GlobSetBuilder::new();
            for pattern in &raw.clients {
                if pattern.trim().is_empty() {
                    return Err(fail(
                        "clients holds an empty pattern, which matches no client_id: remove it or use \"*\" for any".into(),
                    ));
                }
                let glob = Glob::new(pattern)
                    .map_err(|e| fail(format!("clients pattern {pattern:?} is invalid: {e}")))?;
                set.add(glob);
            }
            let clients = set
                .build()
                .map_err(|e| fail(format!("clients patterns are invalid: {e}")))?;
            let nonzero = |v: Option<u32>, key: &str| match v {
                None => Ok(None),
                Some(n) => NonZeroU32::new(n)
                    .map(Some)
                    .ok_or_else(|| fail(format!("{key} must be at least 1"))),
            };
            tokens.push(Arc::new(Token {
                index: index as u32,
                name: raw.name.unwrap_or_else(|| format!("tokens[{index}]")),
                digest,
                clients,
                patterns: raw.clients,
                rate: nonzero(raw.rate, "rate")?,
                burst: nonzero(raw.burst, "burst")?,
            }));
        }
        Ok(Tokens { tokens })
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Token>> {
        self.tokens.iter()
    }

    /// The token whose digest matches `presented`, comparing against every token in constant time.
    pub fn find(&self, presented: &str) -> Option<Arc<Token>> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for token in &self.tokens {
            if bool::from(token.digest.ct_eq(&digest)) {
                found = Some(token.clone());
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
        [[tokens]]
        name = "fleet-a"
        token = "secret-a-0123456789"
        clients = ["probe-a*"]

        [[tokens]]
        sha256 = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"
        clients = ["edge-7", "lab-*"]
        rate = 50
        burst = 100
    "#;

    #[test]
    fn finds_plain_and_hashed_tokens() {
        let tokens = Tokens::from_toml_str(FILE).unwrap();
        assert_eq!(tokens.len(), 2);
        let a = tokens.find("secret-a-0123456789").expect("plain token");
        assert_eq!(a.name, "fleet-a");
        assert!(a.allows("probe-a17"));
        assert!(!a.allows("probe-b1"));
        // sha256("secret") in the file
        let b = tokens.find("secret").expect("hashed token");
        assert!(b.allows("edge-7") && b.allows("lab-x") && !b.allows("edge-8"));
        assert_eq!(b.rate.map(|r| r.get()), Some(50));
        assert!(tokens.find("secret-a").is_none());
        assert!(tokens.find("").is_none());
    }

    #[test]
    fn debug_output_hides_secrets() {
        let tokens = Tokens::from_toml_str(FILE).unwrap();
        let dbg = format!("{tokens:?}");
        assert!(!dbg.contains("secret-a"), "{dbg}");
        assert!(!dbg.contains("2bb80d53"));
    }

    #[test]
    fn bad_entries_are_named_by_position() {
        let cases = [
            ("[[tokens]]\nclients = [\"*\"]\n", "tokens[0]: one of token"),
            ("[[tokens]]\ntoken = \"0123456789abcdef\"\n", "tokens[0]: clients must list"),
            ("[[tokens]]\nsha256 = \"zz\"\nclients = [\"*\"]\n", "tokens[0]: sha256 must be 64 hex"),
            ("[[tokens]]\ntoken = \"0123456789abcdef\"\nclients = [\"*\"]\nrate = 0\n", "tokens[0]: rate must be at least 1"),
            ("[[tokens]]\ntoken = \"0123456789abcdef\"\nclients = [\"*\"]\n[[tokens]]\ntoken = \"y\"\nsha256 = \"00\"\nclients = [\"*\"]\n", "tokens[1]: set either"),
            ("[[tokens]]\ntoken = \"0123456789abcdef\"\nclients = [\"a[\"]\n", "tokens[0]: clients pattern"),
            ("[[tokens]]\ntoken = \"\"\nclients = [\"*\"]\n", "tokens[0]: token is empty"),
            ("[[tokens]]\nname = \"n\"\ntoken = \"0123456789abcde\"\nclients = [\"*\"]\n", "tokens[0] (name \"n\"): token is shorter than 16 characters (15)"),
            ("[[tokens]]\nsha256 = \"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\"\nclients = [\"*\"]\n", "tokens[0]: sha256 is the digest of the empty token"),
            ("[[tokens]]\ntoken = \"0123456789abcdef\"\nclients = [\"*\"]\n[[tokens]]\ntoken = \"0123456789abcdefg\"\nclients = [\"edge-*\", \"\"]\n", "tokens[1]: clients holds an empty pattern"),
            ("", "the tokens file has no [[tokens]] entries"),
            ("# every token revoked\ntokens = []\n", "the tokens file has no [[tokens]] entries"),
        ];
        for (text, want) in cases {
            let err = Tokens::from_toml_str(text).unwrap_err().to_string();
            assert!(err.starts_with(want), "{text:?}: {err}");
        }
        let err = Tokens::from_toml_str("[[tokens]]\ntokn = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("tokn"), "{err}");
    }
}
