//! The berth-shim binary itself: linked statically (see build.rs), so a resident
//! shim keeps no pages of the C library, the loader or libm of its own. A toolchain
//! change that defeats the build script's trick is caught here.

#[test]
fn binary_has_no_dynamic_loader() {
    berth_testutil::assert_no_dynamic_loader(std::path::Path::new(env!(
        "CARGO_BIN_EXE_berth-shim"
    )));
}
