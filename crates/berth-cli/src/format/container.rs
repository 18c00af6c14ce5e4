//! docker's container formatter (`ps`): the fields `.ID .Image .Command .CreatedAt
//! .RunningFor .Ports .State .Status .Size .Names .Labels .Label .Mounts .LocalVolumes
//! .Networks .Platform`, computed from `GET /containers/json` as the docker CLI does.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::units::{age_into, ellipsized, go_time, human_size_prec, truncated_id};
use super::Fields;
use crate::template::printf::quote_into;
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

/// One container of `GET /containers/json`, as far as `ps` shows it: docker's
/// `types.Container` without what no column reads, so the rest of each entry (the
/// endpoints, HostConfig) is skipped while parsing instead of built and dropped,
/// as bollard's `ContainerSummary` would build them.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Summary<'a> {
    // Strings borrowed from the answer where they need no unescaping: a list of
    // hundreds of containers is then decoded without an allocation per field.
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    #[serde(borrow, deserialize_with = "nullable")]
    pub names: Vec<Cow<'a, str>>,
    #[serde(borrow)]
    pub image: Cow<'a, str>,
    #[serde(rename = "ImageID", borrow)]
    pub image_id: Cow<'a, str>,
    #[serde(borrow)]
    pub command: Cow<'a, str>,
    pub created: i64,
    #[serde(borrow, deserialize_with = "nullable")]
    pub ports: Vec<Port<'a>>,
    pub size_rw: Option<i64>,
    pub size_root_fs: Option<i64>,
    #[serde(borrow)]
    pub state: Cow<'a, str>,
    #[serde(borrow)]
    pub status: Cow<'a, str>,
    // Only checked as JSON while the list is parsed, and decoded when a column
    // shows them: the default table shows none of them, and they are most of an
    // entry's bytes (an endpoint per network, compose's labels).
    #[serde(borrow)]
    labels: Option<&'a RawValue>,
    #[serde(borrow)]
    network_settings: Option<&'a RawValue>,
    #[serde(borrow)]
    mounts: Option<&'a RawValue>,
}

impl<'a> Summary<'a> {
    /// The labels, a key given twice with its last value as in a decoded map.
    pub fn labels(&self) -> BTreeMap<Cow<'a, str>, Cow<'a, str>> {
        later(self.labels)
    }

    /// The names of the networks, sorted as docker sorts them.
    pub fn networks(&self) -> Vec<Cow<'a, str>> {
        #[derive(Default, Deserialize)]
        #[serde(rename_all = "PascalCase", default)]
        struct Settings<'a> {
            #[serde(borrow, deserialize_with = "nullable")]
            networks: BTreeMap<Cow<'a, str>, IgnoredAny>,
        }
        later::<Settings>(self.network_settings)
            .networks
            .into_keys()
            .collect()
    }

    pub fn mounts(&self) -> Vec<MountPoint<'a>> {
        later(self.mounts)
    }
}

/// A part of an entry decoded when it is shown. The list as a whole was parsed,
/// so only a value of another shape than docker's (a number for the labels) is
/// left: it shows as empty, as null does.
fn later<'a, T: Deserialize<'a> + Default>(raw: Option<&'a RawValue>) -> T {
    raw.and_then(|r| serde_json::from_str::<Option<T>>(r.get()).ok().flatten())
        .unwrap_or_default()
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Port<'a> {
    #[serde(rename = "IP", borrow)]
    pub ip: Cow<'a, str>,
    pub private_port: u16,
    pub public_port: u16,
    #[serde(rename = "Type", borrow)]
    pub typ: Cow<'a, str>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct MountPoint<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(borrow)]
    pub source: Cow<'a, str>,
    #[serde(borrow)]
    pub driver: Cow<'a, str>,
}

/// The rows of a container list, decoded into a vector sized from the answer's
/// length: grown from empty, the vector of 500 rows was copied at each doubling
/// into fresh memory. Room for more rows than come costs address space only.
pub fn decode_list(text: &str) -> serde_json::Result<Vec<Summary<'_>>> {
    // A row of docker's list is at least about 300 bytes.
    let mut rows = Vec::with_capacity((text.len() / 256).min(1 << 16));
    each_row(text, |row| rows.push(row))?;
    Ok(rows)
}

/// Every row of a container list, handed to `each` as it is decoded: a table
/// printed row by row never holds the list's rows at once.
pub fn each_row<'de>(text: &'de str, each: impl FnMut(Summary<'de>)) -> serde_json::Result<()> {
    struct Rows<F>(F);
    impl<'de, F: FnMut(Summary<'de>)> serde::de::Visitor<'de> for Rows<F> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a list of containers")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            mut self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            while let Some(row) = seq.next_element()? {
                (self.0)(row);
            }
            Ok(())
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    serde::Deserializer::deserialize_seq(&mut de, Rows(each))?;
    de.end()
}

/// JSON null as the empty value, as Go decodes null into a slice or a map.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A reference as docker shows it: `docker.io/library/` dropped, and with `trunc`
/// a digest dropped (the tag kept).
pub fn familiar(reference: &str) -> String {
    familiar_str(reference).to_string()
}

fn familiar_str(reference: &str) -> &str {
    reference
        .strip_prefix("docker.io/library/")
        .or_else(|| reference.strip_prefix("docker.io/"))
        .unwrap_or(reference)
}

fn image<'s>(c: &'s Summary, trunc: bool) -> &'s str {
    let img: &str = &c.image;
    if img.is_empty() {
        return "<no image>";
    }
    if !trunc {
        return img;
    }
    let image_id: &str = &c.image_id;
    if !image_id.is_empty() && truncated_id(image_id) == truncated_id(img) {
        return truncated_id(img);
    }
    // Keep name and tag, drop a digest.
    let name = img.split_once('@').map_or(img, |(n, _)| n);
    familiar_str(name)
}

/// docker's `DisplayablePorts`: "0.0.0.0:80->80/tcp, 9000-9001/tcp".
pub fn displayable_ports(ports: &[Port]) -> String {
    if ports.is_empty() {
        return String::new();
    }
    let mut ps: Vec<&Port> = ports.iter().collect();
    ps.sort_by(|a, b| {
        (a.private_port, &a.ip, a.public_port, &a.typ).cmp(&(
            b.private_port,
            &b.ip,
            b.public_port,
            &b.typ,
        ))
    });
    let join = |ip: &str, port: &str| {
        if ip.contains(':') {
            format!("[{ip}]:{port}")
        } else {
            format!("{ip}:{port}")
        }
    };
    let form = |key: &str, first: u16, last: u16| {
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
    let mut groups: indexmap::IndexMap<String, (u16, u16)> = indexmap::IndexMap::new();
    let mut result = vec![];
    let mut host_mappings = vec![];
    for p in ps {
        let mut key = p.typ.to_string();
        if !p.ip.is_empty() {
            if p.public_port != p.private_port {
                host_mappings.push(format!(
                    "{}->{}/{}",
                    join(&p.ip, &p.public_port.to_string()),
                    p.private_port,
                    p.typ
                ));
                continue;
            }
            key = format!("{}/{}", p.ip, p.typ);
        }
        match groups.get_mut(&key) {
            None => {
                groups.insert(key, (p.private_port, p.private_port));
            }
            Some(g) if u32::from(p.private_port) == u32::from(g.1) + 1 => g.1 = p.private_port,
            Some(g) => {
                result.push(form(&key, g.0, g.1));
                *g = (p.private_port, p.private_port);
            }
        }
    }
    for (k, (first, last)) in &groups {
        result.push(form(k, *first, *last));
    }
    result.extend(host_mappings);
    result.join(", ")
}

/// How a list's cells are shown: truncated or whole, and ages taken from one
/// reading of the clock for every row.
#[derive(Debug, Clone, Copy)]
pub struct Show {
    pub trunc: bool,
    now: chrono::DateTime<chrono::Utc>,
}

impl Show {
    pub fn new(trunc: bool) -> Show {
        Show {
            trunc,
            now: chrono::Utc::now(),
        }
    }
}

/// Appends the field `name` of a container as docker's formatter prints it, and
/// says whether it is one of the plain string fields (all but `.Platform`, a nil,
/// and `.Label`, a method).
pub fn cell(c: &Summary, show: &Show, name: &str, out: &mut String) -> bool {
    let trunc = show.trunc;
    match name {
        "Command" => {
            if trunc {
                quote_into(&ellipsized(&c.command, 20), out);
            } else {
                quote_into(&c.command, out);
            }
        }
        "CreatedAt" => out.push_str(&go_time(c.created)),
        "ID" => {
            if trunc {
                out.push_str(truncated_id(&c.id));
            } else {
                out.push_str(&c.id);
            }
        }
        "Image" => out.push_str(image(c, trunc)),
        "Labels" => {
            // Sorted as "k=v" strings, as docker sorts them ("a.b=2" before "a=1").
            let mut joined: Vec<String> =
                c.labels().iter().map(|(k, v)| format!("{k}={v}")).collect();
            joined.sort();
            out.push_str(&joined.join(","));
        }
        "LocalVolumes" => {
            let local = c.mounts().iter().filter(|mt| mt.driver == "local").count();
            out.push_str(&local.to_string());
        }
        "Mounts" => {
            for (i, mt) in c.mounts().iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let n = if mt.name.is_empty() {
                    &mt.source
                } else {
                    &mt.name
                };
                if trunc {
                    out.push_str(&ellipsized(n, 15));
                } else {
                    out.push_str(n);
                }
            }
        }
        "Names" => {
            for (i, n) in names(c, trunc).enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(n);
            }
        }
        "Networks" => {
            for (i, n) in c.networks().iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(n);
            }
        }
        "Ports" => out.push_str(&displayable_ports(&c.ports)),
        "RunningFor" => age_into(c.created, show.now, out),
        "Size" => out.push_str(&size(c)),
        "State" => out.push_str(&c.state),
        "Status" => out.push_str(&c.status),
        _ => return false,
    }
    true
}

/// One container of `GET /containers/json` as docker's formatter object, with the
/// `fields` a format reads (the others are left out, not computed).
pub fn row(c: &Summary, show: &Show, fields: &Fields) -> Value {
    let mut m = Map::structure("*formatter.ContainerContext");
    // Inserted in Go's sorted order, as its encoder writes the map docker builds for
    // `{{json .}}`.
    for name in [
        "Command",
        "CreatedAt",
        "ID",
        "Image",
        "Labels",
        "LocalVolumes",
        "Mounts",
        "Names",
        "Networks",
        "Platform",
        "Ports",
        "RunningFor",
        "Size",
        "State",
        "Status",
    ] {
        if !fields.wants(name) {
            continue;
        }
        let mut text = String::new();
        if cell(c, show, name, &mut text) {
            m.insert(name, text);
        } else {
            m.insert(name, Value::Nil);
        }
    }
    if fields.wants("Label") {
        let labels: Arc<BTreeMap<String, String>> = Arc::new(
            c.labels()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        m.insert(
            "Label",
            Value::Func(Arc::new(move |a: &[Value]| {
                let name = match a {
                    [Value::Str(n)] => n,
                    _ => return Err("wrong number of args for Label: want 1 string".into()),
                };
                Ok(Value::Str(
                    labels.get(name.as_str()).cloned().unwrap_or_default(),
                ))
            })),
        );
    }
    Value::Map(m)
}

/// The names without their slash; with `trunc`, legacy link names (with a slash
/// inside) are left out.
fn names<'s>(c: &'s Summary<'_>, trunc: bool) -> impl Iterator<Item = &'s str> {
    let all = c.names.iter().map(|n| n.strip_prefix('/').unwrap_or(n));
    let first_plain = if trunc {
        all.clone().find(|n| !n.contains('/'))
    } else {
        None
    };
    let (one, every) = match first_plain {
        Some(n) => (Some(n), None),
        None => (None, Some(all)),
    };
    one.into_iter().chain(every.into_iter().flatten())
}

/// "2B (virtual 4.1MB)".
fn size(c: &Summary) -> String {
    let size_rw = c.size_rw.unwrap_or(0);
    let size_root = c.size_root_fs.unwrap_or(0);
    if size_root > 0 {
        format!(
            "{} (virtual {})",
            human_size_prec(size_rw as f64, 3),
            human_size_prec(size_root as f64, 3)
        )
    } else {
        human_size_prec(size_rw as f64, 3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUMMARY: &str = r#"{
        "Id": "b4e713f52f05cd4ba1ad7dee5c5985d55c12e4d48cdc68425217a8516fb303a6",
        "Names": ["/c2"], "Image": "busybox", "ImageID": "sha256:28af6e5c535b7e8d",
        "Command": "echo hello world with a long command line here",
        "Created": 1700000000, "State": "created", "Status": "Created",
        "Labels": {"b": "2", "a": "1"}, "Ports": [], "Mounts": [],
        "NetworkSettings": {"Networks": {}}
    }"#;

    fn summary() -> Summary<'static> {
        serde_json::from_str(SUMMARY).unwrap()
    }

    /// Rows of every shape a column can take: escapes in strings (owned, not
    /// borrowed), ports, mounts, several networks, sizes, a null list.
    const LIST: &str = r#"[
        {"Id": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
         "Names": ["/web", "/other/link"], "Image": "docker.io/library/nginx:1.25@sha256:abc",
         "ImageID": "sha256:ffff", "Command": "nginx -g \"daemon off;\" \u00e9\t", "Created": 1700000000,
         "Ports": [{"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
                   {"PrivatePort": 9000, "Type": "udp"}, {"IP": "::", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"}],
         "SizeRw": 12, "SizeRootFs": 4096000,
         "Labels": {"com.x\"y": "1", "a": "b\\c"}, "State": "running", "Status": "Up 5 minutes",
         "HostConfig": {"NetworkMode": "default"},
         "NetworkSettings": {"Networks": {"bridge": {"IPAddress": "10.0.0.2"}, "back": {}}},
         "Mounts": [{"Type": "volume", "Name": "data", "Source": "/var/lib/x/_data", "Driver": "local"},
                    {"Type": "bind", "Source": "/a/very/long/host/path/here", "Driver": ""}]},
        {"Id": "fedcba", "Names": null, "Image": "", "ImageID": "", "Command": "", "Created": 0,
         "Ports": null, "Labels": null, "State": "exited", "Status": "Exited (1) 2 hours ago",
         "NetworkSettings": null, "Mounts": null}
    ]"#;

    #[test]
    fn parts_decoded_when_shown() {
        let items = decode_list(LIST).unwrap();
        let show = Show::new(false);
        let text = |c, name| {
            let mut out = String::new();
            assert!(cell(c, &show, name, &mut out), "{name}");
            out
        };
        let (a, b) = (&items[0], &items[1]);
        assert_eq!(text(a, "Labels"), "a=b\\c,com.x\"y=1");
        assert_eq!(text(a, "Networks"), "back,bridge");
        assert_eq!(text(a, "Mounts"), "data,/a/very/long/host/path/here");
        assert_eq!(text(a, "LocalVolumes"), "1");
        for name in ["Labels", "Networks", "Mounts"] {
            assert_eq!(text(b, name), "", "{name}");
        }
        assert_eq!(text(b, "LocalVolumes"), "0");
        // A key given twice keeps its last value, as a decoded map would.
        let twice = decode_list(r#"[{"Labels": {"k": "1", "k": "2"}}]"#).unwrap();
        assert_eq!(text(&twice[0], "Labels"), "k=2");
        // The list is JSON and decodes; a part of another shape than docker's
        // shows as empty.
        let odd =
            decode_list(r#"[{"Id": "x", "Labels": 5, "NetworkSettings": [1], "Mounts": {}}]"#)
                .unwrap();
        for name in ["Labels", "Networks", "Mounts"] {
            assert_eq!(text(&odd[0], name), "", "{name}");
        }
        assert!(decode_list(r#"[{"Id": "x", "Labels": {"a": }}]"#).is_err());
    }

    #[test]
    fn plain_rows_print_as_the_template_does() {
        let items = decode_list(LIST).unwrap();
        assert_eq!(items.len(), 2);
        assert!(decode_list("[] x").is_err());
        assert!(decode_list("{}").is_err());
        let formats = [
            DEFAULT_TABLE.to_string(),
            format_for("", true, false),
            format_for("", false, true),
            format_for("raw", false, true),
            "table {{.Names}}\\t{{.Status}}\\t{{.State}}\\t{{.Networks}}".to_string(),
            "{{.Labels}} {{.Mounts}} {{.LocalVolumes}} {{.CreatedAt}} {{.Image}} {{.Ports}}"
                .to_string(),
            "{{.Platform}} {{.ID}}".to_string(),
            "{{.Label \"a\"}}|{{.ID}}".to_string(),
            "{{ .ID }}:{{upper .Names}}".to_string(),
            "{{json .}}".to_string(),
        ];
        // These print row by row as they are decoded, the rest through the
        // template; a list printed either way reads the same, rows or none.
        let plain = [
            true, true, true, false, true, true, false, false, false, false,
        ];
        for (i, f) in formats.iter().enumerate() {
            for trunc in [true, false] {
                let show = Show::new(trunc);
                let cell = |x: &Summary, name: &str, out: &mut String| cell(x, &show, name, out);
                let tmpl = crate::format::parse(f).unwrap();
                let probe = Summary::default();
                let pieces = crate::format::plain_pieces(&tmpl, &probe, cell);
                assert_eq!(pieces.is_some(), plain[i], "{f}");
                let Some(pieces) = pieces else { continue };
                for list in [LIST, "[]"] {
                    let mut body = String::new();
                    each_row(list, |x| {
                        crate::format::plain_row(&pieces, &x, cell, &mut body)
                    })
                    .unwrap();
                    let plain = crate::format::finish(f, &tmpl, &header(), body);
                    let items = decode_list(list).unwrap();
                    let row = |x, fl: &Fields| std::borrow::Cow::Owned(row(x, &show, fl));
                    let full = crate::format::write_each(f, &header(), &items, row).unwrap();
                    assert_eq!(plain, full, "{f} (trunc {trunc})");
                }
            }
        }
        // Escaped strings decode owned, the rest borrowed.
        assert!(matches!(items[0].command, std::borrow::Cow::Owned(_)));
        assert!(matches!(items[0].id, std::borrow::Cow::Borrowed(_)));
    }

    #[test]
    fn rows_as_docker_prints_them() {
        let r = row(&summary(), &Show::new(true), &Fields::all());
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
        let full = row(&summary(), &Show::new(false), &Fields::all());
        let out = crate::template::render("{{.ID}} {{.Command}}", &full).unwrap();
        assert_eq!(
            out,
            "b4e713f52f05cd4ba1ad7dee5c5985d55c12e4d48cdc68425217a8516fb303a6 \"echo hello world with a long command line here\""
        );
    }

    #[test]
    fn ports_like_docker() {
        let p = |ip: &'static str, private: u16, public: u16| Port {
            ip: ip.into(),
            private_port: private,
            public_port: public,
            typ: "tcp".into(),
        };
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
