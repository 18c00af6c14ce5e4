//! Device rules on cgroup v2: the spec's `linux.resources.devices` compiled into
//! an eBPF program of type `BPF_PROG_TYPE_CGROUP_DEVICE`, which the kernel runs
//! on every open (read, write) and mknod of a device node by a process of the
//! cgroup, and whose answer (1 allow, 0 deny) is final.
//!
//! The rules mean what they mean to the v1 devices controller:
//! - the rules are read in order and the last one that matches decides;
//! - nothing matches: denied (a container starts from "deny all", as under runc);
//! - type `a` (or no type) is every device whatever its numbers and access, the
//!   way v1 reads `a`: `deny a` starts over from "deny all", `allow a` from
//!   "allow all";
//! - an allow rule matches a request only if it grants every access asked at
//!   once (open O_RDWR asks `rw`), a deny rule as soon as it refuses one of them,
//!   as v1's exception lists do.
//!
//! The program is emitted by hand: it is a few instructions per rule and needs no
//! maps or helpers, so no eBPF toolchain or loader crate is worth its weight here.
//! [`emulate`] runs a program the way the kernel does, so the compiler is tested
//! without root; the kernel's verifier and the real thing are tested in
//! tests/kernel.rs.

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use crate::resources::ResourceError;

/// `struct bpf_cgroup_dev_ctx.access_type`: the device type in the low 16 bits.
pub const DEV_BLOCK: u32 = 1;
pub const DEV_CHAR: u32 = 2;
/// ... and the access asked in the high 16 bits.
pub const ACC_MKNOD: u32 = 1;
pub const ACC_READ: u32 = 2;
pub const ACC_WRITE: u32 = 4;
const ACC_ALL: u32 = ACC_MKNOD | ACC_READ | ACC_WRITE;

/// One eBPF instruction, laid out as the kernel's `struct bpf_insn`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    /// dst_reg in the low nibble, src_reg in the high one.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

// The opcodes this compiler uses (class | size/op | source).
const LDX_MEM_W: u8 = 0x61; // dst = *(u32 *)(src + off)
const ALU64_MOV_X: u8 = 0xbf; // dst = src
const ALU64_MOV_K: u8 = 0xb7; // dst = imm
const ALU32_AND_K: u8 = 0x54; // dst = (u32)dst & imm
const ALU32_RSH_K: u8 = 0x74; // dst = (u32)dst >> imm
const JMP_JEQ_K: u8 = 0x15; // if dst == imm goto +off
const JMP_JNE_K: u8 = 0x55; // if dst != imm goto +off
const JMP_EXIT: u8 = 0x95;

// Registers: r1 holds the context on entry, r0 the answer on exit.
const R0: u8 = 0;
const R1: u8 = 1;
const R_ACCESS: u8 = 2;
const R_TYPE: u8 = 3;
const R_MAJOR: u8 = 4;
const R_MINOR: u8 = 5;
const R_TMP: u8 = 6;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0x0f),
        off,
        imm,
    }
}

/// One rule reduced to what the program tests; `None` is a wildcard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rule {
    allow: bool,
    typ: Option<u32>,
    major: Option<u32>,
    minor: Option<u32>,
    access: u32,
}

fn number(n: Option<i64>) -> Result<Option<u32>, ResourceError> {
    match n {
        None => Ok(None),
        Some(v) if v < 0 => Ok(None),
        Some(v) => u32::try_from(v)
            .map(Some)
            .map_err(|_| ResourceError::InvalidValue {
                what: "device number",
                value: v,
            }),
    }
}

fn rule(d: &LinuxDeviceCgroup) -> Result<Rule, ResourceError> {
    // Same validation (and error messages) as the v1 backend's.
    crate::resources::device_rule(d)?;
    let typ = match d.typ().unwrap_or(LinuxDeviceType::A) {
        LinuxDeviceType::A => None,
        LinuxDeviceType::B => Some(DEV_BLOCK),
        LinuxDeviceType::C | LinuxDeviceType::U => Some(DEV_CHAR),
        LinuxDeviceType::P => return Err(ResourceError::DeviceType("p".into())),
    };
    let mut access = 0;
    for c in d.access().as_deref().unwrap_or("").chars() {
        access |= match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => 0,
        };
    }
    if access == 0 {
        access = ACC_ALL;
    }
    if typ.is_none() {
        // v1's `a`: every device, every access.
        return Ok(Rule {
            allow: d.allow(),
            typ: None,
            major: None,
            minor: None,
            access: ACC_ALL,
        });
    }
    Ok(Rule {
        allow: d.allow(),
        typ,
        major: number(d.major())?,
        minor: number(d.minor())?,
        access,
    })
}

fn imm(v: u32) -> i32 {
    // The kernel compares the zero-extended 32-bit context fields with the
    // immediate sign-extended to 64 bits, so numbers above i32::MAX cannot be
    // matched with an immediate; they never name a real device (majors are
    // 12 bits, minors 20), and such a rule is refused rather than mis-compiled.
    v as i32
}

/// Compile the rules into the program's instructions.
pub fn compile(rules: &[LinuxDeviceCgroup]) -> Result<Vec<Insn>, ResourceError> {
    let mut parsed = rules.iter().map(rule).collect::<Result<Vec<_>, _>>()?;
    for r in &parsed {
        for n in [r.major, r.minor].into_iter().flatten() {
            if n > i32::MAX as u32 {
                return Err(ResourceError::InvalidValue {
                    what: "device number",
                    value: i64::from(n),
                });
            }
        }
    }
    // The last matching rule decides: test them from the end.
    parsed.reverse();

    let mut prog = vec![
        insn(LDX_MEM_W, R_ACCESS, R1, 0, 0),
        insn(ALU64_MOV_X, R_TYPE, R_ACCESS, 0, 0),
        insn(ALU32_AND_K, R_TYPE, 0, 0, 0xffff),
        insn(ALU32_RSH_K, R_ACCESS, 0, 0, 16),
        insn(LDX_MEM_W, R_MAJOR, R1, 4, 0),
        insn(LDX_MEM_W, R_MINOR, R1, 8, 0),
    ];
    for r in parsed {
        // Each test jumps past the rest of this rule's block on a mismatch; the
        // block's length is only known at its end, so offsets are patched then.
        let mut block: Vec<Insn> = Vec::new();
        let mut jumps: Vec<usize> = Vec::new();
        if let Some(t) = r.typ {
            jumps.push(block.len());
            block.push(insn(JMP_JNE_K, R_TYPE, 0, 0, imm(t)));
        }
        if r.access != ACC_ALL {
            block.push(insn(ALU64_MOV_X, R_TMP, R_ACCESS, 0, 0));
            jumps.push(block.len() + 1);
            if r.allow {
                // Matches when nothing outside the rule's access is asked.
                block.push(insn(ALU32_AND_K, R_TMP, 0, 0, imm(!r.access & ACC_ALL)));
                block.push(insn(JMP_JNE_K, R_TMP, 0, 0, 0));
            } else {
                // Matches when any of the refused access is asked.
                block.push(insn(ALU32_AND_K, R_TMP, 0, 0, imm(r.access)));
                block.push(insn(JMP_JEQ_K, R_TMP, 0, 0, 0));
            }
        }
        if let Some(m) = r.major {
            jumps.push(block.len());
            block.push(insn(JMP_JNE_K, R_MAJOR, 0, 0, imm(m)));
        }
        if let Some(m) = r.minor {
            jumps.push(block.len());
            block.push(insn(JMP_JNE_K, R_MINOR, 0, 0, imm(m)));
        }
        block.push(insn(ALU64_MOV_K, R0, 0, 0, i32::from(r.allow)));
        block.push(insn(JMP_EXIT, 0, 0, 0, 0));
        let end = block.len();
        for j in &jumps {
            // Blocks are a few instructions long: the offset always fits.
            block[*j].off = i16::try_from(end - j - 1).unwrap_or(i16::MAX);
        }
        let unconditional = jumps.is_empty();
        prog.extend(block);
        if unconditional {
            // The verifier refuses unreachable instructions: nothing may follow
            // a rule that matches everything.
            return Ok(prog);
        }
    }
    prog.push(insn(ALU64_MOV_K, R0, 0, 0, 0));
    prog.push(insn(JMP_EXIT, 0, 0, 0, 0));
    Ok(prog)
}

/// What a program answers for one request, computed as the kernel would run it
/// (only the instructions [`compile`] emits are known): `Some(true)` allows.
/// `None` means the program is malformed (unknown opcode, jump out of range).
pub fn emulate(prog: &[Insn], dev_type: u32, access: u32, major: u32, minor: u32) -> Option<bool> {
    let ctx = [(access << 16) | dev_type, major, minor];
    let mut r = [0u64; 11];
    let mut pc = 0usize;
    // Programs only jump forward, so this terminates; the bound is a guard.
    for _ in 0..=prog.len() {
        let i = prog.get(pc)?;
        let dst = usize::from(i.regs & 0x0f);
        let src = usize::from(i.regs >> 4);
        let k = i64::from(i.imm) as u64;
        pc += 1;
        match i.code {
            LDX_MEM_W => {
                if src != usize::from(R1) || i.off % 4 != 0 {
                    return None;
                }
                r[dst] = u64::from(*ctx.get(usize::try_from(i.off / 4).ok()?)?);
            }
            ALU64_MOV_X => r[dst] = r[src],
            ALU64_MOV_K => r[dst] = k,
            ALU32_AND_K => r[dst] = u64::from((r[dst] as u32) & (k as u32)),
            ALU32_RSH_K => r[dst] = u64::from((r[dst] as u32) >> (k as u32)),
            JMP_JEQ_K | JMP_JNE_K => {
                if (r[dst] == k) == (i.code == JMP_JEQ_K) {
                    pc = pc.checked_add(usize::try_from(i.off).ok()?)?;
                }
            }
            JMP_EXIT => return Some(r[0] == 1),
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(allow: bool, typ: &str, major: i64, minor: i64, access: &str) -> LinuxDeviceCgroup {
        serde_json::from_value(serde_json::json!({
            "allow": allow, "type": typ, "major": major, "minor": minor, "access": access
        }))
        .unwrap()
    }

    /// Docker's default rules (what berthd puts in every spec).
    fn docker_default() -> Vec<LinuxDeviceCgroup> {
        let mut v = vec![
            rule(false, "a", -1, -1, "rwm"),
            rule(true, "c", -1, -1, "m"),
            rule(true, "b", -1, -1, "m"),
        ];
        for (ma, mi) in [
            (1, 3),
            (1, 5),
            (1, 7),
            (1, 8),
            (1, 9),
            (5, 0),
            (5, 1),
            (5, 2),
            (136, -1),
            (10, 200),
        ] {
            v.push(rule(true, "c", ma, mi, "rwm"));
        }
        v
    }

    fn check(p: &[Insn], t: u32, acc: u32, ma: u32, mi: u32) -> bool {
        emulate(p, t, acc, ma, mi).expect("well-formed program")
    }

    #[test]
    fn docker_defaults() {
        let p = compile(&docker_default()).unwrap();
        // The host's disk: mknod yes, open no.
        assert!(check(&p, DEV_BLOCK, ACC_MKNOD, 254, 0));
        assert!(!check(&p, DEV_BLOCK, ACC_READ, 254, 0));
        assert!(!check(&p, DEV_BLOCK, ACC_READ | ACC_WRITE, 8, 0));
        assert!(!check(&p, DEV_CHAR, ACC_READ, 1, 1)); // /dev/mem
        assert!(check(&p, DEV_CHAR, ACC_READ | ACC_WRITE, 1, 3)); // /dev/null
        assert!(check(&p, DEV_CHAR, ACC_READ | ACC_WRITE, 136, 7)); // a pty
        assert!(check(&p, DEV_CHAR, ACC_WRITE, 5, 2)); // ptmx
        assert!(!check(&p, DEV_CHAR, ACC_READ, 4, 1)); // tty1
        assert!(check(&p, DEV_CHAR, ACC_MKNOD, 4, 1));
    }

    #[test]
    fn nothing_matching_is_denied() {
        let p = compile(&[rule(true, "c", 1, 3, "rwm")]).unwrap();
        assert!(check(&p, DEV_CHAR, ACC_READ, 1, 3));
        assert!(!check(&p, DEV_CHAR, ACC_READ, 1, 5));
        assert!(!check(&p, DEV_BLOCK, ACC_READ, 1, 3));
        let p = compile(&[]).unwrap();
        assert!(!check(&p, DEV_CHAR, ACC_READ, 1, 3));
    }

    #[test]
    fn privileged_allows_everything() {
        let p = compile(&[rule(true, "a", -1, -1, "rwm")]).unwrap();
        assert_eq!(p.len(), 8, "an unconditional rule ends the program");
        assert!(check(&p, DEV_BLOCK, ACC_READ | ACC_WRITE, 8, 0));
        assert!(check(&p, DEV_CHAR, ACC_MKNOD, 1, 1));
    }

    #[test]
    fn the_last_matching_rule_wins() {
        let p = compile(&[rule(true, "a", -1, -1, "rwm"), rule(false, "c", 1, 3, "w")]).unwrap();
        assert!(check(&p, DEV_CHAR, ACC_READ, 1, 3));
        assert!(!check(&p, DEV_CHAR, ACC_WRITE, 1, 3));
        // A deny refuses a request that asks for any of what it denies.
        assert!(!check(&p, DEV_CHAR, ACC_READ | ACC_WRITE, 1, 3));
        assert!(check(&p, DEV_BLOCK, ACC_READ, 8, 0));

        // `a` after specific rules starts over, as in v1.
        let p = compile(&[rule(true, "c", 1, 3, "rwm"), rule(false, "a", 1, 3, "r")]).unwrap();
        assert!(!check(&p, DEV_CHAR, ACC_WRITE, 1, 3));
        assert!(!check(&p, DEV_BLOCK, ACC_MKNOD, 7, 7));
    }

    #[test]
    fn an_allow_must_cover_every_access_asked() {
        let p = compile(&[
            rule(false, "a", -1, -1, "rwm"),
            rule(true, "c", 10, 229, "r"),
            rule(true, "c", 10, 229, "w"),
        ])
        .unwrap();
        assert!(check(&p, DEV_CHAR, ACC_READ, 10, 229));
        assert!(check(&p, DEV_CHAR, ACC_WRITE, 10, 229));
        assert!(!check(&p, DEV_CHAR, ACC_READ | ACC_WRITE, 10, 229));
        assert!(!check(&p, DEV_CHAR, ACC_MKNOD, 10, 229));
    }

    #[test]
    fn wildcards_and_types() {
        let p = compile(&[
            rule(false, "a", -1, -1, "rwm"),
            rule(true, "b", 8, -1, "r"),
            rule(true, "c", -1, 4, "rwm"),
            rule(true, "u", 99, 1, "rwm"),
        ])
        .unwrap();
        assert!(check(&p, DEV_BLOCK, ACC_READ, 8, 16));
        assert!(!check(&p, DEV_BLOCK, ACC_WRITE, 8, 16));
        assert!(!check(&p, DEV_CHAR, ACC_READ, 8, 16));
        assert!(check(&p, DEV_CHAR, ACC_WRITE, 77, 4));
        assert!(!check(&p, DEV_BLOCK, ACC_WRITE, 77, 4));
        assert!(check(&p, DEV_CHAR, ACC_READ, 99, 1));
    }

    /// The compiled program agrees with a direct reading of the rules on every
    /// request over a grid of devices, for rule lists mixing everything.
    #[test]
    fn agrees_with_a_direct_reading_of_the_rules() {
        let lists: Vec<Vec<LinuxDeviceCgroup>> = vec![
            docker_default(),
            vec![
                rule(true, "a", -1, -1, "rwm"),
                rule(false, "b", -1, -1, "rw"),
                rule(true, "b", 7, -1, "r"),
                rule(false, "c", 1, -1, "m"),
            ],
            vec![
                rule(false, "a", -1, -1, "rwm"),
                rule(true, "c", 1, -1, "rw"),
                rule(false, "c", 1, 1, "r"),
                rule(true, "b", -1, 0, "m"),
            ],
        ];
        let reference = |rules: &[LinuxDeviceCgroup], t: u32, acc: u32, ma: u32, mi: u32| {
            let mut verdict = false;
            for d in rules {
                let r = super::rule(d).unwrap();
                let matches_dev = r.typ.is_none_or(|x| x == t)
                    && r.major.is_none_or(|x| x == ma)
                    && r.minor.is_none_or(|x| x == mi);
                let matches_acc = if r.allow {
                    acc & !r.access == 0
                } else {
                    acc & r.access != 0
                };
                if matches_dev && matches_acc {
                    verdict = r.allow;
                }
            }
            verdict
        };
        for rules in &lists {
            let p = compile(rules).unwrap();
            for t in [DEV_BLOCK, DEV_CHAR] {
                for acc in 1..=ACC_ALL {
                    for ma in [0, 1, 5, 7, 8, 136] {
                        for mi in [0, 1, 3, 4] {
                            assert_eq!(
                                check(&p, t, acc, ma, mi),
                                reference(rules, t, acc, ma, mi),
                                "{rules:?} type {t} access {acc} {ma}:{mi}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn bad_rules_are_refused_and_odd_letters_ignored() {
        // Access letters other than r, w and m are ignored, as runc does.
        assert_eq!(
            compile(&[rule(true, "c", 1, 3, "rx")]).unwrap(),
            compile(&[rule(true, "c", 1, 3, "r")]).unwrap()
        );
        assert!(compile(&[rule(true, "p", 1, 3, "r")]).is_err());
        assert!(compile(&[rule(true, "c", 1 << 33, 3, "r")]).is_err());
        assert!(compile(&[rule(true, "c", 1, 3_000_000_000, "r")]).is_err());
    }
}
