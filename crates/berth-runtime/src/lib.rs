//! berth-runtime: an OCI runtime with runc's command line.
//!
//! Its job: turn a bundle (config.json + rootfs) into a process in its own
//! namespaces and cgroup, and answer for that process afterwards through
//! `<root>/<id>/state.json`. It is a library with a thin binary so that the shim,
//! Docker, containerd and podman can all drive it the way they drive runc.
//!
//! What it must never do: run as a daemon, start a tokio runtime or any other
//! thread (it forks and clones), change a host file outside the bundle and its own
//! state directory, or let a host file descriptor reach the container.

pub mod capabilities;
pub use berth_cgroups as cgroups;
pub mod cli;
pub mod commands;
pub mod container;
pub mod devices;
pub mod error;
pub mod hooks;
pub mod identity;
pub mod logger;
pub mod mntns;
pub mod mounts;
pub mod namespaces;
pub mod process;
pub mod rlimits;
pub mod rootfs;
pub mod seccomp;
pub mod selfexe;
pub mod signal;
pub mod state;
pub mod tty;

pub use container::Container;
pub use error::Error;
