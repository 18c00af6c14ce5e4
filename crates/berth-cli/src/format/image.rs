//! docker's image formatter (`images`): one row per repository and tag (and digest
//! with `--digests`), fields `.ID .Repository .Tag .Digest .CreatedSince .CreatedAt
//! .Size .Containers .SharedSize .UniqueSize .VirtualSize`.

use indexmap::IndexMap;
use serde_json::Value as Json;

use super::units::{go_time, human_size, since, size3, truncate_id};
use crate::template::{Map, Value};

/// `docker images`' default table.
pub const DEFAULT_TABLE: &str = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{if .CreatedSince }}{{.CreatedSince}}{{else}}N/A{{end}}\t{{.Size}}";
/// The same with a DIGEST column (`--digests`).
pub const DEFAULT_TABLE_DIGEST: &str = "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{if .CreatedSince }}{{.CreatedSince}}{{else}}N/A{{end}}\t{{.Size}}";

/// docker's `NewImageFormat`.
pub fn format_for(source: &str, quiet: bool, digest: bool) -> String {
    match source {
        "table" | "" => {
            if quiet {
                "{{.ID}}".into()
            } else if digest {
                DEFAULT_TABLE_DIGEST.into()
            } else {
                DEFAULT_TABLE.into()
            }
        }
        "raw" => {
            if quiet {
                "image_id: {{.ID}}".into()
            } else if digest {
                "repository: {{ .Repository }}\ntag: {{.Tag}}\ndigest: {{.Digest}}\nimage_id: {{.ID}}\ncreated_at: {{.CreatedAt}}\nvirtual_size: {{.Size}}\n".into()
            } else {
                "repository: {{ .Repository }}\ntag: {{.Tag}}\nimage_id: {{.ID}}\ncreated_at: {{.CreatedAt}}\nvirtual_size: {{.Size}}\n".into()
            }
        }
        custom => {
            if quiet {
                return "{{.ID}}".into();
            }
            let mut f = custom.to_string();
            if super::is_table(&f) && digest && !f.contains("{{.Digest}}") {
                f.push_str("\\t{{.Digest}}");
            }
            f
        }
    }
}

pub fn header() -> Map {
    super::header(&[
        ("ID", "IMAGE ID"),
        ("Repository", "REPOSITORY"),
        ("Tag", "TAG"),
        ("Digest", "DIGEST"),
        ("CreatedSince", "CREATED"),
        ("CreatedAt", "CREATED AT"),
        ("Size", "SIZE"),
        ("Containers", "CONTAINERS"),
        ("SharedSize", "SHARED SIZE"),
        ("UniqueSize", "UNIQUE SIZE"),
        ("VirtualSize", "SIZE"),
    ])
}

/// A reference's familiar name: `docker.io/library/` and `docker.io/` dropped.
pub fn familiar_name(name: &str) -> String {
    super::container::familiar(name)
}

/// `name:tag` split where the tag is after the last `/` (a registry port is not a tag).
pub fn split_tag(r: &str) -> Option<(&str, &str)> {
    let (n, t) = r.rsplit_once(':')?;
    (!t.contains('/')).then_some((n, t))
}

fn strings(v: &Json) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str().map(str::to_string))
        .collect()
}

fn is_dangling(tags: &[String], digests: &[String]) -> bool {
    (tags.is_empty() && digests.is_empty())
        || (tags == ["<none>:<none>"] && digests == ["<none>@<none>"])
}

/// The formatter object for one row.
pub fn row(img: &Json, trunc: bool, repo: &str, tag: &str, digest: &str) -> Value {
    let mut m = Map::structure("*formatter.imageContext");
    let id = img["Id"].as_str().unwrap_or("");
    let created = img["Created"].as_i64().unwrap_or(0);
    let size = img["Size"].as_i64().unwrap_or(0);
    let shared = img["SharedSize"].as_i64().unwrap_or(-1);
    let containers = img["Containers"].as_i64().unwrap_or(-1);
    m.insert(
        "Containers",
        if containers == -1 {
            "N/A".to_string()
        } else {
            containers.to_string()
        },
    );
    m.insert("CreatedAt", go_time(created));
    m.insert("CreatedSince", since(created));
    m.insert("Digest", digest);
    m.insert(
        "ID",
        if trunc {
            truncate_id(id)
        } else {
            id.to_string()
        },
    );
    m.insert("Repository", repo);
    m.insert(
        "SharedSize",
        if shared == -1 {
            "N/A".to_string()
        } else {
            human_size(shared as f64)
        },
    );
    m.insert("Size", size3(size));
    m.insert("Tag", tag);
    m.insert(
        "UniqueSize",
        if size == -1 || shared == -1 {
            "N/A".to_string()
        } else {
            human_size((size - shared) as f64)
        },
    );
    m.insert("VirtualSize", human_size(size as f64));
    Value::Map(m)
}

/// The rows docker prints for one image of `GET /images/json`: one per repository
/// and tag; with `digests`, one per digest of each too; digest-only references as
/// rows of their own.
pub fn rows(img: &Json, trunc: bool, digests: bool) -> Vec<Value> {
    let tags = strings(&img["RepoTags"]);
    let dgs = strings(&img["RepoDigests"]);
    if is_dangling(&tags, &dgs) {
        return vec![row(img, trunc, "<none>", "<none>", "<none>")];
    }
    let mut repo_tags: IndexMap<String, Vec<String>> = IndexMap::new();
    for t in &tags {
        if let Some((n, tag)) = split_tag(t) {
            repo_tags
                .entry(familiar_name(n))
                .or_default()
                .push(tag.to_string());
        }
    }
    let mut repo_digests: IndexMap<String, Vec<String>> = IndexMap::new();
    for d in &dgs {
        if let Some((n, dg)) = d.split_once('@') {
            repo_digests
                .entry(familiar_name(n))
                .or_default()
                .push(dg.to_string());
        }
    }
    let mut out = vec![];
    for (repo, tags) in &repo_tags {
        let ds = repo_digests.shift_remove(repo).unwrap_or_default();
        let ds = if digests { ds } else { vec![] };
        for tag in tags {
            if ds.is_empty() {
                out.push(row(img, trunc, repo, tag, "<none>"));
            }
            for d in &ds {
                out.push(row(img, trunc, repo, tag, d));
            }
        }
    }
    for (repo, ds) in &repo_digests {
        if digests {
            for d in ds {
                out.push(row(img, trunc, repo, "<none>", d));
            }
        } else {
            out.push(row(img, trunc, repo, "<none>", ""));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_per_tag_and_digest() {
        let img = json!({
            "Id": "sha256:28af6e5c535b7e8dccdc75c48ee949b4656305fcfbc8a99badcce83b7137396a",
            "RepoTags": ["busybox:latest", "docker.io/library/busybox:1", "localhost:5000/b:v1"],
            "RepoDigests": ["localhost:5000/b@sha256:abcd"],
            "Created": 1_700_000_000, "Size": 1_994_600, "SharedSize": -1, "Containers": 2
        });
        let out: Vec<String> = rows(&img, true, false)
            .iter()
            .map(|r| {
                crate::template::render("{{.Repository}}:{{.Tag}} {{.ID}} {{.Digest}} {{.Size}}", r)
                    .unwrap()
            })
            .collect();
        assert_eq!(
            out,
            vec![
                "busybox:latest 28af6e5c535b <none> 1.99MB",
                "busybox:1 28af6e5c535b <none> 1.99MB",
                "localhost:5000/b:v1 28af6e5c535b <none> 1.99MB"
            ]
        );
        let with: Vec<String> = rows(&img, true, true)
            .iter()
            .map(|r| crate::template::render("{{.Repository}} {{.Digest}}", r).unwrap())
            .collect();
        assert_eq!(with[2], "localhost:5000/b sha256:abcd");
        let json = crate::template::render("{{json .}}", &rows(&img, true, false)[0]).unwrap();
        assert!(
            json.starts_with(r#"{"Containers":"2","CreatedAt":""#),
            "{json}"
        );
        assert!(json.contains(r#""Digest":"\u003cnone\u003e","ID":"28af6e5c535b","Repository":"busybox","SharedSize":"N/A","Size":"1.99MB","Tag":"latest","UniqueSize":"N/A","VirtualSize":"1.995MB"}"#), "{json}");
    }

    #[test]
    fn dangling_images_are_none() {
        let img = json!({"Id": "sha256:aa", "RepoTags": [], "RepoDigests": [], "Size": 5});
        let r = rows(&img, true, false);
        assert_eq!(
            crate::template::render("{{.Repository}}:{{.Tag}}", &r[0]).unwrap(),
            "<none>:<none>"
        );
    }
}
