//! Matches a request's method and path to an [`Endpoint`], after taking off the optional
//! `/v1.NN` prefix and checking that version against what berthd serves.
//!
//! The table mirrors dockerd's: image names may hold slashes (`/images/{name*}/json`),
//! and a method that does not match is answered like an unknown path (404 "page not
//! found"), as dockerd does.

use http::Method;

use crate::error::EngineError;

/// The API version berthd declares (`API-Version` header, `/version`).
pub const API_VERSION: &str = "1.47";
/// The oldest API version berthd accepts.
pub const MIN_API_VERSION: &str = "1.24";

/// A Docker API version, `major.minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiVersion {
    pub major: u32,
    pub minor: u32,
}

impl ApiVersion {
    /// The newest version berthd serves.
    pub const CURRENT: ApiVersion = ApiVersion {
        major: 1,
        minor: 47,
    };
    /// The oldest version berthd serves.
    pub const MIN: ApiVersion = ApiVersion {
        major: 1,
        minor: 24,
    };

    /// Parses `1.47`; `None` when it is not two dot-separated numbers.
    pub fn parse(s: &str) -> Option<ApiVersion> {
        let (major, minor) = s.split_once('.')?;
        Some(ApiVersion {
            major: major.parse().ok()?,
            minor: minor.parse().ok()?,
        })
    }
}

impl std::fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Every endpoint berthd knows. Which ones are served is the handlers' business.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Ping,
    Version,
    Info,
    Auth,
    Events,
    SystemDf,
    ContainerCreate,
    ContainerList,
    ContainerPrune,
    ContainerInspect,
    ContainerStart,
    ContainerStop,
    ContainerRestart,
    ContainerKill,
    ContainerWait,
    ContainerPause,
    ContainerUnpause,
    ContainerRename,
    ContainerUpdate,
    ContainerResize,
    ContainerAttach,
    ContainerLogs,
    ContainerTop,
    ContainerChanges,
    ContainerExport,
    ContainerStats,
    ContainerArchive,
    ContainerDelete,
    ExecCreate,
    ExecStart,
    ExecInspect,
    ExecResize,
    ImageList,
    ImageCreate,
    ImageLoad,
    ImageGetMany,
    ImagePrune,
    ImageInspect,
    ImageHistory,
    ImageTag,
    ImagePush,
    ImageGet,
    ImageDelete,
    Commit,
    Build,
    BuildPrune,
    VolumeList,
    VolumeCreate,
    VolumePrune,
    VolumeInspect,
    VolumeDelete,
    NetworkList,
    NetworkCreate,
    NetworkPrune,
    NetworkInspect,
    NetworkDelete,
    NetworkConnect,
    NetworkDisconnect,
    SwarmLeave,
}

/// A matched request: the endpoint, its path parameter (if the pattern has one) and
/// the API version the client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    pub endpoint: Endpoint,
    /// The `{id}` or `{name*}` part of the path, percent-decoded.
    pub param: Option<String>,
    pub version: ApiVersion,
}

const ROUTES: &[(&str, &str, Endpoint)] = {
    use Endpoint::*;
    &[
        ("GET", "/_ping", Ping),
        ("HEAD", "/_ping", Ping),
        ("GET", "/version", Version),
        ("GET", "/info", Info),
        ("POST", "/auth", Auth),
        ("GET", "/events", Events),
        ("GET", "/system/df", SystemDf),
        ("POST", "/containers/create", ContainerCreate),
        ("GET", "/containers/json", ContainerList),
        ("POST", "/containers/prune", ContainerPrune),
        ("GET", "/containers/{id}/json", ContainerInspect),
        ("POST", "/containers/{id}/start", ContainerStart),
        ("POST", "/containers/{id}/stop", ContainerStop),
        ("POST", "/containers/{id}/restart", ContainerRestart),
        ("POST", "/containers/{id}/kill", ContainerKill),
        ("POST", "/containers/{id}/wait", ContainerWait),
        ("POST", "/containers/{id}/pause", ContainerPause),
        ("POST", "/containers/{id}/unpause", ContainerUnpause),
        ("POST", "/containers/{id}/rename", ContainerRename),
        ("POST", "/containers/{id}/update", ContainerUpdate),
        ("POST", "/containers/{id}/resize", ContainerResize),
        ("POST", "/containers/{id}/attach", ContainerAttach),
        ("GET", "/containers/{id}/logs", ContainerLogs),
        ("GET", "/containers/{id}/top", ContainerTop),
        ("GET", "/containers/{id}/changes", ContainerChanges),
        ("GET", "/containers/{id}/export", ContainerExport),
        ("GET", "/containers/{id}/stats", ContainerStats),
        ("GET", "/containers/{id}/archive", ContainerArchive),
        ("HEAD", "/containers/{id}/archive", ContainerArchive),
        ("PUT", "/containers/{id}/archive", ContainerArchive),
        ("POST", "/containers/{id}/exec", ExecCreate),
        ("DELETE", "/containers/{id}", ContainerDelete),
        // `parent/alias` with `link=1`: a legacy link, removed from its parent.
        ("DELETE", "/containers/{id*}", ContainerDelete),
        ("POST", "/exec/{id}/start", ExecStart),
        ("GET", "/exec/{id}/json", ExecInspect),
        ("POST", "/exec/{id}/resize", ExecResize),
        ("GET", "/images/json", ImageList),
        ("POST", "/images/create", ImageCreate),
        ("POST", "/images/load", ImageLoad),
        ("GET", "/images/get", ImageGetMany),
        ("POST", "/images/prune", ImagePrune),
        ("GET", "/images/{name*}/json", ImageInspect),
        ("GET", "/images/{name*}/history", ImageHistory),
        ("POST", "/images/{name*}/tag", ImageTag),
        ("POST", "/images/{name*}/push", ImagePush),
        ("GET", "/images/{name*}/get", ImageGet),
        ("DELETE", "/images/{name*}", ImageDelete),
        ("POST", "/commit", Commit),
        ("POST", "/build", Build),
        ("POST", "/build/prune", BuildPrune),
        ("GET", "/volumes", VolumeList),
        ("POST", "/volumes/create", VolumeCreate),
        ("POST", "/volumes/prune", VolumePrune),
        ("GET", "/volumes/{name*}", VolumeInspect),
        ("DELETE", "/volumes/{name*}", VolumeDelete),
        ("GET", "/networks", NetworkList),
        ("POST", "/networks/create", NetworkCreate),
        ("POST", "/networks/prune", NetworkPrune),
        ("GET", "/networks/{id}", NetworkInspect),
        ("DELETE", "/networks/{id}", NetworkDelete),
        ("POST", "/networks/{id}/connect", NetworkConnect),
        ("POST", "/networks/{id}/disconnect", NetworkDisconnect),
        ("POST", "/swarm/leave", SwarmLeave),
    ]
};

/// Takes off `/v1.NN` when present and checks the version; returns the rest of the
/// path and the version to serve (the current one when the path has none).
pub fn split_version(path: &str) -> Result<(&str, ApiVersion), EngineError> {
    let Some(rest) = path.strip_prefix("/v") else {
        return Ok((path, ApiVersion::CURRENT));
    };
    let (ver, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let Some(version) = ApiVersion::parse(ver) else {
        // `/volumes` starts with "/v" too: not a version prefix.
        return Ok((path, ApiVersion::CURRENT));
    };
    if version > ApiVersion::CURRENT {
        return Err(EngineError::VersionTooNew {
            requested: ver.to_string(),
            max: API_VERSION,
        });
    }
    if version < ApiVersion::MIN {
        return Err(EngineError::VersionTooOld {
            requested: ver.to_string(),
            min: MIN_API_VERSION,
        });
    }
    Ok((tail, version))
}

/// Finds the endpoint for a method and path (the path without the query string).
pub fn route(method: &Method, path: &str) -> Result<Matched, EngineError> {
    let (path, version) = split_version(path)?;
    let path = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    for (m, pattern, endpoint) in ROUTES {
        if method.as_str() != *m {
            continue;
        }
        if let Some(param) = match_pattern(pattern, path) {
            return Ok(Matched {
                endpoint: *endpoint,
                param: param.map(|p| percent_decode(&p)),
                version,
            });
        }
    }
    Err(EngineError::PageNotFound)
}

/// Matches `path` against a pattern with at most one `{x}` (one segment) or `{x*}`
/// (one or more segments) parameter. `Some(None)`: matched, no parameter.
fn match_pattern(pattern: &str, path: &str) -> Option<Option<String>> {
    let pat: Vec<&str> = pattern.split('/').collect();
    let segs: Vec<&str> = path.split('/').collect();
    let Some(pi) = pat.iter().position(|s| s.starts_with('{')) else {
        return (pattern == path).then_some(None);
    };
    let greedy = pat[pi].ends_with("*}");
    let after = pat.len() - pi - 1;
    if segs.len() < pat.len() || (!greedy && segs.len() != pat.len()) {
        return None;
    }
    if pat[..pi] != segs[..pi] || pat[pi + 1..] != segs[segs.len() - after..] {
        return None;
    }
    let param = segs[pi..segs.len() - after].join("/");
    if param.is_empty() {
        return None;
    }
    Some(Some(param))
}

/// Decodes `%XX` escapes; a malformed escape is kept as it is.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> Result<Matched, EngineError> {
        route(&Method::GET, path)
    }

    #[test]
    fn paths_with_and_without_version_prefix() {
        let a = get("/containers/json").unwrap();
        let b = get("/v1.41/containers/json").unwrap();
        assert_eq!(a.endpoint, Endpoint::ContainerList);
        assert_eq!(b.endpoint, Endpoint::ContainerList);
        assert_eq!(a.version, ApiVersion::CURRENT);
        assert_eq!(
            b.version,
            ApiVersion {
                major: 1,
                minor: 41
            }
        );
        assert_eq!(get("/v1.47/_ping").unwrap().endpoint, Endpoint::Ping);
        assert_eq!(get("/v1.24/info").unwrap().endpoint, Endpoint::Info);
    }

    #[test]
    fn versions_outside_the_range_are_refused_with_dockers_message() {
        let e = get("/v1.48/containers/json").unwrap_err();
        assert_eq!(e.status().as_u16(), 400);
        assert_eq!(
            e.to_string(),
            "client version 1.48 is too new. Maximum supported API version is 1.47"
        );
        let e = get("/v1.23/containers/json").unwrap_err();
        assert_eq!(e.status().as_u16(), 400);
        assert!(e
            .to_string()
            .starts_with("client version 1.23 is too old. Minimum supported API version is 1.24"));
    }

    #[test]
    fn volumes_is_not_mistaken_for_a_version() {
        assert_eq!(get("/volumes").unwrap().endpoint, Endpoint::VolumeList);
        let m = get("/v1.41/volumes/myvol").unwrap();
        assert_eq!(m.endpoint, Endpoint::VolumeInspect);
        assert_eq!(m.param.as_deref(), Some("myvol"));
    }

    #[test]
    fn container_routes_capture_the_id() {
        let m = route(&Method::POST, "/v1.47/containers/abc123/attach").unwrap();
        assert_eq!(m.endpoint, Endpoint::ContainerAttach);
        assert_eq!(m.param.as_deref(), Some("abc123"));
        let m = route(&Method::DELETE, "/containers/web").unwrap();
        assert_eq!(m.endpoint, Endpoint::ContainerDelete);
        assert_eq!(m.param.as_deref(), Some("web"));
        let m = route(&Method::HEAD, "/containers/web/archive").unwrap();
        assert_eq!(m.endpoint, Endpoint::ContainerArchive);
        // a fixed path wins over the pattern after it
        let m = route(&Method::POST, "/containers/create").unwrap();
        assert_eq!(m.endpoint, Endpoint::ContainerCreate);
        assert_eq!(m.param, None);
    }

    #[test]
    fn image_names_may_hold_slashes_and_colons() {
        let m = get("/v1.41/images/docker.io/library/busybox:latest/json").unwrap();
        assert_eq!(m.endpoint, Endpoint::ImageInspect);
        assert_eq!(m.param.as_deref(), Some("docker.io/library/busybox:latest"));
        let m = route(&Method::DELETE, "/images/localhost:5000/a/b:1").unwrap();
        assert_eq!(m.endpoint, Endpoint::ImageDelete);
        assert_eq!(m.param.as_deref(), Some("localhost:5000/a/b:1"));
        assert_eq!(get("/images/json").unwrap().endpoint, Endpoint::ImageList);
        assert_eq!(get("/images/get").unwrap().endpoint, Endpoint::ImageGetMany);
        let m = get("/images/busybox/get").unwrap();
        assert_eq!(m.endpoint, Endpoint::ImageGet);
    }

    #[test]
    fn unknown_paths_and_wrong_methods_are_page_not_found() {
        for (m, p) in [
            (Method::GET, "/nope"),
            (Method::GET, "/containers/create"),
            (Method::POST, "/containers/json"),
            (Method::GET, "/containers//json"),
            (Method::GET, "/containers/a/b/json"),
        ] {
            let e = route(&m, p).unwrap_err();
            assert_eq!(e.status().as_u16(), 404, "{m} {p}");
            assert_eq!(e.to_string(), "page not found");
        }
    }

    #[test]
    fn swarm_leave_is_routed() {
        let m = route(&Method::POST, "/v1.41/swarm/leave").unwrap();
        assert_eq!(m.endpoint, Endpoint::SwarmLeave);
    }

    #[test]
    fn trailing_slash_and_escapes() {
        assert_eq!(get("/info/").unwrap().endpoint, Endpoint::Info);
        let m = get("/containers/a%2Fb/json");
        // %2F decodes after matching, so it stays one segment
        assert_eq!(m.unwrap().param.as_deref(), Some("a/b"));
        assert_eq!(percent_decode("a%20b%zz%"), "a b%zz%");
    }
}
