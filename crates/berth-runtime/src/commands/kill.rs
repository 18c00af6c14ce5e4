//! `berth-runtime kill [--all] ID [SIGNAL]`.

use crate::cli::{Cli, KillArgs};
use crate::{signal, Container};

pub fn run(cli: &Cli, args: &KillArgs) -> anyhow::Result<i32> {
    let sig = signal::parse_or_zero(&args.signal)?;
    Container::load(&cli.root, &args.id)?.kill(sig, args.all)?;
    Ok(0)
}
