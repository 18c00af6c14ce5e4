//! Links the `berth-shim` binary statically (see berth-link). One shim stays
//! resident per container: linked dynamically it keeps pages of libc, libm,
//! libgcc_s and the loader resident (about 1.9 MiB of its 2.3 MiB VmRSS); static, it
//! maps only the parts of libc it calls. Position independent, so it still loads at
//! a random address. The shim needs nothing of glibc's dynamic parts (no NSS, no
//! dlopen).

fn main() -> std::process::ExitCode {
    berth_link::static_bins("berth-shim", berth_link::Kind::Pie)
}
