//! Pull an image into a store and unpack it (used by scripts/bench-images.sh).
//!
//! Usage: pull ROOT REFERENCE [--insecure]

// Tests (and their helpers) may unwrap: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use berth_manager::registry::PullOptions;
use berth_manager::Store;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(root), Some(reference)) = (args.get(1), args.get(2)) else {
        anyhow::bail!("usage: pull ROOT REFERENCE [--insecure]");
    };
    let insecure = args.iter().any(|a| a == "--insecure");
    let store = Arc::new(Store::open(&PathBuf::from(root)).context("open store")?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start tokio")?;
    let start = Instant::now();
    let img = rt
        .block_on(store.pull(
            reference,
            &PullOptions {
                insecure,
                ..Default::default()
            },
        ))
        .with_context(|| format!("pull {reference}"))?;
    println!(
        "pulled {reference}: id {} layers {} unpacked {} bytes in {:.2}s",
        img.id(),
        img.record.layers.len(),
        img.record.size,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
