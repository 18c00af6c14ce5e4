//! berth: the command line for berthd, with docker's commands, flags, output formats
//! and exit codes, so that `alias docker=berth` works for everyday use. It keeps no
//! state of its own beyond docker's client configuration file, and it talks to
//! nothing but the engine's socket (and, for credential helpers, the helper
//! programs the configuration names).
//!
//! The code is arranged by docker's nouns: [`container`], [`image`], [`volume`],
//! [`network`], [`system`], [`builder`], with [`stream`] for attached streams,
//! [`pull`] for pulls and pushes, [`format`] for docker's formatter and
//! [`template`] for Go's text/template.

pub mod build;
pub mod builder;
pub mod cli;
pub mod client;
pub mod config;
pub mod container;
pub mod context;
pub mod format;
pub mod image;
pub mod inspect;
pub mod network;
pub mod pull;
pub mod registry;
pub mod stream;
pub mod system;
pub mod template;
pub mod volume;
