//! The berth-shim binary itself: linked statically (see build.rs), so a resident
//! shim keeps no pages of the C library, the loader or libm of its own. A toolchain
//! change that defeats the build script's trick is caught here.

// Tests (and their helpers) may unwrap: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// PT_INTERP: the program header naming the dynamic loader.
const PT_INTERP: u32 = 3;

fn program_header_types(elf: &[u8]) -> Vec<u32> {
    assert_eq!(&elf[..4], b"\x7fELF");
    assert_eq!(elf[4], 2, "not a 64-bit ELF");
    assert_eq!(elf[5], 1, "not little-endian");
    let u16_at = |o: usize| u16::from_le_bytes(elf[o..o + 2].try_into().unwrap()) as usize;
    let u32_at = |o: usize| u32::from_le_bytes(elf[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap()) as usize;
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    (0..phnum).map(|i| u32_at(phoff + i * phentsize)).collect()
}

#[test]
fn binary_has_no_dynamic_loader() {
    let path = std::path::PathBuf::from(env!("CARGO_BIN_EXE_berth-shim"));
    let types = program_header_types(&std::fs::read(&path).unwrap());
    assert!(!types.is_empty());
    assert!(
        !types.contains(&PT_INTERP),
        "{} asks for a dynamic loader: {types:?}",
        path.display()
    );
}
