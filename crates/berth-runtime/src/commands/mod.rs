//! One file per subcommand. Each returns the process exit code on success; errors
//! travel up to `main`, which logs them as one line and exits 1.

pub mod create;
pub mod delete;
pub mod events;
pub mod exec;
pub mod features;
pub mod kill;
pub mod list;
pub mod pause;
pub mod ps;
pub mod run;
pub mod spec;
pub mod start;
pub mod state;
pub mod update;
