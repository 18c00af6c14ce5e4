//! Links the `berth-init` binary statically (see berth-link): it is bind-mounted
//! into containers whose root filesystem may have no C library and no dynamic
//! loader at all. The integration tests check that the result has no `PT_INTERP`
//! and no `PT_DYNAMIC` header, so a toolchain change that defeats this is caught.

fn main() -> std::process::ExitCode {
    berth_link::static_bins("berth-init", berth_link::Kind::Fixed)
}
