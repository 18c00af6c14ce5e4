//! docker's container formatter (`ps`): the fields `.ID .Image .Command .CreatedAt
//! .RunningFor .Ports .State .Status .Size .Names .Labels .Label .Mounts .LocalVolumes
//! .Networks .Platform`, computed from `GET /containers/json` as the docker CLI does.

use std::sync::Arc;

use serde_json::Value as Json;

use super::units::{ellipsis, go_time, human_size_prec, since, truncate_id};
use crate::template::printf::quote;
use crate::template::{Map, Value};

/// `docker ps`'s default table.
pub const DEFAULT_TABLE: &str =
    "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}";

/// docker's `NewContainerFormat`: which format `ps` uses for its flags.
pub fn format_for(source: &str, quiet: bool, size: bool) -> String {
    match source {
        "table" | "" => {
            if quiet {
                "{{.ID}}".into()
            } else if size {
                format!("{DEFAULT_TABLE}\\t{{{{.Size}}}}")
            } else {
                DEFAULT_TABLE.into()
            }
        }
        "raw" => {
            if quiet {
                return "container_id: {{.ID}}".into();
            }
            let mut f = String::from("container_id: {{.ID}}\nimage: {{.Image}}\ncommand: {{.Command}}\ncreated_at: {{.CreatedAt}}\nstate: {{- pad .State 1 0}}\nstatus: {{- pad .Status 1 0}}\nnames: {{.Names}}\nlabels: {{- pad .Labels 1 0}}\nports: {{- pad .Ports 1 0}}\n");
            if size {
                f.push_str("size: {{.Size}}\\n");
            }
            f
        }
        custom => {
            if quiet {
                "{{.ID}}".into()
            } else {
                custom.to_string()
            }
        }
    }
}

/// The header row's names for each field.
pub fn header() -> Map {
    super::header(&[
        ("ID", "CONTAINER ID"),
        ("Names", "NAMES"),
        ("Image", "IMAGE"),
        ("Command", "COMMAND"),
        ("CreatedAt", "CREATED AT"),
        ("RunningFor", "CREATED"),
        ("Ports", "PORTS"),
        ("State", "STATE"),
        ("Status", "STATUS"),
        ("Size", "SIZE"),
        ("Labels", "LABELS"),
        ("Mounts", "MOUNTS"),
        ("LocalVolumes", "LOCAL VOLUMES"),
        ("Networks", "NETWORKS"),
        ("Platform", "PLATFORM"),
    ])
}

fn s<'a>(v: &'a Json, k: &str) -> &'a str {
    v[k].as_str().unwrap_or("")
}

/// A reference as docker shows it: `docker.io/library/` dropped, and with `trunc`
/// a digest dropped (the tag kept).
pub fn familiar(reference: &str) -> String {
    let r = reference
        .strip_prefix("docker.io/library/")
        .or_else(|| reference.strip_prefix("docker.io/"))
        .unwrap_or(reference);
    r.to_string()
}

fn image(c: &Json, trunc: bool) -> String {
    let img = s(c, "Image");
    if img.is_empty() {
        return "<no image>".into();
    }
    if !trunc {
        return img.to_string();
    }
    let image_id = s(c, "ImageID");
    if !image_id.is_empty() && truncate_id(image_id) == truncate_id(img) {
        return truncate_id(img);
    }
    // Keep name and tag, drop a digest.
    let name = img.split_once('@').map_or(img, |(n, _)| n);
    familiar(name)
}

/// docker's `DisplayablePorts`: "0.0.0.0:80->80/tcp, 9000-9001/tcp".
pub fn displayable_ports(ports: &[Json]) -> String {
    struct P {
        ip: String,
        private: u64,
        public: u64,
        typ: String,
    }
    let mut ps: Vec<P> = ports
        .iter()
        .map(|p| P {
            ip: s(p, "IP").to_string(),
            private: p["PrivatePort"].as_u64().unwrap_or(0),
            public: p["PublicPort"].as_u64().unwrap_or(0),
            typ: s(p, "Type").to_string(),
        })
        .collect();
    ps.sort_by(|a, b| {
        (a.private, &a.ip, a.public, &a.typ).cmp(&(b.private, &b.ip, b.public, &b.typ))
    });
    let join = |ip: &str, port: &str| {
        if ip.contains(':') {
            format!("[{ip}]:{port}")
        } else {
            format!("{ip}:{port}")
        }
    };
    let form = |key: &str, first: u64, last: u64| {
        let (ip, typ) = match key.rsplit_once('/') {
            Some((ip, t)) => (ip, t),
            None => ("", key),
        };
        let mut group = first.to_string();
        if first != last {
            group = format!("{group}-{last}");
        }
        if !ip.is_empty() {
            group = format!("{}->{group}", join(ip, &group));
        }
        format!("{group}/{typ}")
    };
    let mut groups: indexmap::IndexMap<String, (u64, u64)> = indexmap::IndexMap::new();
    let mut result = vec![];
    let mut host_mappings = vec![];
    for p in &ps {
        let mut key = p.typ.clone();
        if !p.ip.is_empty() {
            if p.public != p.private {
                host_mappings.push(format!(
                    "{}->{}/{}",
                    join(&p.ip, &p.public.to_string()),
                    p.private,
                    p.typ
                ));
                continue;
            }
            key = format!("{}/{}", p.ip, p.typ);
        }
        match groups.get_mut(&key) {
            None => {
                groups.insert(key, (p.private, p.private));
            }
            Some(g) if p.private == g.1 + 1 => g.1 = p.private,
            Some(g) => {
                result.push(form(&key, g.0, g.1));
                *g = (p.private, p.private);
            }
        }
    }
    for (k, (first, last)) in &groups {
        result.push(form(k, *first, *last));
    }
    result.extend(host_mappings);
    result.join(", ")
}

/// One container of `GET /containers/json` as docker's formatter object.
pub fn row(c: &Json, trunc: bool) -> Value {
    let mut m = Map::structure("*formatter.ContainerContext");
    let mut command = s(c, "Command").to_string();
    if trunc {
        command = ellipsis(&command, 20);
    }
    let created = c["Created"].as_i64().unwrap_or(0);
    let labels: Vec<(String, String)> = c["Labels"]
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default();
    let mut joined: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    joined.sort();
    let mounts = c["Mounts"].as_array().cloned().unwrap_or_default();
    let mount_names: Vec<String> = mounts
        .iter()
        .map(|mt| {
            let n = if s(mt, "Name").is_empty() {
                s(mt, "Source")
            } else {
                s(mt, "Name")
            };
            if trunc {
                ellipsis(n, 15)
            } else {
                n.to_string()
            }
        })
        .collect();
    let local = mounts
        .iter()
        .filter(|mt| s(mt, "Driver") == "local")
        .count();
    let mut networks: Vec<String> = c["NetworkSettings"]["Networks"]
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    networks.sort();
    let names: Vec<String> = c["Names"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Json::as_str)
        .map(|n| n.strip_prefix('/').unwrap_or(n).to_string())
        .collect();
    let names = if trunc {
        // Legacy link names (with a slash inside) are left out.
        names
            .iter()
            .find(|n| !n.contains('/'))
            .map(|n| vec![n.clone()])
            .unwrap_or(names)
    } else {
        names
    };
    let size_rw = c["SizeRw"].as_i64().unwrap_or(0);
    let size_root = c["SizeRootFs"].as_i64().unwrap_or(0);
    let size = if size_root > 0 {
        format!(
            "{} (virtual {})",
            human_size_prec(size_rw as f64, 3),
            human_size_prec(size_root as f64, 3)
        )
    } else {
        human_size_prec(size_rw as f64, 3)
    };
    let id = s(c, "Id");
    // Sorted, as Go's encoder writes the map docker builds for `{{json .}}`.
    m.insert("Command", quote(&command));
    m.insert("CreatedAt", go_time(created));
    m.insert(
        "ID",
        if trunc {
            truncate_id(id)
        } else {
            id.to_string()
        },
    );
    m.insert("Image", image(c, trunc));
    m.insert("Labels", joined.join(","));
    m.insert("LocalVolumes", local.to_string());
    m.insert("Mounts", mount_names.join(","));
    m.insert("Names", names.join(","));
    m.insert("Networks", networks.join(","));
    m.insert("Platform", Value::Nil);
    m.insert(
        "Ports",
        displayable_ports(c["Ports"].as_array().map(Vec::as_slice).unwrap_or(&[])),
    );
    m.insert("RunningFor", since(created));
    m.insert("Size", size);
    m.insert("State", s(c, "State"));
    m.insert("Status", s(c, "Status"));
    let labels = Arc::new(labels);
    m.insert(
        "Label",
        Value::Func(Arc::new(move |a: &[Value]| {
            let name = match a {
                [Value::Str(n)] => n,
                _ => return Err("wrong number of args for Label: want 1 string".into()),
            };
            Ok(Value::Str(
                labels
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default(),
            ))
        })),
    );
    Value::Map(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn summary() -> Json {
        json!({
            "Id": "b4e713f52f05cd4ba1ad7dee5c5985d55c12e4d48cdc68425217a8516fb303a6",
            "Names": ["/c2"], "Image": "busybox", "ImageID": "sha256:28af6e5c535b7e8d",
            "Command": "echo hello world with a long command line here",
            "Created": 1_700_000_000, "State": "created", "Status": "Created",
            "Labels": {"b": "2", "a": "1"}, "Ports": [], "Mounts": [],
            "NetworkSettings": {"Networks": {}}
        })
    }

    #[test]
    fn rows_as_docker_prints_them() {
        let r = row(&summary(), true);
        let out = crate::template::render(
            "{{.ID}}|{{.Command}}|{{.Names}}|{{.Labels}}|{{.Label \"a\"}}|{{.Size}}|{{.LocalVolumes}}",
            &r,
        )
        .unwrap();
        assert_eq!(
            out,
            "b4e713f52f05|\"echo hello world wi…\"|c2|a=1,b=2|1|0B|0"
        );
        let json = crate::template::render("{{json .}}", &r).unwrap();
        assert!(
            json.starts_with(r#"{"Command":"\"echo hello world wi…\"","CreatedAt":""#),
            "{json}"
        );
        assert!(
            json.contains(r#""Platform":null,"Ports":"","RunningFor":""#),
            "{json}"
        );
        let full = row(&summary(), false);
        let out = crate::template::render("{{.ID}} {{.Command}}", &full).unwrap();
        assert_eq!(
            out,
            "b4e713f52f05cd4ba1ad7dee5c5985d55c12e4d48cdc68425217a8516fb303a6 \"echo hello world with a long command line here\""
        );
    }

    #[test]
    fn ports_like_docker() {
        let p = |ip: &str, private: u64, public: u64| json!({"IP": ip, "PrivatePort": private, "PublicPort": public, "Type": "tcp"});
        assert_eq!(
            displayable_ports(&[
                p("0.0.0.0", 80, 8080),
                p("", 9000, 0),
                p("", 9001, 0),
                p("", 22, 0)
            ]),
            "22/tcp, 9000-9001/tcp, 0.0.0.0:8080->80/tcp"
        );
        assert_eq!(
            displayable_ports(&[p("0.0.0.0", 80, 80), p("0.0.0.0", 81, 81), p("::", 80, 80)]),
            "0.0.0.0:80-81->80-81/tcp, [::]:80->80/tcp"
        );
    }

    #[test]
    fn formats_for_flags() {
        assert_eq!(format_for("", true, false), "{{.ID}}");
        assert_eq!(format_for("{{.Names}}", true, false), "{{.ID}}");
        assert!(format_for("", false, true).ends_with("\\t{{.Size}}"));
    }
}
