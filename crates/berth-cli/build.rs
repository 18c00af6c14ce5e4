//! Links the `berth` binary statically (see berth-link). The CLI is a process per
//! command, so its start is on the path of every `berth run`: linked dynamically
//! it pays for the loader mapping glibc, libm and libgcc_s and resolving their
//! symbols before `main`. Position independent, so it still loads at a random
//! address. The CLI needs nothing of glibc's dynamic parts: it talks to a unix
//! socket only (no host names), finds its configuration through `$HOME` (no
//! user lookups) and loads no modules.

fn main() -> std::process::ExitCode {
    berth_link::static_bins("berth-cli", berth_link::Kind::Pie)
}
