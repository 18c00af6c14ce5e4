//! Go's text/template, as the docker CLI uses it for `--format`: the whole language
//! (pipelines, variables, `if`/`else if`/`else`, `range`/`break`/`continue`, `with`,
//! `define`/`template`/`block`, comments and trim markers), Go's builtin functions and
//! docker's own (`json`, `split`, `join`, `title`, `lower`, `upper`, `pad`,
//! `truncate`), over JSON-shaped [`Value`]s with Go's field-name semantics.
//!
//! Written to Go's documented semantics rather than taken from a crate: the Rust ports
//! (gtmpl) lack methods with arguments (docker's `.Label "key"`), `break`/`continue`,
//! `else with`, Go's `%v`/`printf` output and header-function swapping for tables.

mod exec;
mod funcs;
mod lex;
mod parse;
pub mod printf;
mod value;

use std::collections::HashMap;

pub use value::{Func, Kind, Map, Value};

/// Functions by name.
pub type FuncMap = HashMap<&'static str, Func>;

/// A template that failed to parse or to run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("template: :{line}: {msg}")]
    Parse { line: usize, msg: String },
    #[error("template: :{line}: executing \"\" at <{at}>: {msg}")]
    Exec {
        line: usize,
        at: String,
        msg: String,
    },
}

impl Error {
    fn parse(line: usize, msg: &str) -> Error {
        Error::Parse {
            line,
            msg: msg.to_string(),
        }
    }
}

/// A parsed template and the functions it may call.
#[derive(Clone)]
pub struct Template {
    tree: parse::Tree,
    funcs: FuncMap,
    missing_key_error: bool,
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Template")
            .field("tree", &self.tree)
            .finish()
    }
}

impl Template {
    /// Parses `src` with Go's builtins and docker's functions.
    pub fn parse(src: &str) -> Result<Template, Error> {
        Template::parse_with(src, FuncMap::new())
    }

    /// Parses `src` with extra functions (docker's `getDetailsOrder` for `version`).
    pub fn parse_with(src: &str, extra: FuncMap) -> Result<Template, Error> {
        let mut funcs = funcs::builtins();
        funcs.extend(extra);
        let tree = parse::parse(src, &|name| funcs.contains_key(name))?;
        Ok(Template {
            tree,
            funcs,
            missing_key_error: false,
        })
    }

    /// Go's `missingkey=error`: a field an object does not have is an error (docker's
    /// inspect falls back to the raw JSON with this option).
    pub fn missing_key_error(mut self) -> Template {
        self.missing_key_error = true;
        self
    }

    /// The same template with docker's table-header functions in place of the
    /// ordinary ones (they leave header text as it is).
    pub fn for_header(&self) -> Template {
        let mut t = self.clone();
        t.funcs.extend(funcs::header_functions());
        t
    }

    /// The top-level fields this template reads from its data, or `None` when it may
    /// use the data whole: a formatter may build only these.
    pub fn data_fields(&self) -> Option<std::collections::BTreeSet<String>> {
        parse::data_fields(&self.tree)
    }

    /// The template as literal text and top-level fields (`{{.ID}}\t{{.Names}}`),
    /// when that is all it is: a formatter whose fields are plain strings can then
    /// print rows without building them as values and running this.
    pub fn plain_pieces(&self) -> Option<Vec<Piece<'_>>> {
        if !self.tree.defines.is_empty() {
            return None;
        }
        self.tree
            .root
            .iter()
            .map(|n| match n {
                parse::Node::Text(t) => Some(Piece::Text(t)),
                parse::Node::Action(p) if p.decl.is_empty() => match p.cmds.as_slice() {
                    [parse::Cmd { args }] => match args.as_slice() {
                        [parse::Arg::Field(ids)] => match ids.as_slice() {
                            [name] => Some(Piece::Field(name)),
                            _ => None,
                        },
                        _ => None,
                    },
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    /// Runs the template against `data`.
    pub fn execute(&self, data: &Value) -> Result<String, Error> {
        let (out, err) = self.execute_partial(data);
        match err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// Runs the template; on an error, also what was written before it (Go's
    /// Execute writes as it goes).
    pub fn execute_partial(&self, data: &Value) -> (String, Option<Error>) {
        let mut ex = exec::Exec::new(&self.tree, &self.funcs, self.missing_key_error);
        let r = ex.run(data);
        (std::mem::take(&mut ex.out), r.err())
    }
}

/// A piece of a template that only prints text and fields ([`Template::plain_pieces`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece<'a> {
    Text(&'a str),
    /// `{{.Name}}`.
    Field(&'a str),
}

/// Parses and runs `src` against `data` in one step.
pub fn render(src: &str, data: &Value) -> Result<String, Error> {
    Template::parse(src)?.execute(data)
}

#[cfg(test)]
mod tests;
