//! `.dockerignore`: one pattern a line; `#` at the start of a line is a comment;
//! surrounding whitespace is dropped; `!` makes an exception; patterns are cleaned
//! like Go's `filepath.Clean` and a leading `/` dropped. A path is excluded when the
//! last pattern that matches it (or one of its parent directories) is not an
//! exception. `*` and `?` stay within one path segment, `**` spans any number of
//! segments, `[...]` are classes and `\` escapes.

use regex::Regex;

/// A pattern that does not compile.
#[derive(Debug, thiserror::Error)]
#[error("invalid .dockerignore pattern {pattern:?}: {why}")]
pub struct PatternError {
    pub pattern: String,
    pub why: String,
}

#[derive(Debug, Clone)]
struct Rule {
    exception: bool,
    re: Regex,
    /// Segments of the cleaned pattern, to tell which directories may hold exceptions.
    text: String,
}

/// The patterns of a `.dockerignore` file.
#[derive(Debug, Clone, Default)]
pub struct Patterns {
    rules: Vec<Rule>,
}

/// Go's `path.Clean` for slash-separated relative paths.
fn clean(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            s => out.push(s),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// Translates a pattern to an anchored regex. `doublestar` turns `**` into "any
/// number of segments" (.dockerignore); without it `**` is two `*`s (filepath.Match).
fn translate(pattern: &str, doublestar: bool) -> Result<String, String> {
    let mut re = String::from("^");
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '*' => {
                if doublestar && chars.get(i + 1) == Some(&'*') {
                    i += 1;
                    if chars.get(i + 1) == Some(&'/') {
                        i += 1;
                    }
                    if i + 1 >= chars.len() {
                        re.push_str(".*");
                    } else {
                        re.push_str("(.*/)?");
                    }
                } else {
                    re.push_str("[^/]*");
                }
            }
            '?' => re.push_str("[^/]"),
            '\\' => {
                i += 1;
                match chars.get(i) {
                    Some(n) => re.push_str(&regex::escape(&n.to_string())),
                    None => return Err("trailing backslash".to_string()),
                }
            }
            '[' => {
                let mut j = i + 1;
                let mut class = String::from("[");
                if chars.get(j) == Some(&'^') || chars.get(j) == Some(&'!') {
                    class.push('^');
                    j += 1;
                }
                let start = j;
                while j < chars.len() && (chars[j] != ']' || j == start) {
                    match chars[j] {
                        '\\' => {
                            j += 1;
                            let n = chars.get(j).ok_or("unterminated character class")?;
                            class.push_str(&regex::escape(&n.to_string()));
                        }
                        '[' | '&' | '~' | '|' => {
                            class.push('\\');
                            class.push(chars[j]);
                        }
                        ch => class.push(ch),
                    }
                    j += 1;
                }
                if j >= chars.len() {
                    return Err("unterminated character class".to_string());
                }
                class.push(']');
                re.push_str(&class);
                i = j;
            }
            c => re.push_str(&regex::escape(&c.to_string())),
        }
        i += 1;
    }
    re.push('$');
    Ok(re)
}

/// Go's `filepath.Match` of `pattern` against `name` (both slash-separated): `*` and
/// `?` never match `/`. A malformed pattern matches nothing.
pub fn path_match(pattern: &str, name: &str) -> bool {
    translate(pattern, false)
        .ok()
        .and_then(|r| Regex::new(&r).ok())
        .is_some_and(|re| re.is_match(name))
}

impl Patterns {
    /// Parses a `.dockerignore` file.
    pub fn parse(text: &str) -> Result<Patterns, PatternError> {
        let mut rules = vec![];
        for line in text.lines() {
            if line.starts_with('#') {
                continue;
            }
            let mut p = line.trim();
            if p.is_empty() {
                continue;
            }
            let exception = p.starts_with('!');
            if exception {
                p = p[1..].trim();
                if p.is_empty() {
                    continue;
                }
            }
            let mut cleaned = clean(p);
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
            let re = translate(&cleaned, true)
                .and_then(|r| Regex::new(&r).map_err(|e| e.to_string()))
                .map_err(|why| PatternError {
                    pattern: p.to_string(),
                    why,
                })?;
            rules.push(Rule {
                exception,
                re,
                text: cleaned,
            });
        }
        Ok(Patterns { rules })
    }

    /// No patterns at all.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether any pattern is an exception (`!`): an excluded directory must then be
    /// walked, since something below it may be let back in.
    pub fn has_exceptions(&self) -> bool {
        self.rules.iter().any(|r| r.exception)
    }

    /// Whether `path` (relative to the context, slash-separated) is excluded.
    pub fn excludes(&self, path: &str) -> bool {
        let path = clean(path);
        let parents: Vec<String> = {
            let segs: Vec<&str> = path.split('/').collect();
            (1..segs.len()).map(|n| segs[..n].join("/")).collect()
        };
        let mut excluded = false;
        for r in &self.rules {
            let hit = r.re.is_match(&path) || parents.iter().any(|p| r.re.is_match(p));
            if hit {
                excluded = !r.exception;
            }
        }
        excluded
    }

    /// Whether an exception pattern could let back in something below the
    /// directory `dir` (so an excluded directory still has to be walked).
    pub fn may_reinclude_below(&self, dir: &str) -> bool {
        let dir = clean(dir);
        self.rules.iter().filter(|r| r.exception).any(|r| {
            r.text.contains("**") || r.text == dir || r.text.starts_with(&format!("{dir}/")) || {
                // A wildcard in the pattern's leading segments may match `dir`.
                let segs: Vec<&str> = r.text.split('/').collect();
                let dsegs: Vec<&str> = dir.split('/').collect();
                segs.len() > dsegs.len() && segs.iter().zip(&dsegs).all(|(p, d)| path_match(p, d))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockers_rules() {
        let p = Patterns::parse(
            "ignored\nDockerfile\n.dockerignore\n ignored-with-spaces \n!ignored/subdir/excepted-file\n! ignored/subdir/excepted-with-spaces  \n\n#*\n",
        )
        .unwrap();
        assert!(p.excludes("ignored"));
        assert!(p.excludes("ignored/subdir/file"));
        assert!(!p.excludes("ignored/subdir/excepted-file"));
        assert!(!p.excludes("ignored/subdir/excepted-with-spaces"));
        assert!(p.excludes("ignored-with-spaces"));
        assert!(!p.excludes("#file.txt"));
        assert!(!p.excludes("not-ignored"));
        assert!(p.excludes("Dockerfile"));
        assert!(p.may_reinclude_below("ignored"));
        assert!(!p.may_reinclude_below("other"));
    }

    #[test]
    fn stars() {
        let p = Patterns::parse("**/*.log\n/tmp/*\n*.md\n!README.md\n").unwrap();
        assert!(p.excludes("a.log"));
        assert!(p.excludes("x/y/z.log"));
        assert!(p.excludes("tmp/a"));
        assert!(!p.excludes("tmp"));
        assert!(!p.excludes("src/tmp/a"));
        assert!(p.excludes("CHANGES.md"));
        assert!(!p.excludes("README.md"));
        assert!(!p.excludes("docs/x.md"), "* stays in one segment");
        let all = Patterns::parse("**\n!keep\n").unwrap();
        assert!(all.excludes("a/b/c"));
        assert!(!all.excludes("keep"));
        let q = Patterns::parse("a?c\n[x-z]*\n").unwrap();
        assert!(q.excludes("abc") && !q.excludes("a/c"));
        assert!(q.excludes("yes") && !q.excludes("no"));
    }

    #[test]
    fn go_filepath_match() {
        assert!(path_match("*.txt", "a.txt"));
        assert!(!path_match("*.txt", "d/a.txt"));
        assert!(path_match("d/*.txt", "d/a.txt"));
        assert!(path_match("fil?", "file"));
        assert!(path_match("[a-c]x", "bx"));
        assert!(!path_match("[^a-c]x", "bx"));
        assert!(path_match("a\\*", "a*"));
        assert!(!path_match("a\\*", "ab"));
        assert!(!path_match("[", "["));
    }

    #[test]
    fn cleaning() {
        assert_eq!(clean("./a//b/../c/"), "a/c");
        assert_eq!(clean("/a/b"), "/a/b");
        assert_eq!(clean(""), ".");
    }
}
