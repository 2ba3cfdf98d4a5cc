//! Bearer tokens: who may read, write or administer through the HTTP API.
//!
//! The tokens file is JSON: `{"tokens": [{"name": "ci", "token": "…",
//! "scope": "read" | "write" | "admin", "sees": "all" | "published"}]}`. A
//! scope includes the ones below it. A token that sees only published
//! artifacts is told an internal one does not exist, on every read path. A server started without a tokens file serves anyone who
//! reaches it, so it listens on loopback only (see `server::Config`).

use std::path::Path;

use subtle::ConstantTimeEq;

use asl_core::{Error, Result};

/// What a token may do; each includes the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// Read artifacts and listings.
    Read,
    /// Also put artifacts.
    Write,
    /// Also administrative calls.
    Admin,
}

impl Scope {
    fn parse(s: &str) -> Option<Scope> {
        Some(match s {
            "read" => Scope::Read,
            "write" => Scope::Write,
            "admin" => Scope::Admin,
            _ => return None,
        })
    }
}

/// One configured token.
#[derive(Clone, Debug)]
pub struct Token {
    /// A name for logs and errors (never the secret).
    pub name: String,
    secret: Vec<u8>,
    /// What it may do.
    pub scope: Scope,
    /// Whether it sees only published artifacts.
    pub published_only: bool,
}

/// The configured tokens.
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    tokens: Vec<Token>,
}

/// Compares in constant time (`subtle`, whose comparison the optimizer may
/// not turn into an early exit), so the time taken says nothing about how
/// much of a guess was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

impl Tokens {
    /// Reads a tokens file; every problem is one line naming the file.
    pub fn load(path: &Path) -> Result<Tokens> {
        let bad = |why: String| Error::InvalidArgument(format!("{}: {why}", path.display()));
        let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
            context: format!("read {}", path.display()),
            source: e,
        })?;
        // Secrets others can read are not secrets: refused as ssh refuses
        // such a key, before anything is served with them.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)
                .map_err(|e| Error::Io {
                    context: format!("stat {}", path.display()),
                    source: e,
                })?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(bad(format!(
                    "readable or writable by group or others (mode {:04o}); `chmod 600` it",
                    mode & 0o7777
                )));
            }
        }
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
        let list = v
            .get("tokens")
            .and_then(|t| t.as_array())
            .ok_or_else(|| bad("no \"tokens\" list".into()))?;
        let mut tokens = Vec::new();
        for (i, t) in list.iter().enumerate() {
            let field = |k: &str| {
                t.get(k)
                    .and_then(|x| x.as_str())
                    .ok_or_else(|| bad(format!("tokens[{i}] has no text {k:?}")))
            };
            let name = field("name")?.to_string();
            let secret = field("token")?;
            if secret.len() < 16 {
                return Err(bad(format!("token {name:?} is shorter than 16 characters")));
            }
            let scope = Scope::parse(field("scope")?)
                .ok_or_else(|| bad(format!("token {name:?}: scope is read, write or admin")))?;
            let published_only = match t.get("sees").map(|v| v.as_str()) {
                None | Some(Some("all")) => false,
                Some(Some("published")) => true,
                _ => return Err(bad(format!("token {name:?}: sees is all or published"))),
            };
            if tokens.iter().any(|x: &Token| x.name == name) {
                return Err(bad(format!("token {name:?} is named twice")));
            }
            tokens.push(Token {
                name,
                secret: secret.as_bytes().to_vec(),
                scope,
                published_only,
            });
        }
        if tokens.is_empty() {
            return Err(bad("the tokens list is empty".into()));
        }
        Ok(Tokens { tokens })
    }

    /// The token an `Authorization` header value presents, if it is one of
    /// these.
    pub fn check(&self, header: &str) -> Option<&Token> {
        let presented = header.strip_prefix("Bearer ")?.trim().as_bytes();
        // Every token is compared, so the time does not say which matched.
        let mut found = None;
        for t in &self.tokens {
            if same(&t.secret, presented) {
                found = Some(t);
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_load_and_check() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tokens.json");
        std::fs::write(
            &p,
            r#"{"tokens": [{"name": "ci", "token": "0123456789abcdef-w", "scope": "write"},
                           {"name": "ro", "token": "0123456789abcdef-r", "scope": "read"}]}"#,
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Tokens::load(&p).unwrap_err().to_string();
        assert!(e.contains("mode 0644"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let t = Tokens::load(&p).unwrap();
        assert_eq!(
            t.check("Bearer 0123456789abcdef-w").map(|t| t.scope),
            Some(Scope::Write)
        );
        assert_eq!(t.check("Bearer 0123456789abcdef-r").map(|t| t.scope), Some(Scope::Read));
        assert!(t.check("Bearer 0123456789abcdef-x").is_none());
        assert!(t.check("Basic 0123456789abcdef-w").is_none());
        assert!(Scope::Admin > Scope::Write && Scope::Write > Scope::Read);
        for bad in [
            "[]",
            r#"{"tokens": []}"#,
            r#"{"tokens": [{"name": "a", "token": "short", "scope": "read"}]}"#,
            r#"{"tokens": [{"name": "a", "token": "0123456789abcdef", "scope": "root"}]}"#,
        ] {
            std::fs::write(&p, bad).unwrap();
            assert!(Tokens::load(&p).is_err(), "{bad}");
        }
    }
}
