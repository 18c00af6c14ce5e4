//! Go text/template's executor: walks the tree against a value, with Go's rules for
//! field chains (maps give nil for a missing key, structs an error, methods are
//! called), pipelines (the previous command's value is the last argument), variable
//! scopes, `range` over lists, maps (sorted keys) and integers, `break`/`continue`,
//! short-circuit `and`/`or`, and `<no value>` for a missing value.

use super::lex::Number;
use super::parse::{Arg, Branch, Cmd, Node, Pipe, Tree};
use super::printf::sprint_v;
use super::value::{Kind, Value};
use super::{Error, FuncMap};

/// A bound on nested template calls, which stops runaway recursion before the stack
/// does (Go's is higher: its stacks grow).
const MAX_DEPTH: usize = 100;

enum Flow {
    Normal,
    Break,
    Continue,
}

pub struct Exec<'a> {
    tree: &'a Tree,
    funcs: &'a FuncMap,
    vars: Vec<(String, Value)>,
    pub out: String,
    depth: usize,
    line: usize,
    /// The command being evaluated, for errors: formatted only when one happens.
    at: Option<&'a Cmd>,
    missing_key_error: bool,
}

impl<'a> Exec<'a> {
    pub fn new(tree: &'a Tree, funcs: &'a FuncMap, missing_key_error: bool) -> Exec<'a> {
        Exec {
            missing_key_error,
            tree,
            funcs,
            vars: vec![],
            out: String::new(),
            depth: 0,
            line: 1,
            at: None,
        }
    }

    pub fn run(&mut self, data: &Value) -> Result<(), Error> {
        self.vars = vec![("$".to_string(), data.clone())];
        self.walk(data, &self.tree.root).map(|_| ())
    }

    fn err(&self, msg: impl Into<String>) -> Error {
        Error::Exec {
            line: self.line,
            at: self.at.map(ToString::to_string).unwrap_or_default(),
            msg: msg.into(),
        }
    }

    fn walk(&mut self, dot: &Value, nodes: &'a [Node]) -> Result<Flow, Error> {
        for n in nodes {
            match self.walk_node(dot, n)? {
                Flow::Normal => {}
                other => return Ok(other),
            }
        }
        Ok(Flow::Normal)
    }

    fn walk_node(&mut self, dot: &Value, node: &'a Node) -> Result<Flow, Error> {
        match node {
            Node::Text(t) => self.out.push_str(t),
            Node::Action(pipe) => {
                let v = self.eval_pipeline(dot, pipe)?;
                if pipe.decl.is_empty() {
                    self.print(&v);
                }
            }
            Node::If(b) | Node::With(b) => {
                let mark = self.vars.len();
                let v = self.eval_pipeline(dot, &b.pipe)?;
                let flow = if v.truth() {
                    let new_dot = if matches!(node, Node::With(_)) {
                        &v
                    } else {
                        dot
                    };
                    self.walk(new_dot, &b.list)?
                } else if let Some(e) = &b.else_list {
                    self.walk(dot, e)?
                } else {
                    Flow::Normal
                };
                self.vars.truncate(mark);
                return Ok(flow);
            }
            Node::Range(b) => self.walk_range(dot, b)?,
            Node::Template { name, pipe, line } => {
                self.line = *line;
                let Some(list) = self.tree.defines.get(name) else {
                    return Err(self.err(format!(
                        "template: no template {name:?} associated with template \"\""
                    )));
                };
                let new_dot = match pipe {
                    Some(p) => self.eval_pipeline(dot, p)?,
                    None => Value::Nil,
                };
                if self.depth >= MAX_DEPTH {
                    return Err(self.err(format!("exceeded maximum template depth ({MAX_DEPTH})")));
                }
                self.depth += 1;
                let saved =
                    std::mem::replace(&mut self.vars, vec![("$".to_string(), new_dot.clone())]);
                let r = self.walk(&new_dot, list);
                self.vars = saved;
                self.depth -= 1;
                r?;
            }
            Node::Break => return Ok(Flow::Break),
            Node::Continue => return Ok(Flow::Continue),
        }
        Ok(Flow::Normal)
    }

    fn walk_range(&mut self, dot: &Value, b: &'a Branch) -> Result<(), Error> {
        let mark = self.vars.len();
        // The range's own variables are bound per element below, not to the value.
        let v = self.eval_pipe(dot, &b.pipe, false)?;
        let items: Vec<(Value, Value)> = match &v {
            Value::List(l) => l
                .iter()
                .enumerate()
                .map(|(i, e)| (Value::Int(i as i64), e.clone()))
                .collect(),
            Value::Map(m) if !m.is_struct() => m
                .sorted_keys()
                .into_iter()
                .map(|k| (Value::Str(k.clone()), m.get(k).cloned().unwrap_or_default()))
                .collect(),
            Value::Int(n) => {
                if b.pipe.decl.len() > 1 {
                    return Err(self.err("can't use range over integer with two variables"));
                }
                (0..(*n).max(0))
                    .map(|i| (Value::Int(i), Value::Int(i)))
                    .collect()
            }
            Value::Nil | Value::Missing => vec![],
            other => return Err(self.err(format!("range can't iterate over {}", sprint_v(other)))),
        };
        if items.is_empty() {
            if let Some(e) = &b.else_list {
                self.walk(dot, e)?;
            }
            self.vars.truncate(mark);
            return Ok(());
        }
        for (index, elem) in items {
            let iter_mark = self.vars.len();
            match b.pipe.decl.as_slice() {
                [] => {}
                [one] => self.bind(one, elem.clone(), b.pipe.is_assign)?,
                [i, e, ..] => {
                    self.bind(i, index, b.pipe.is_assign)?;
                    self.bind(e, elem.clone(), b.pipe.is_assign)?;
                }
            }
            let flow = self.walk(&elem, &b.list)?;
            self.vars.truncate(iter_mark);
            if matches!(flow, Flow::Break) {
                break;
            }
        }
        self.vars.truncate(mark);
        Ok(())
    }

    fn bind(&mut self, name: &str, v: Value, assign: bool) -> Result<(), Error> {
        if assign {
            self.set_var(name, v)
        } else {
            self.vars.push((name.to_string(), v));
            Ok(())
        }
    }

    fn set_var(&mut self, name: &str, v: Value) -> Result<(), Error> {
        match self.vars.iter_mut().rev().find(|(n, _)| n == name) {
            Some(slot) => {
                slot.1 = v;
                Ok(())
            }
            None => Err(self.err(format!("undefined variable: {name}"))),
        }
    }

    fn var(&self, name: &str) -> Result<Value, Error> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| self.err(format!("undefined variable: {name}")))
    }

    fn print(&mut self, v: &Value) {
        match v {
            Value::Nil | Value::Missing => self.out.push_str("<no value>"),
            other => self.out.push_str(&sprint_v(other)),
        }
    }

    fn eval_pipeline(&mut self, dot: &Value, pipe: &'a Pipe) -> Result<Value, Error> {
        self.eval_pipe(dot, pipe, true)
    }

    /// A pipeline's value; with `bind`, also assigned to its declared variables.
    fn eval_pipe(&mut self, dot: &Value, pipe: &'a Pipe, bind: bool) -> Result<Value, Error> {
        self.line = pipe.line;
        let mut val: Option<Value> = None;
        for cmd in &pipe.cmds {
            val = Some(self.eval_cmd(dot, cmd, val)?);
        }
        // Go digs a nil interface out of a pipeline's value: what is left is invalid.
        let v = match val {
            None | Some(Value::Nil) => Value::Missing,
            Some(v) => v,
        };
        if bind {
            for d in &pipe.decl {
                if pipe.is_assign {
                    self.set_var(d, v.clone())?;
                } else {
                    self.vars.push((d.clone(), v.clone()));
                }
            }
        }
        Ok(v)
    }

    fn not_a_function(&self, cmd: &'a Cmd, final_: &Option<Value>) -> Result<(), Error> {
        if cmd.args.len() > 1 || final_.is_some() {
            return Err(self.err(format!(
                "can't give argument to non-function {}",
                cmd.args[0]
            )));
        }
        Ok(())
    }

    fn eval_cmd(
        &mut self,
        dot: &Value,
        cmd: &'a Cmd,
        final_: Option<Value>,
    ) -> Result<Value, Error> {
        self.at = Some(cmd);
        let Some(first) = cmd.args.first() else {
            return Err(self.err("empty command"));
        };
        match first {
            Arg::Field(ids) => self.eval_chain(dot, dot, ids, &cmd.args[1..], final_),
            Arg::Chain(inner, ids) => {
                let recv = self.eval_arg(dot, inner)?;
                self.eval_chain(dot, &recv, ids, &cmd.args[1..], final_)
            }
            Arg::Variable(name, ids) => {
                let v = self.var(name)?;
                if ids.is_empty() {
                    self.not_a_function(cmd, &final_)?;
                    return Ok(v);
                }
                self.eval_chain(dot, &v, ids, &cmd.args[1..], final_)
            }
            Arg::Ident(name) => self.eval_function(dot, name, &cmd.args[1..], final_),
            Arg::Pipe(p) => {
                self.not_a_function(cmd, &final_)?;
                self.eval_pipeline(dot, p)
            }
            Arg::Nil => Err(self.err("nil is not a command")),
            other => {
                self.not_a_function(cmd, &final_)?;
                self.eval_arg(dot, other)
            }
        }
    }

    /// `receiver` is borrowed: a field of the dot (`.ID` of a whole container) must
    /// not copy the dot first, or `ps` of many containers copies each row once per
    /// column.
    fn eval_chain(
        &mut self,
        dot: &Value,
        receiver: &Value,
        ids: &[String],
        args: &'a [Arg],
        final_: Option<Value>,
    ) -> Result<Value, Error> {
        let Some((last, head)) = ids.split_last() else {
            return Ok(receiver.clone());
        };
        let mut step: Option<Value> = None;
        for id in head {
            let next = self.eval_field(dot, id, step.as_ref().unwrap_or(receiver), &[], None)?;
            step = Some(next);
        }
        self.eval_field(dot, last, step.as_ref().unwrap_or(receiver), args, final_)
    }

    fn eval_field(
        &mut self,
        dot: &Value,
        name: &str,
        recv: &Value,
        args: &'a [Arg],
        final_: Option<Value>,
    ) -> Result<Value, Error> {
        let has_args = !args.is_empty() || final_.is_some();
        match recv {
            Value::Missing => Ok(Value::Missing),
            Value::Nil => Err(self.err(format!("nil pointer evaluating interface {{}}.{name}"))),
            Value::Map(m) => match m.get(name) {
                Some(Value::Func(f)) => {
                    let f = f.clone();
                    let mut argv = Vec::with_capacity(args.len() + 1);
                    for a in args {
                        argv.push(nil_for_missing(self.eval_arg(dot, a)?));
                    }
                    if let Some(v) = final_ {
                        argv.push(nil_for_missing(v));
                    }
                    f(&argv).map_err(|e| self.err(format!("error calling {name}: {e}")))
                }
                Some(v) => {
                    if has_args {
                        return Err(self.err(if m.is_struct() {
                            format!("{name} has arguments but cannot be invoked as function")
                        } else {
                            format!("{name} is not a method but has arguments")
                        }));
                    }
                    Ok(v.clone())
                }
                None => match m.kind {
                    Kind::Struct(t) => {
                        Err(self.err(format!("can't evaluate field {name} in type {t}")))
                    }
                    _ if has_args => {
                        Err(self.err(format!("{name} is not a method but has arguments")))
                    }
                    Kind::Map if self.missing_key_error => {
                        Err(self.err(format!("map has no entry for key {name:?}")))
                    }
                    Kind::StrMap | Kind::Map => Ok(Value::Missing),
                },
            },
            other => Err(self.err(format!(
                "can't evaluate field {name} in type {}",
                other.type_name()
            ))),
        }
    }

    fn eval_function(
        &mut self,
        dot: &Value,
        name: &str,
        args: &'a [Arg],
        final_: Option<Value>,
    ) -> Result<Value, Error> {
        // Go 1.18+: `and` and `or` stop at the first argument that decides.
        if name == "and" || name == "or" {
            if args.is_empty() && final_.is_none() {
                return Err(self.err(format!(
                    "wrong number of args for {name}: want at least 1 got 0"
                )));
            }
            let mut last = Value::Nil;
            let n = args.len();
            for (i, a) in args.iter().enumerate() {
                last = self.eval_arg(dot, a)?;
                let decided = if name == "and" {
                    !last.truth()
                } else {
                    last.truth()
                };
                if decided && (i + 1 < n || final_.is_some()) {
                    return Ok(last);
                }
            }
            if let Some(v) = final_ {
                last = v;
            }
            return Ok(last);
        }
        let Some(f) = self.funcs.get(name).cloned() else {
            return Err(self.err(format!("{name:?} is not a defined function")));
        };
        let mut argv = Vec::with_capacity(args.len() + 1);
        for a in args {
            argv.push(nil_for_missing(self.eval_arg(dot, a)?));
        }
        if let Some(v) = final_ {
            argv.push(nil_for_missing(v));
        }
        f(&argv).map_err(|e| self.err(format!("error calling {name}: {e}")))
    }

    fn eval_arg(&mut self, dot: &Value, arg: &'a Arg) -> Result<Value, Error> {
        match arg {
            Arg::Field(ids) => self.eval_chain(dot, dot, ids, &[], None),
            Arg::Variable(name, ids) => {
                let v = self.var(name)?;
                self.eval_chain(dot, &v, ids, &[], None)
            }
            Arg::Chain(inner, ids) => {
                let v = self.eval_arg(dot, inner)?;
                self.eval_chain(dot, &v, ids, &[], None)
            }
            Arg::Dot => Ok(dot.clone()),
            Arg::Nil => Ok(Value::Nil),
            Arg::Bool(b) => Ok(Value::Bool(*b)),
            Arg::Number(Number::Int(i)) => Ok(Value::Int(*i)),
            Arg::Number(Number::Float(f)) => Ok(Value::Float(*f)),
            Arg::Str(s) => Ok(Value::Str(s.clone())),
            Arg::Ident(name) => self.eval_function(dot, name, &[], None),
            Arg::Pipe(p) => self.eval_pipeline(dot, p),
        }
    }
}

/// A function is handed nil where the template had nothing (Go's zero for an
/// `interface{}` parameter).
fn nil_for_missing(v: Value) -> Value {
    match v {
        Value::Missing => Value::Nil,
        v => v,
    }
}
