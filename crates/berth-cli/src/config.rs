//! The docker CLI's configuration file, `config.json` in `--config`, `$DOCKER_CONFIG`
//! or `~/.docker`, read and written as the docker CLI does so both tools share it:
//! registry credentials (`auths`, or a credential helper named by `credsStore` /
//! `credHelpers`), `detachKeys`, and the default formats (`psFormat`,
//! `imagesFormat`, ...). Keys berth does not know are kept as they are.
//!
//! Credentials are read through the `docker_credential` crate (it runs the helpers'
//! `get`); storing and erasing (login, logout) speak the helpers' protocol here,
//! which that crate does not cover.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};
use base64::Engine;
use serde_json::{json, Map, Value};

static DIR: OnceLock<PathBuf> = OnceLock::new();

/// Sets the configuration directory (the global `--config` flag).
pub fn set_dir(dir: PathBuf) {
    let _ = DIR.set(dir);
}

/// `--config`, then `$DOCKER_CONFIG`, then `~/.docker`.
pub fn dir() -> PathBuf {
    if let Some(d) = DIR.get() {
        return d.clone();
    }
    if let Some(d) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".docker")
}

/// Docker Hub's key in `auths`.
pub const DOCKER_HUB: &str = "https://index.docker.io/v1/";

/// One registry's credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthConfig {
    pub username: String,
    pub password: String,
    pub server: String,
    pub identity_token: String,
}

impl AuthConfig {
    /// The `X-Registry-Auth` header value: base64url JSON, as the docker CLI sends.
    pub fn header(&self) -> String {
        let mut v = json!({"serveraddress": self.server});
        if !self.username.is_empty() {
            v["username"] = json!(self.username);
        }
        if !self.password.is_empty() {
            v["password"] = json!(self.password);
        }
        if !self.identity_token.is_empty() {
            v["identitytoken"] = json!(self.identity_token);
        }
        base64::engine::general_purpose::URL_SAFE.encode(v.to_string())
    }
}

/// The configuration file.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    path: PathBuf,
    raw: Map<String, Value>,
}

/// A registry address as a host name: scheme and path dropped, docker.io's names
/// made one.
pub fn hostname(server: &str) -> String {
    let s = server
        .strip_prefix("https://")
        .or_else(|| server.strip_prefix("http://"))
        .unwrap_or(server);
    let host = s.split('/').next().unwrap_or(s);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io".into(),
        h => h.to_string(),
    }
}

/// The registry an image reference lives on (Docker Hub when it names none).
pub fn registry_of(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first.to_string()
        }
        _ => DOCKER_HUB.to_string(),
    }
}

impl ConfigFile {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the file; a missing file is an empty configuration.
    pub fn load() -> Result<ConfigFile> {
        let path = dir().join("config.json");
        let raw = match std::fs::read(&path) {
            Ok(b) if b.iter().all(u8::is_ascii_whitespace) => Map::new(),
            Ok(b) => serde_json::from_slice::<Value>(&b)
                .ok()
                .and_then(|v| v.as_object().cloned())
                .with_context(|| format!("loading config file {}: invalid JSON", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Map::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        Ok(ConfigFile { path, raw })
    }

    /// Writes the file atomically (temporary file, fsync, rename), readable only by
    /// its owner: it may hold passwords.
    pub fn save(&self) -> Result<()> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        let tmp = dir.join(format!(".config.json.{}", std::process::id()));
        let data = serde_json::to_vec_pretty(&Value::Object(self.raw.clone()))?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.write_all(&data)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, &self.path)
            .with_context(|| format!("replacing {}", self.path.display()))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    fn string(&self, key: &str) -> Option<String> {
        self.raw
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    }

    pub fn detach_keys(&self) -> Option<String> {
        self.string("detachKeys")
    }

    /// A default format: `psFormat`, `imagesFormat`, `volumesFormat`, `statsFormat`.
    pub fn format(&self, key: &str) -> Option<String> {
        self.string(key)
    }

    fn auths(&self) -> Option<&Map<String, Value>> {
        self.raw.get("auths").and_then(Value::as_object)
    }

    /// The helper that keeps `server`'s credentials, if one does.
    fn helper_for(&self, key: &str) -> Option<String> {
        self.raw
            .get("credHelpers")
            .and_then(|h| h.get(key))
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| self.string("credsStore"))
    }

    /// The key under which `server`'s credentials are (or would be) kept: the one
    /// already there that names the same host, else `server` itself.
    fn key_for(&self, server: &str) -> String {
        let want = hostname(server);
        let mut keys: Vec<String> = self
            .auths()
            .map(|a| a.keys().cloned().collect())
            .unwrap_or_default();
        if let Some(h) = self.raw.get("credHelpers").and_then(Value::as_object) {
            keys.extend(h.keys().cloned());
        }
        keys.into_iter()
            .find(|k| k == server)
            .or_else(|| {
                self.auths()
                    .and_then(|a| a.keys().find(|k| hostname(k) == want).cloned())
            })
            .or_else(|| {
                self.raw
                    .get("credHelpers")
                    .and_then(Value::as_object)
                    .and_then(|h| h.keys().find(|k| hostname(k) == want).cloned())
            })
            .unwrap_or_else(|| server.to_string())
    }

    /// The credentials stored for `server`, if any.
    pub fn auth(&self, server: &str) -> Result<Option<AuthConfig>> {
        let key = self.key_for(server);
        let data = serde_json::to_vec(&Value::Object(self.raw.clone()))?;
        use docker_credential::{CredentialRetrievalError as E, DockerCredential as D};
        match docker_credential::get_credential_from_reader(&data[..], &key) {
            Ok(D::UsernamePassword(u, p)) => Ok(Some(AuthConfig {
                username: u,
                password: p,
                server: key,
                identity_token: String::new(),
            })),
            Ok(D::IdentityToken(t)) => Ok(Some(AuthConfig {
                identity_token: t,
                server: key,
                ..AuthConfig::default()
            })),
            Err(E::NoCredentialConfigured) => Ok(None),
            // A helper that knows nothing of this server answers with an error too.
            Err(E::HelperFailure { .. }) => Ok(None),
            Err(e) => Err(anyhow::anyhow!("reading credentials for {key}: {e}")),
        }
    }

    /// Stores credentials as docker does: in the helper when one is configured
    /// (and an empty entry under `auths`), else base64 `user:password` in `auths`.
    pub fn store_auth(&mut self, a: &AuthConfig) -> Result<()> {
        let key = self.key_for(&a.server);
        let entry = match self.helper_for(&key) {
            Some(helper) => {
                let (user, secret) = if a.identity_token.is_empty() {
                    (a.username.as_str(), a.password.as_str())
                } else {
                    ("<token>", a.identity_token.as_str())
                };
                let input = json!({"ServerURL": key, "Username": user, "Secret": secret});
                run_helper(&helper, "store", input.to_string().as_bytes())?;
                json!({})
            }
            None => {
                let mut e = json!({});
                if a.identity_token.is_empty() {
                    e["auth"] = json!(base64::engine::general_purpose::STANDARD
                        .encode(format!("{}:{}", a.username, a.password)));
                } else {
                    e["identitytoken"] = json!(a.identity_token);
                }
                e
            }
        };
        let auths = self.raw.entry("auths").or_insert_with(|| json!({}));
        if !auths.is_object() {
            *auths = json!({});
        }
        if let Some(m) = auths.as_object_mut() {
            m.insert(key, entry);
        }
        self.save()
    }

    /// Forgets `server`'s credentials; false when there were none.
    pub fn erase_auth(&mut self, server: &str) -> Result<bool> {
        let key = self.key_for(server);
        let mut found = false;
        if let Some(helper) = self.helper_for(&key) {
            found = run_helper(&helper, "erase", key.as_bytes()).is_ok();
        }
        if let Some(m) = self.raw.get_mut("auths").and_then(Value::as_object_mut) {
            found |= m.remove(&key).is_some();
        }
        if found {
            self.save()?;
        }
        Ok(found)
    }
}

/// Runs `docker-credential-<helper> <verb>` with `input` on its stdin.
fn run_helper(helper: &str, verb: &str, input: &[u8]) -> Result<Vec<u8>> {
    let name = format!("docker-credential-{helper}");
    let mut child = std::process::Command::new(&name)
        .arg(verb)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("running the credential helper {name}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input)?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(if out.stdout.is_empty() {
            &out.stderr
        } else {
            &out.stdout
        });
        bail!("error {verb}ing credentials: {}: {}", name, msg.trim());
    }
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_registries() {
        assert_eq!(hostname("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(hostname("http://127.0.0.1:5000/v2/"), "127.0.0.1:5000");
        assert_eq!(registry_of("127.0.0.1:5000/a/b:1"), "127.0.0.1:5000");
        assert_eq!(registry_of("localhost/x"), "localhost");
        assert_eq!(registry_of("library/busybox"), DOCKER_HUB);
        assert_eq!(registry_of("busybox"), DOCKER_HUB);
    }

    #[test]
    fn auth_headers_are_base64url_json() {
        let a = AuthConfig {
            username: "u".into(),
            password: "p?>".into(),
            server: "127.0.0.1:5000".into(),
            ..AuthConfig::default()
        };
        let h = a.header();
        let v: Value =
            serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE.decode(h).unwrap())
                .unwrap();
        assert_eq!(v["username"], "u");
        assert_eq!(v["password"], "p?>");
        assert_eq!(v["serveraddress"], "127.0.0.1:5000");
    }

    #[test]
    fn credentials_round_trip_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = ConfigFile {
            path: dir.path().join("config.json"),
            raw: serde_json::from_str(r#"{"psFormat":"table {{.ID}}","detachKeys":"ctrl-x"}"#)
                .unwrap(),
        };
        let a = AuthConfig {
            username: "alice".into(),
            password: "s3cret".into(),
            server: "127.0.0.1:5000".into(),
            ..AuthConfig::default()
        };
        c.store_auth(&a).unwrap();
        let text = std::fs::read_to_string(c.path()).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["auths"]["127.0.0.1:5000"]["auth"], "YWxpY2U6czNjcmV0");
        assert_eq!(v["psFormat"], "table {{.ID}}");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(c.path()).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let got = c.auth("http://127.0.0.1:5000").unwrap().unwrap();
        assert_eq!(
            (got.username.as_str(), got.password.as_str()),
            ("alice", "s3cret")
        );
        assert!(c.auth("other:5000").unwrap().is_none());
        assert!(c.erase_auth("127.0.0.1:5000").unwrap());
        assert!(c.auth("127.0.0.1:5000").unwrap().is_none());
        assert!(!c.erase_auth("127.0.0.1:5000").unwrap());
        assert_eq!(c.detach_keys().as_deref(), Some("ctrl-x"));
    }
}
