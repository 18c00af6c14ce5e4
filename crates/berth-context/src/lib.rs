//! Build contexts, shared by the `berth build` client and berthd's builder.
//!
//! Its job: `.dockerignore` files with Docker's pattern rules ([`Patterns`]),
//! Go `filepath.Match` patterns as Dockerfile `COPY` uses them ([`path_match`]), and
//! packing a directory into the tar a client sends as the context ([`pack`]).
//!
//! What it must never do: talk to a daemon, or follow a symlink out of the context
//! (links are packed as links).

mod ignore;
mod pack;

pub use ignore::{path_match, PatternError, Patterns};
pub use pack::{pack, PackError};
