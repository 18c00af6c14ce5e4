//! Pod networks through the standard CNI plugins (containernetworking-plugins),
//! as kubelet deployments expect: the first network configuration (`.conflist`,
//! `.conf` or `.json`, by name) in the conf dir, each plugin of its list run as the
//! CNI spec says (config on stdin, `CNI_*` in the environment, the previous
//! plugin's result as `prevResult`), `portMappings` passed to the plugins that ask
//! for that capability. DEL runs the list backwards with the ADD result.
//!
//! It execs the plugins; it never forks inside the daemon or touches netlink or
//! iptables itself.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

/// How long one plugin may take.
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest plugin answer read.
const MAX_OUTPUT: usize = 1 << 20;

/// Why a CNI operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error("no CNI network configuration in {0} (a .conflist, .conf or .json file)")]
    NoConfig(PathBuf),
    #[error("reading the CNI configuration {path}: {why}")]
    BadConfig { path: PathBuf, why: String },
    #[error("CNI plugin {0:?} not found in {1}")]
    NoPlugin(String, String),
    #[error("CNI plugin {plugin} ({command}): {message}")]
    Plugin {
        plugin: String,
        command: &'static str,
        message: String,
    },
}

/// A network configuration list.
#[derive(Debug, Clone)]
pub struct Network {
    pub name: String,
    pub cni_version: String,
    pub plugins: Vec<Value>,
    pub file: PathBuf,
}

/// A port a pod publishes, as the portmap plugin takes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub host_port: i32,
    pub container_port: i32,
    pub protocol: String,
    #[serde(rename = "hostIP", skip_serializing_if = "String::is_empty", default)]
    pub host_ip: String,
}

/// Where a plugin runs: the pod's network namespace and who it is for.
#[derive(Debug, Clone)]
pub struct Attachment<'a> {
    pub container_id: &'a str,
    pub netns: &'a Path,
    pub ifname: &'a str,
    /// `K8S_POD_NAMESPACE`, `K8S_POD_NAME`, ... for CNI_ARGS.
    pub args: Vec<(&'static str, String)>,
    pub port_mappings: &'a [PortMapping],
}

/// The first network configuration in `dir` (files sorted by name, as kubelet's
/// runtimes do).
pub fn load(dir: &Path) -> Result<Network, CniError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|_| CniError::NoConfig(dir.to_path_buf()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e == "conflist" || e == "conf" || e == "json")
        })
        .collect();
    files.sort();
    let file = files
        .into_iter()
        .next()
        .ok_or_else(|| CniError::NoConfig(dir.to_path_buf()))?;
    let bad = |why: String| CniError::BadConfig {
        path: file.clone(),
        why,
    };
    let text = std::fs::read(&file).map_err(|e| bad(e.to_string()))?;
    let v: Value = serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
    let name = v
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("no \"name\"".to_string()))?
        .to_string();
    let cni_version = v
        .get("cniVersion")
        .and_then(Value::as_str)
        .unwrap_or("0.4.0")
        .to_string();
    let plugins = match v.get("plugins") {
        Some(Value::Array(p)) if !p.is_empty() => p.clone(),
        Some(_) => return Err(bad("\"plugins\" is not a non-empty list".to_string())),
        // A single-plugin .conf is its own list.
        None => vec![v.clone()],
    };
    for p in &plugins {
        if p.get("type").and_then(Value::as_str).is_none() {
            return Err(bad("a plugin without a \"type\"".to_string()));
        }
    }
    Ok(Network {
        name,
        cni_version,
        plugins,
        file,
    })
}

fn find_plugin(kind: &str, bin_dirs: &[PathBuf]) -> Result<PathBuf, CniError> {
    let joined = || {
        bin_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(":")
    };
    if kind.contains('/') || kind.is_empty() {
        return Err(CniError::NoPlugin(kind.to_string(), joined()));
    }
    bin_dirs
        .iter()
        .map(|d| d.join(kind))
        .find(|p| p.is_file())
        .ok_or_else(|| CniError::NoPlugin(kind.to_string(), joined()))
}

impl Network {
    /// The config one plugin is given.
    fn plugin_config(&self, plugin: &Value, prev: Option<&Value>, at: &Attachment<'_>) -> Value {
        let mut conf = plugin.clone();
        if let Some(obj) = conf.as_object_mut() {
            obj.insert("name".to_string(), json!(self.name));
            obj.insert("cniVersion".to_string(), json!(self.cni_version));
            if let Some(prev) = prev {
                obj.insert("prevResult".to_string(), prev.clone());
            }
            let wants_ports = plugin
                .pointer("/capabilities/portMappings")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            if wants_ports && !at.port_mappings.is_empty() {
                obj.insert(
                    "runtimeConfig".to_string(),
                    json!({ "portMappings": at.port_mappings }),
                );
            }
        }
        conf
    }

    async fn exec(
        &self,
        command: &'static str,
        plugin: &Value,
        conf: &Value,
        at: &Attachment<'_>,
        bin_dirs: &[PathBuf],
    ) -> Result<Value, CniError> {
        let kind = plugin
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let path = find_plugin(kind, bin_dirs)?;
        let fail = |message: String| CniError::Plugin {
            plugin: kind.to_string(),
            command,
            message,
        };
        let cni_path = std::env::join_paths(bin_dirs).map_err(|e| fail(e.to_string()))?;
        let mut args = vec!["IgnoreUnknown=1".to_string()];
        args.extend(at.args.iter().map(|(k, v)| format!("{k}={v}")));
        let mut child = tokio::process::Command::new(&path)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", at.container_id)
            .env("CNI_NETNS", at.netns)
            .env("CNI_IFNAME", at.ifname)
            .env("CNI_ARGS", args.join(";"))
            .env("CNI_PATH", cni_path)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| fail(format!("running {}: {e}", path.display())))?;
        let input = serde_json::to_vec(conf).map_err(|e| fail(e.to_string()))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(&input)
                .await
                .map_err(|e| fail(format!("writing its config: {e}")))?;
        }
        let out = tokio::time::timeout(PLUGIN_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| fail(format!("no answer in {PLUGIN_TIMEOUT:?}")))?
            .map_err(|e| fail(e.to_string()))?;
        let stdout = &out.stdout[..out.stdout.len().min(MAX_OUTPUT)];
        if !out.status.success() {
            // The spec's error object: {"code": N, "msg": "...", "details": "..."}.
            let v: Value = serde_json::from_slice(stdout).unwrap_or_default();
            let msg = match (
                v.get("msg").and_then(Value::as_str),
                v.get("details").and_then(Value::as_str),
            ) {
                (Some(m), Some(d)) if !d.is_empty() => format!("{m}: {d}"),
                (Some(m), _) => m.to_string(),
                _ => String::from_utf8_lossy(&out.stderr)
                    .trim()
                    .chars()
                    .take(512)
                    .collect(),
            };
            return Err(fail(format!("{} ({})", msg, out.status)));
        }
        if stdout.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(stdout).map_err(|e| fail(format!("its answer is not JSON: {e}")))
    }

    /// ADD every plugin in order; the last result (the pod's interfaces and IPs).
    pub async fn add(&self, at: &Attachment<'_>, bin_dirs: &[PathBuf]) -> Result<Value, CniError> {
        let mut prev: Option<Value> = None;
        for plugin in &self.plugins {
            let conf = self.plugin_config(plugin, prev.as_ref(), at);
            let result = self.exec("ADD", plugin, &conf, at, bin_dirs).await?;
            // A plugin with nothing to say (loopback on some versions) passes the
            // previous result on.
            if !result.is_null() {
                prev = Some(result);
            }
        }
        Ok(prev.unwrap_or(Value::Null))
    }

    /// DEL every plugin in reverse order; every plugin is tried, the first error
    /// is returned.
    pub async fn del(
        &self,
        at: &Attachment<'_>,
        bin_dirs: &[PathBuf],
        result: Option<&Value>,
    ) -> Result<(), CniError> {
        let mut first = None;
        for plugin in self.plugins.iter().rev() {
            let conf = self.plugin_config(plugin, result.filter(|r| !r.is_null()), at);
            if let Err(e) = self.exec("DEL", plugin, &conf, at, bin_dirs).await {
                tracing::warn!("CNI DEL: {e}");
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

/// The pod's IPs (without prefix length) from an ADD result, IPv4 first.
pub fn result_ips(result: &Value) -> Vec<String> {
    let mut ips: Vec<String> = result
        .get("ips")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|ip| ip.get("address").and_then(Value::as_str))
        .map(|a| a.split('/').next().unwrap_or(a).to_string())
        .collect();
    ips.sort_by_key(|ip| ip.contains(':'));
    ips
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_config_by_name_is_loaded() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(load(dir.path()), Err(CniError::NoConfig(_))));
        std::fs::write(
            dir.path().join("20-b.conflist"),
            r#"{"cniVersion":"0.4.0","name":"b","plugins":[{"type":"loopback"}]}"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("10-a.conf"),
            r#"{"cniVersion":"0.3.1","name":"a","type":"bridge"}"#,
        )
        .unwrap();
        let n = load(dir.path()).unwrap();
        assert_eq!((n.name.as_str(), n.cni_version.as_str()), ("a", "0.3.1"));
        assert_eq!(n.plugins.len(), 1);
        std::fs::write(dir.path().join("05-bad.conflist"), "{").unwrap();
        assert!(matches!(load(dir.path()), Err(CniError::BadConfig { .. })));
    }

    #[test]
    fn plugins_get_name_version_prev_result_and_ports() {
        let n = Network {
            name: "pods".to_string(),
            cni_version: "0.4.0".to_string(),
            plugins: vec![],
            file: PathBuf::new(),
        };
        let ports = [PortMapping {
            host_port: 8080,
            container_port: 80,
            protocol: "tcp".to_string(),
            host_ip: String::new(),
        }];
        let at = Attachment {
            container_id: "x",
            netns: Path::new("/x"),
            ifname: "eth0",
            args: vec![],
            port_mappings: &ports,
        };
        let plugin = json!({"type": "portmap", "capabilities": {"portMappings": true}});
        let c = n.plugin_config(&plugin, Some(&json!({"ips": []})), &at);
        assert_eq!(c["name"], "pods");
        assert_eq!(c["prevResult"], json!({"ips": []}));
        assert_eq!(c["runtimeConfig"]["portMappings"][0]["hostPort"], 8080);
        let c = n.plugin_config(&json!({"type": "bridge"}), None, &at);
        assert!(c.get("runtimeConfig").is_none() && c.get("prevResult").is_none());
    }

    #[test]
    fn ips_come_from_the_result() {
        let r = json!({"ips": [{"address": "fd00::5/64"}, {"address": "10.1.0.5/24"}]});
        assert_eq!(result_ips(&r), vec!["10.1.0.5", "fd00::5"]);
        assert!(result_ips(&Value::Null).is_empty());
    }
}
