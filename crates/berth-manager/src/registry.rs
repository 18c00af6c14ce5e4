//! Pull and push over the OCI distribution API, with `oci-client`.
//!
//! Anonymous, basic and bearer-token auth (oci-client answers the registry's
//! `WWW-Authenticate` challenge: basic credentials go straight to a basic realm, or are
//! exchanged at a bearer realm for a token; an identity token is used as the bearer
//! token directly). Plain HTTP for localhost and registries marked insecure, HTTPS
//! otherwise. Manifests are kept byte-exact and verified against their digest; layers
//! are fetched in parallel, each streamed into the content store, which verifies it,
//! and unpacked in order as soon as it and the layers below it are in. A layer already
//! stored is not fetched again. Progress is reported per layer.
//!
//! A registry is a stranger: manifests are read by us, not by oci-client, so that
//! one larger than [`MAX_MANIFEST`] (4 MiB, Docker's limit) is refused as it
//! arrives; the config is read with `take(size + 1)` against its descriptor and
//! at most [`MAX_CONFIG`]; a layer stream stops at its descriptor's size + 1.
//!
//! Two pulls of the same reference take turns on a per-reference lock, so the second
//! finds everything stored and unpacked; two pulls sharing a layer take turns on a
//! per-blob lock. Everything a pull writes is held by a lease until the image record
//! is committed, the last step.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard, Semaphore};

use crate::content::Digest;
use crate::images::{self, LayerProgress, PlatformSpec, ProgressFn, ProgressStatus};
use crate::metadata::LayerRecord;
use crate::store::{Image, LeaseGuard, Store, StoreError};

/// Errors of pull and push.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A request to the registry failed (network, auth, not found, ...).
    #[error("{op} {reference}: {source}")]
    Client {
        op: &'static str,
        reference: String,
        #[source]
        source: oci_client::errors::OciDistributionError,
    },
    /// The registry sent content that does not match its digest.
    #[error("{reference}: registry sent {actual} for {expected}")]
    Digest {
        reference: String,
        expected: String,
        actual: Digest,
    },
    /// A background task died.
    #[error("pull task failed: {0}")]
    Task(String),
    /// The registry sent more than a limit or a descriptor allows.
    #[error("{reference}: the registry sent a {what} larger than {limit} bytes: refused")]
    TooLarge {
        reference: String,
        what: &'static str,
        limit: u64,
    },
    /// `docker login`'s check failed; the message is the one dockerd gives.
    #[error("{message}")]
    Login { status: u16, message: String },
    /// A manifest request failed at the HTTP level.
    #[error("fetch manifest {reference}: {message}")]
    Manifest {
        reference: String,
        status: u16,
        message: String,
    },
}

/// The largest manifest or index accepted: 4 MiB, as Docker.
pub const MAX_MANIFEST: u64 = 4 << 20;
/// The largest image config accepted: 16 MiB (configs are a few KiB; their
/// history lines are what grows).
pub const MAX_CONFIG: u64 = 16 << 20;
/// How long a manifest or config request may take.
const SMALL_FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// Read a response body into memory, refusing it past `limit` bytes (as it
/// arrives, and at once when its Content-Length says so).
async fn bounded_body(
    mut resp: reqwest::Response,
    limit: u64,
    reference: &str,
    what: &'static str,
) -> Result<Vec<u8>, StoreError> {
    let too_large = || RegistryError::TooLarge {
        reference: reference.to_string(),
        what,
        limit,
    };
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(too_large().into());
    }
    let mut out = Vec::new();
    loop {
        let chunk = resp.chunk().await.map_err(|e| RegistryError::Manifest {
            reference: reference.to_string(),
            status: 0,
            message: e.to_string(),
        })?;
        let Some(c) = chunk else { break };
        if out.len() as u64 + c.len() as u64 > limit {
            return Err(too_large().into());
        }
        out.extend_from_slice(&c);
    }
    Ok(out)
}

/// Registry credentials; the default is anonymous.
#[derive(Clone, Default)]
pub struct Auth {
    pub username: String,
    pub password: String,
    /// A bearer token obtained elsewhere, used instead of the password.
    pub identity_token: String,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl Auth {
    fn to_oci(&self) -> RegistryAuth {
        if !self.identity_token.is_empty() {
            RegistryAuth::Bearer(self.identity_token.clone())
        } else if !self.username.is_empty() {
            RegistryAuth::Basic(self.username.clone(), self.password.clone())
        } else {
            RegistryAuth::Anonymous
        }
    }
}

/// Options of a pull.
#[derive(Clone, Default)]
pub struct PullOptions {
    pub auth: Auth,
    /// Allow plain HTTP (registries on localhost always are).
    pub insecure: bool,
    /// Default: linux and the host's architecture.
    pub platform: Option<PlatformSpec>,
    pub progress: Option<ProgressFn>,
    /// Layers fetched at once (default 3, as Docker).
    pub max_concurrent: usize,
    /// Fetch from this registry (`host[:port]`, serving the same repository paths)
    /// instead of the reference's own; the image is still named by the reference.
    /// Plain HTTP when `insecure` or local, as for any registry.
    pub mirror: Option<String>,
}

impl std::fmt::Debug for PullOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullOptions")
            .field("auth", &self.auth)
            .field("insecure", &self.insecure)
            .field("platform", &self.platform)
            .field("mirror", &self.mirror)
            .finish_non_exhaustive()
    }
}

/// `r` as served by `mirror`: the same repository and tag or digest on another
/// registry.
fn on_mirror(r: &Reference, mirror: &str) -> Reference {
    match (r.tag(), r.digest()) {
        (Some(tag), Some(digest)) => Reference::with_tag_and_digest(
            mirror.to_string(),
            r.repository().to_string(),
            tag.to_string(),
            digest.to_string(),
        ),
        (None, Some(digest)) => Reference::with_digest(
            mirror.to_string(),
            r.repository().to_string(),
            digest.to_string(),
        ),
        (tag, None) => Reference::with_tag(
            mirror.to_string(),
            r.repository().to_string(),
            tag.unwrap_or("latest").to_string(),
        ),
    }
}

/// Options of a push.
#[derive(Clone, Default)]
pub struct PushOptions {
    pub auth: Auth,
    pub insecure: bool,
    pub progress: Option<ProgressFn>,
}

impl std::fmt::Debug for PushOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushOptions")
            .field("auth", &self.auth)
            .field("insecure", &self.insecure)
            .finish_non_exhaustive()
    }
}

/// Async locks by key (references being pulled, blobs being fetched).
#[derive(Debug, Default)]
pub struct PullLocks(std::sync::Mutex<HashMap<String, Arc<AsyncMutex<()>>>>);

impl PullLocks {
    async fn lock(&self, key: &str) -> OwnedMutexGuard<()> {
        let m = {
            let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
            // Forget locks nobody holds or waits for.
            map.retain(|_, m| Arc::strong_count(m) > 1);
            Arc::clone(map.entry(key.to_string()).or_default())
        };
        m.lock_owned().await
    }
}

/// Registries spoken to over plain HTTP without being marked insecure: Docker's
/// default insecure range is 127.0.0.0/8 (and `localhost` resolves into it).
fn is_local(registry: &str) -> bool {
    let host = match registry.rsplit_once(':') {
        // A bare IPv6 address has colons of its own.
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':') => h,
        _ => registry,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The challenge of a 401: its scheme (lower case) and parameters.
fn parse_challenge(h: &str) -> (String, HashMap<String, String>) {
    let h = h.trim();
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    let mut params = HashMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let Some((k, after)) = rest.split_once('=') else {
            break;
        };
        let key = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, tail) = if let Some(q) = after.strip_prefix('"') {
            match q.find('"') {
                Some(end) => (&q[..end], &q[end + 1..]),
                None => (q, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        params.insert(key, value.to_string());
        rest = tail.trim_start().trim_start_matches(',').trim_start();
    }
    (scheme.to_ascii_lowercase(), params)
}

/// The registry host a `docker login` server names: no scheme, no path; Docker
/// Hub's index address is its registry.
fn login_host(server: &str) -> String {
    let s = server
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = s.split('/').next().unwrap_or(s);
    match host {
        "" | "docker.io" | "index.docker.io" => "registry-1.docker.io".to_string(),
        h => h.to_string(),
    }
}

/// How long each request of a login may take.
const LOGIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Check credentials as `docker login` does: ask `/v2/`; on a Basic challenge ask
/// again with them, on a Bearer challenge get a token with them at the realm. A
/// registry that asks for no credentials accepts any. Returns the identity token
/// the registry gave, if any ("" otherwise).
pub async fn login(server: &str, auth: &Auth, insecure: bool) -> Result<String, StoreError> {
    let host = login_host(server);
    let scheme = if insecure || is_local(&host) {
        "http"
    } else {
        "https"
    };
    let url = format!("{scheme}://{host}/v2/");
    let http = reqwest::Client::new();
    // reqwest's own words name only the URL; the cause (refused, no route, a
    // timeout) is at the end of its chain.
    let failed = |e: reqwest::Error| {
        let mut cause: &dyn std::error::Error = &e;
        while let Some(inner) = cause.source() {
            cause = inner;
        }
        RegistryError::Login {
            status: 0,
            message: format!("Get \"{url}\": {cause}"),
        }
    };
    let refused = |status: reqwest::StatusCode| RegistryError::Login {
        status: status.as_u16(),
        message: format!(
            "login attempt to {url} failed with status: {} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        ),
    };
    let resp = http
        .get(&url)
        .timeout(LOGIN_TIMEOUT)
        .send()
        .await
        .map_err(failed)?;
    let status = resp.status();
    if status.is_success() {
        return Ok(String::new());
    }
    if status != reqwest::StatusCode::UNAUTHORIZED {
        return Err(refused(status).into());
    }
    let challenge = resp
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let (kind, params) = parse_challenge(&challenge);
    if !auth.identity_token.is_empty() && kind == "bearer" {
        let resp = http
            .get(&url)
            .timeout(LOGIN_TIMEOUT)
            .bearer_auth(&auth.identity_token)
            .send()
            .await
            .map_err(failed)?;
        return match resp.status() {
            s if s.is_success() => Ok(auth.identity_token.clone()),
            s => Err(refused(s).into()),
        };
    }
    match kind.as_str() {
        "basic" => {
            let resp = http
                .get(&url)
                .timeout(LOGIN_TIMEOUT)
                .basic_auth(&auth.username, Some(&auth.password))
                .send()
                .await
                .map_err(failed)?;
            match resp.status() {
                s if s.is_success() => Ok(String::new()),
                s => Err(refused(s).into()),
            }
        }
        "bearer" => {
            let realm = params.get("realm").cloned().unwrap_or_default();
            let mut token_url = reqwest::Url::parse(&realm).map_err(|e| RegistryError::Login {
                status: 0,
                message: format!("{url}: the registry's token realm {realm:?}: {e}"),
            })?;
            {
                let mut q = token_url.query_pairs_mut();
                if let Some(s) = params.get("service") {
                    q.append_pair("service", s);
                }
                q.append_pair("account", &auth.username);
                q.append_pair("client_id", "docker");
                q.append_pair("offline_token", "true");
            }
            let resp = http
                .get(token_url)
                .timeout(LOGIN_TIMEOUT)
                .basic_auth(&auth.username, Some(&auth.password))
                .send()
                .await
                .map_err(failed)?;
            let status = resp.status();
            let body = bounded_body(resp, 64 << 10, &host, "token").await?;
            if !status.is_success() {
                // The registry's own words ({"errors":[{"message":...}]}), as dockerd
                // shows them.
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let why = v["errors"][0]["message"]
                    .as_str()
                    .or(v["details"].as_str())
                    .unwrap_or("authentication required")
                    .to_string();
                return Err(RegistryError::Login {
                    status: status.as_u16(),
                    message: format!("Get \"{url}\": unauthorized: {why}"),
                }
                .into());
            }
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            Ok(v["refresh_token"].as_str().unwrap_or("").to_string())
        }
        _ => Err(refused(status).into()),
    }
}

fn client_for(reference: &Reference, insecure: bool) -> Client {
    let registry = reference.resolve_registry().to_string();
    let protocol = if insecure || is_local(&registry) {
        ClientProtocol::HttpsExcept(vec![registry])
    } else {
        ClientProtocol::Https
    };
    Client::new(ClientConfig {
        protocol,
        ..Default::default()
    })
}

fn client_err<'a>(
    op: &'static str,
    reference: &'a Reference,
) -> impl Fn(oci_client::errors::OciDistributionError) -> StoreError + 'a {
    move |source| {
        RegistryError::Client {
            op,
            reference: reference.whole(),
            source,
        }
        .into()
    }
}

fn report(
    p: &Option<ProgressFn>,
    digest: &Digest,
    status: ProgressStatus,
    current: u64,
    total: u64,
) {
    if let Some(p) = p {
        p(LayerProgress {
            digest: digest.to_string(),
            status,
            current,
            total,
        });
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RegistryError::Task(e.to_string()))?
}

/// How manifests are fetched: oci-client reads whole bodies into memory, so
/// manifests are fetched here, with the token oci-client obtained.
struct ManifestFetcher {
    http: reqwest::Client,
    insecure: bool,
    token: Option<String>,
    auth: Auth,
}

impl ManifestFetcher {
    async fn fetch(&self, r: &Reference) -> Result<Vec<u8>, StoreError> {
        let registry = r.resolve_registry().to_string();
        let scheme = if self.insecure || is_local(&registry) {
            "http"
        } else {
            "https"
        };
        let reference = r.digest().or(r.tag()).unwrap_or("latest");
        let url = format!(
            "{scheme}://{registry}/v2/{}/manifests/{reference}",
            r.repository()
        );
        let mut req = self
            .http
            .get(&url)
            .timeout(SMALL_FETCH_TIMEOUT)
            .header(reqwest::header::ACCEPT, images::MANIFEST_TYPES.join(", "));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        } else if !self.auth.username.is_empty() {
            req = req.basic_auth(&self.auth.username, Some(&self.auth.password));
        }
        let whole = r.whole();
        let resp = req.send().await.map_err(|e| RegistryError::Manifest {
            reference: whole.clone(),
            status: 0,
            message: e.to_string(),
        })?;
        let status = resp.status();
        if !status.is_success() {
            // The registry's own words, bounded too.
            let body = bounded_body(resp, 64 << 10, &whole, "error message")
                .await
                .unwrap_or_default();
            return Err(RegistryError::Manifest {
                reference: whole,
                status: status.as_u16(),
                message: format!(
                    "{status}: {}",
                    String::from_utf8_lossy(&body)
                        .chars()
                        .take(512)
                        .collect::<String>()
                ),
            }
            .into());
        }
        bounded_body(resp, MAX_MANIFEST, &whole, "manifest").await
    }
}

impl Store {
    /// Pull `reference` into the store. Needs a multi-threaded tokio runtime.
    pub async fn pull(
        self: &Arc<Self>,
        reference: &str,
        opts: &PullOptions,
    ) -> Result<Image, StoreError> {
        let r = images::parse_reference(reference)?;
        let name = r.whole();
        let _turn = self.pulls.lock(&format!("ref:{name}")).await;
        // `r` names the image; `src` is where it is fetched from.
        let src = match opts.mirror.as_deref() {
            Some(m) if !m.is_empty() => on_mirror(&r, m),
            _ => r.clone(),
        };
        let client = client_for(&src, opts.insecure);
        let auth = opts.auth.to_oci();
        let token = client
            .auth(&src, &auth, RegistryOperation::Pull)
            .await
            .map_err(client_err("authenticate for", &src))?;
        let manifests = ManifestFetcher {
            http: reqwest::Client::new(),
            insecure: opts.insecure,
            token,
            auth: opts.auth.clone(),
        };

        let bytes = manifests.fetch(&src).await?;
        let top_digest = Digest::of(&bytes);
        if let Some(want) = r.digest() {
            if want != top_digest.as_str() {
                return Err(RegistryError::Digest {
                    reference: name,
                    expected: want.to_string(),
                    actual: top_digest,
                }
                .into());
            }
        }
        let mut manifest_bytes = bytes;
        let mut manifest_digest = top_digest.clone();
        let mut index: Option<Vec<u8>> = None;
        if let images::Manifest::Index(idx) =
            images::parse_manifest(top_digest.as_str(), &manifest_bytes)?
        {
            let platform = opts.platform.clone().unwrap_or_default();
            let desc = images::select_manifest(&idx, &platform).ok_or_else(|| {
                images::ImageError::NoPlatform {
                    platform: platform.to_string(),
                    digest: top_digest.to_string(),
                }
            })?;
            let want = images::digest_of(desc.digest())?;
            let by_digest = Reference::with_digest(
                src.registry().to_string(),
                r.repository().to_string(),
                want.to_string(),
            );
            let b = manifests.fetch(&by_digest).await?;
            let got = Digest::of(&b);
            if got != want {
                return Err(RegistryError::Digest {
                    reference: by_digest.whole(),
                    expected: want.to_string(),
                    actual: got,
                }
                .into());
            }
            index = Some(std::mem::replace(&mut manifest_bytes, b));
            manifest_digest = want;
        }
        let images::Manifest::Image(m) =
            images::parse_manifest(manifest_digest.as_str(), &manifest_bytes)?
        else {
            return Err(images::ImageError::MediaType("nested index".to_string()).into());
        };
        let config_digest = images::digest_of(m.config().digest())?;

        let lease = Arc::new(self.lease()?);
        let config_bytes = if self.content().exists(&config_digest) {
            self.lease_blob(&lease, &config_digest)?;
            self.content().read(&config_digest)?
        } else {
            // The descriptor's size, and never more than MAX_CONFIG.
            let limit = m.config().size();
            if limit > MAX_CONFIG {
                return Err(RegistryError::TooLarge {
                    reference: name,
                    what: "config",
                    limit: MAX_CONFIG,
                }
                .into());
            }
            let mut stream = client
                .pull_blob_stream(&src, config_digest.as_str())
                .await
                .map_err(client_err("fetch config", &src))?;
            let mut buf = Vec::new();
            while let Some(chunk) = stream.next().await {
                let c = chunk.map_err(|e| RegistryError::Client {
                    op: "fetch config",
                    reference: name.clone(),
                    source: e.into(),
                })?;
                if buf.len() as u64 + c.len() as u64 > limit {
                    return Err(RegistryError::TooLarge {
                        reference: name,
                        what: "config (more than its descriptor says)",
                        limit,
                    }
                    .into());
                }
                buf.extend_from_slice(&c);
            }
            let got = Digest::of(&buf);
            if got != config_digest {
                return Err(RegistryError::Digest {
                    reference: name,
                    expected: config_digest.to_string(),
                    actual: got,
                }
                .into());
            }
            self.write_blob(&lease, &buf)?;
            buf
        };
        if let Some(i) = &index {
            self.write_blob(&lease, i)?;
        }
        self.write_blob(&lease, &manifest_bytes)?;
        let (mut rec, _) = self.record_for(
            &manifest_bytes,
            &manifest_digest,
            &config_bytes,
            index.as_ref().map(|_| top_digest.clone()),
        )?;

        // Every layer is fetched and unpacked as soon as it can be, at most `n`
        // downloads and as many unpacks as there are cores at once (each streams, so
        // memory stays bounded), each into a snapshot of its own; they are stacked in
        // order once all are there.
        let n = if opts.max_concurrent == 0 {
            3
        } else {
            opts.max_concurrent.min(16)
        };
        let limit = Arc::new(Semaphore::new(n));
        let cores = std::thread::available_parallelism().map_or(2, |c| c.get());
        let unpacks = Arc::new(Semaphore::new(cores.clamp(1, 8)));
        let diff_ids: Vec<Digest> = rec.layers.iter().map(|l| l.diff_id.clone()).collect();
        let chains = crate::images::chain_ids(&diff_ids);
        let mut layers = Vec::new();
        for (l, chain) in rec.layers.iter().zip(chains) {
            report(
                &opts.progress,
                &l.digest,
                ProgressStatus::Waiting,
                0,
                l.size,
            );
            let store = Arc::clone(self);
            let (client, r, lease, l, limit, unpacks, progress) = (
                client.clone(),
                src.clone(),
                Arc::clone(&lease),
                l.clone(),
                Arc::clone(&limit),
                Arc::clone(&unpacks),
                opts.progress.clone(),
            );
            layers.push(tokio::spawn(async move {
                {
                    let _permit = limit
                        .acquire_owned()
                        .await
                        .map_err(|e| RegistryError::Task(e.to_string()))?;
                    Arc::clone(&store)
                        .fetch_layer(&client, &r, &lease, &l, &progress)
                        .await?;
                }
                let _permit = unpacks
                    .acquire_owned()
                    .await
                    .map_err(|e| RegistryError::Task(e.to_string()))?;
                report(&progress, &l.digest, ProgressStatus::Extracting, 0, l.size);
                blocking(move || store.unpack_detached(&lease, &l.digest, &l.diff_id, &chain)).await
            }));
        }
        // Stacked in a task of its own: a caller that goes away mid-pull leaves no
        // layer unpacked but not stacked (the tasks above run on regardless).
        let (store, lease2, all, progress) = (
            Arc::clone(self),
            Arc::clone(&lease),
            rec.layers.clone(),
            opts.progress.clone(),
        );
        let stacked = tokio::spawn(async move {
            let mut parent: Option<Digest> = None;
            let mut size = 0;
            let mut first_err = None;
            for (l, task) in all.iter().zip(layers) {
                let res = match task.await {
                    Ok(r) => r,
                    Err(e) => Err(RegistryError::Task(e.to_string()).into()),
                };
                let unpacked = match res {
                    Ok(u) => u,
                    Err(e) => {
                        first_err.get_or_insert(e);
                        continue;
                    }
                };
                let (st, le, p) = (Arc::clone(&store), Arc::clone(&lease2), parent.clone());
                if first_err.is_some() {
                    let _ = blocking(move || {
                        st.discard_unpacked(unpacked);
                        Ok(())
                    })
                    .await;
                    continue;
                }
                match blocking(move || st.commit_unpacked(&le, unpacked, p.as_ref())).await {
                    Ok((_, chain, s)) => {
                        size += s;
                        parent = Some(chain);
                        report(&progress, &l.digest, ProgressStatus::Done, l.size, l.size);
                    }
                    Err(e) => first_err = Some(e),
                }
            }
            match first_err {
                Some(e) => Err(e),
                None => Ok((parent, size)),
            }
        });
        let (parent, size) = stacked
            .await
            .map_err(|e| RegistryError::Task(e.to_string()))??;
        rec.top_snapshot = parent.map(String::from).unwrap_or_default();
        rec.size = size;
        rec.repo_digests = vec![format!("{}@{}", images::repository_of(&r), top_digest)];
        let names = if r.tag().is_some() {
            vec![Reference::with_tag(
                r.registry().to_string(),
                r.repository().to_string(),
                r.tag().unwrap_or("latest").to_string(),
            )
            .whole()]
        } else {
            Vec::new()
        };
        let store = Arc::clone(self);
        let img = blocking(move || store.commit_image(&rec, &names)).await?;
        drop(lease);
        Ok(img)
    }

    async fn fetch_layer(
        self: Arc<Self>,
        client: &Client,
        r: &Reference,
        lease: &Arc<LeaseGuard>,
        l: &LayerRecord,
        progress: &Option<ProgressFn>,
    ) -> Result<(), StoreError> {
        let _turn = self.pulls.lock(&format!("blob:{}", l.digest)).await;
        self.lease_blob(lease, &l.digest)?;
        if self.content().exists(&l.digest) {
            report(progress, &l.digest, ProgressStatus::Exists, l.size, l.size);
            return Ok(());
        }
        let mut stream = client
            .pull_blob_stream(r, l.digest.as_str())
            .await
            .map_err(client_err("fetch layer", r))?;
        let writer = self
            .content()
            .writer(Some(l.digest.clone()), Some(l.size))?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(32);
        let write_task = tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let mut w = writer;
            while let Some(chunk) = rx.blocking_recv() {
                if let Err(e) = w.write_all(&chunk) {
                    return Err(w.too_large().unwrap_or(crate::content::ContentError::Io {
                        what: "write blob",
                        path: std::path::PathBuf::from("ingest"),
                        source: e,
                    }));
                }
            }
            w.commit()
        });
        let mut done = 0u64;
        let mut last = 0u64;
        let mut failed = None;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(c) => {
                    done += c.len() as u64;
                    // Refused as soon as it outgrows its descriptor, not at the end.
                    if done > l.size {
                        drop(tx);
                        let _ = write_task.await;
                        return Err(RegistryError::TooLarge {
                            reference: format!("{}@{}", r.whole(), l.digest),
                            what: "layer (more than its descriptor says)",
                            limit: l.size,
                        }
                        .into());
                    }
                    if tx.send(c).await.is_err() {
                        break;
                    }
                    if done - last >= 256 * 1024 || done == l.size {
                        last = done;
                        report(
                            progress,
                            &l.digest,
                            ProgressStatus::Downloading,
                            done,
                            l.size,
                        );
                    }
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        drop(tx);
        let committed = write_task
            .await
            .map_err(|e| RegistryError::Task(e.to_string()))?;
        if let Some(e) = failed {
            return Err(RegistryError::Client {
                op: "fetch layer",
                reference: format!("{}@{}", r.whole(), l.digest),
                source: e.into(),
            }
            .into());
        }
        report(progress, &l.digest, ProgressStatus::Verifying, done, l.size);
        committed?;
        Ok(())
    }

    /// Push the image named `reference` to its registry; returns the manifest digest.
    pub async fn push(
        self: &Arc<Self>,
        reference: &str,
        opts: &PushOptions,
    ) -> Result<Digest, StoreError> {
        let img = self.image(reference)?;
        let r = images::parse_reference(reference)?;
        let client = client_for(&r, opts.insecure);
        let auth = opts.auth.to_oci();
        client
            .auth(&r, &auth, RegistryOperation::Push)
            .await
            .map_err(client_err("authenticate for", &r))?;
        let mut blobs: Vec<(Digest, u64)> = img
            .record
            .layers
            .iter()
            .map(|l| (l.digest.clone(), l.size))
            .collect();
        blobs.push((
            img.record.id.clone(),
            self.content().info(&img.record.id)?.size,
        ));
        for (d, size) in blobs {
            if client
                .blob_exists(&r, d.as_str())
                .await
                .map_err(client_err("check blob", &r))?
            {
                report(&opts.progress, &d, ProgressStatus::Exists, size, size);
                continue;
            }
            report(&opts.progress, &d, ProgressStatus::Pushing, 0, size);
            let file = tokio::fs::File::open(self.content().path(&d))
                .await
                .map_err(|e| crate::store::io_err("open", &self.content().path(&d), e))?;
            let progress = opts.progress.clone();
            let d2 = d.clone();
            let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let stream = futures_util::stream::unfold(file, |mut f| async move {
                use tokio::io::AsyncReadExt;
                let mut buf = vec![0u8; 1 << 20];
                match f.read(&mut buf).await {
                    Ok(0) => None,
                    Ok(n) => {
                        buf.truncate(n);
                        Some((Ok(bytes::Bytes::from(buf)), f))
                    }
                    Err(e) => Some((Err(e.into()), f)),
                }
            })
            .inspect(
                move |c: &Result<bytes::Bytes, oci_client::errors::OciDistributionError>| {
                    if let Ok(c) = c {
                        let n = sent
                            .fetch_add(c.len() as u64, std::sync::atomic::Ordering::Relaxed)
                            + c.len() as u64;
                        report(&progress, &d2, ProgressStatus::Pushing, n, size);
                    }
                },
            );
            client
                .push_blob_stream(&r, stream, d.as_str(), Some(size))
                .await
                .map_err(client_err("push blob", &r))?;
            report(&opts.progress, &d, ProgressStatus::Pushed, size, size);
        }
        let manifest = self.content().read(&img.record.manifest_digest)?;
        let ct =
            img.record.manifest_media_type.parse().map_err(|_| {
                images::ImageError::MediaType(img.record.manifest_media_type.clone())
            })?;
        client
            .push_manifest_raw(&r, manifest, ct)
            .await
            .map_err(client_err("push manifest", &r))?;
        let repo_digest = format!(
            "{}@{}",
            images::repository_of(&r),
            img.record.manifest_digest
        );
        let store = Arc::clone(self);
        let id = img.record.id.clone();
        blocking(move || {
            store.metadata().write(|t| {
                if let Some(mut rec) = t.image(&id)? {
                    if !rec.repo_digests.contains(&repo_digest) {
                        rec.repo_digests.push(repo_digest);
                        t.put_image(&rec)?;
                    }
                }
                Ok::<_, crate::metadata::MetadataError>(())
            })?;
            Ok(())
        })
        .await?;
        Ok(img.record.manifest_digest)
    }
}

#[cfg(test)]
mod login_tests {
    use super::*;

    #[test]
    fn loopback_registries_are_plain_http() {
        for r in [
            "127.0.0.1:5000",
            "127.1.2.3:80",
            "localhost:5000",
            "[::1]:5000",
            "::1",
        ] {
            assert!(is_local(r), "{r}");
        }
        for r in [
            "registry-1.docker.io",
            "10.0.0.1:5000",
            "128.0.0.1:5000",
            "example.com",
        ] {
            assert!(!is_local(r), "{r}");
        }
    }

    #[test]
    fn login_servers_name_a_host() {
        assert_eq!(
            login_host("https://index.docker.io/v1/"),
            "registry-1.docker.io"
        );
        assert_eq!(login_host(""), "registry-1.docker.io");
        assert_eq!(login_host("http://127.0.0.1:5000/"), "127.0.0.1:5000");
        assert_eq!(login_host("127.0.0.1:5000"), "127.0.0.1:5000");
    }

    #[test]
    fn challenges_parse() {
        let (k, p) = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull""#,
        );
        assert_eq!(k, "bearer");
        assert_eq!(p["realm"], "https://auth.example/token");
        assert_eq!(p["service"], "registry.example");
        assert_eq!(p["scope"], "repository:a/b:pull");
        let (k, p) = parse_challenge(r#"Basic realm="berth-test""#);
        assert_eq!(k, "basic");
        assert_eq!(p["realm"], "berth-test");
        assert_eq!(parse_challenge("").0, "");
    }
}
