//! berth: a docker-style command line for berthd. The binary parses flags with clap and
//! runs one verb over the engine's HTTP API on its unix socket.

pub mod build;
pub mod client;
pub mod commands;
pub mod container_verbs;
pub mod format;
pub mod health;
pub mod images;
