//! Linking one package's binaries statically against glibc, from its build script,
//! on the stable toolchain and without RUSTFLAGS. Used by berth-init (bind-mounted
//! into containers that may have no C library) and berth-shim (resident once per
//! container: a static binary maps only the parts of libc it uses, where a dynamic
//! one keeps pages of libc, libm, libgcc_s and the loader resident).
//!
//! The usual switch (`-C target-feature=+crt-static`) cannot be set from a build
//! script and would apply to the whole workspace if set in a cargo config, so:
//!
//! - `-static` (or `-static-pie`) makes the C compiler driver link a static
//!   executable (static start files, no `PT_INTERP`);
//! - rustc still asks for the libraries of a dynamic build (`-lgcc_s -lutil -lrt
//!   -lpthread -lm -ldl -lc`, behind `-Wl,-Bdynamic`), so a directory placed first
//!   in the library search path holds linker scripts named `lib<name>.a` that point
//!   at the static archives (`libgcc_s`, which has no static form, points at
//!   `libgcc_eh.a`). The linkers look for `lib<name>.so` and then `lib<name>.a` in
//!   each directory in turn, so they take these before the system's `.so` files.
//!
//! Nothing changes for targets that are static already (musl, or crt-static set by
//! the user). It must never be used for binaries that need glibc's dynamic parts
//! (NSS lookups of users or hosts, `dlopen`).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// The libraries rustc's std asks for on linux-gnu, each with the static archives
/// that stand in for it. libc's group also takes libgcc in, so a single-pass linker
/// (GNU ld) resolves libc's own references to them.
const STAND_INS: &[(&str, &[&str])] = &[
    ("c", &["libc.a", "libgcc_eh.a", "libgcc.a"]),
    ("gcc_s", &["libgcc_eh.a"]),
    ("util", &["libutil.a"]),
    ("rt", &["librt.a"]),
    ("pthread", &["libpthread.a"]),
    ("m", &["libm.a"]),
    ("dl", &["libdl.a"]),
];

/// The kind of static executable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Loaded at a fixed address, with no dynamic section at all.
    Fixed,
    /// Position independent (`-static-pie`): relocates itself, so the kernel can
    /// place it at a random address.
    Pie,
}

/// The whole job of a build script: link this package's binaries statically, or
/// fail the build saying why. `package` names it in messages.
pub fn static_bins(package: &str, kind: Kind) -> ExitCode {
    static_bins_with(package, kind, &[])
}

/// [`static_bins`] for a package that also links C libraries of its own
/// (`-l<name>` from a `-sys` crate, linked dynamically by default): each with the
/// static archives that stand in for it, as [`STAND_INS`] has std's.
pub fn static_bins_with(package: &str, kind: Kind, libs: &[(&str, &[&str])]) -> ExitCode {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    match run(package, kind, libs) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{package} build script: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(package: &str, kind: Kind, libs: &[(&str, &[&str])]) -> Result<(), String> {
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    if var("CARGO_CFG_TARGET_OS") != "linux" {
        return Err(format!("{package} only builds for Linux"));
    }
    if var("CARGO_CFG_TARGET_FEATURE")
        .split(',')
        .any(|f| f == "crt-static")
    {
        // musl, or the user asked for static linking: rustc does it all.
        return Ok(());
    }
    if var("CARGO_CFG_TARGET_ENV") != "gnu" {
        return Err(format!(
            "don't know how to link {package} statically for target env {:?}",
            var("CARGO_CFG_TARGET_ENV")
        ));
    }

    // The driver rustc links with: the configured linker, else `cc`.
    let driver = std::env::var("RUSTC_LINKER").unwrap_or_else(|_| "cc".to_string());
    let out = PathBuf::from(var("OUT_DIR")).join("static-libs");
    std::fs::create_dir_all(&out).map_err(|e| format!("create {}: {e}", out.display()))?;

    for (name, archives) in STAND_INS.iter().chain(libs) {
        let paths = archives
            .iter()
            .map(|a| archive_path(package, &driver, a))
            .collect::<Result<Vec<_>, _>>()?;
        let script = format!("GROUP({})\n", paths.join(" "));
        let file = out.join(format!("lib{name}.a"));
        std::fs::write(&file, script).map_err(|e| format!("write {}: {e}", file.display()))?;
    }

    let flag = match kind {
        Kind::Fixed => "-static",
        Kind::Pie => "-static-pie",
    };
    println!("cargo:rustc-link-arg-bins={flag}");
    println!("cargo:rustc-link-arg-bins=-L{}", out.display());
    Ok(())
}

/// The absolute path of a static archive as the C compiler driver finds it.
fn archive_path(package: &str, driver: &str, archive: &str) -> Result<String, String> {
    let output = Command::new(driver)
        .arg(format!("-print-file-name={archive}"))
        .output()
        .map_err(|e| format!("run {driver} -print-file-name={archive}: {e}"))?;
    let path = String::from_utf8_lossy(&output.stdout).trim().to_string();
    // The driver echoes the bare name back when it does not find the file.
    if !output.status.success() || !Path::new(&path).is_absolute() || !Path::new(&path).exists() {
        return Err(format!(
            "{driver} cannot find {archive}: {package} links statically and needs \
             the static archives of the C library and of what it links (Debian: \
             libc6-dev, libgcc-12-dev, and the library's -dev package)"
        ));
    }
    if path.contains(|c: char| c.is_whitespace() || c == '(' || c == ')') {
        return Err(format!(
            "{archive} lies at {path:?}, which a linker script cannot name"
        ));
    }
    Ok(path)
}
