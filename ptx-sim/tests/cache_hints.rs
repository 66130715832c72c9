//! Cache-eviction and prefetch qualifiers (`.L2::64B/128B/256B`, `.L2::cache_hint` with its
//! cache-policy operand, `.L1::` / `.L2::` eviction priorities, `createpolicy`, `prefetch`)
//! on hand-written PTX: they are hints, so every form must copy exactly what the plain form
//! copies; a qualifier the ISA does not have is a parse error that names it; and a warp's
//! cp.async writes cost shared-memory wavefronts by their bank pattern.
//!
//! Hand-written rather than nvcc output because the forms come from inline assembly (as in
//! CUTLASS) that nvcc passes through unchanged, and the conflict test needs exact control of
//! every shared access in the kernel.
mod common;

use common::Rng;
use ptx_sim::{Args, Device, LaunchConfig, LaunchOptions, SimError};

const HEADER: &str = ".version 9.0\n.target sm_80\n.address_size 64\n\n";

/// Each of 32 threads fills eight 512-byte slots of shared memory (16 bytes per thread per
/// slot) with one cp.async form each, copies the slots out with hinted global stores, loads
/// `src[t]` with four hinted global loads, and counts with a hinted atom and red.
const HINTS_KERNEL: &str = r#"
.visible .entry cp_async_hints(
	.param .u64 src,
	.param .u64 out
)
{
	.reg .pred %p<2>;
	.reg .b32 %r<48>;
	.reg .b64 %rd<16>;
	.shared .align 16 .b8 buf[4096];

	ld.param.u64 %rd1, [src];
	ld.param.u64 %rd2, [out];
	cvta.to.global.u64 %rd1, %rd1;
	cvta.to.global.u64 %rd2, %rd2;
	mov.u32 %r1, %tid.x;
	shl.b32 %r2, %r1, 4;
	mov.u32 %r3, buf;
	add.s32 %r3, %r3, %r2;
	cvt.u64.u32 %rd3, %r2;
	add.s64 %rd4, %rd1, %rd3;
	add.s64 %rd8, %rd2, %rd3;
	rem.u32 %r4, %r1, 17;
	and.b32 %r5, %r1, 1;
	setp.ne.b32 %p1, %r5, 0;
	createpolicy.fractional.L2::evict_last.L2::evict_unchanged.b64 %rd5, 1.0;
	createpolicy.fractional.L2::evict_first.b64 %rd6;
	createpolicy.fractional.L2::evict_normal.b64 %rd7, 0.5;
	prefetch.global.L2::evict_last [%rd4];
	prefetch.global.L1 [%rd4];
	prefetchu.L1 [%rd4];
	cp.async.cg.shared.global.L2::64B [%r3], [%rd4], 16;
	cp.async.cg.shared.global.L2::128B [%r3+512], [%rd4+512], 16;
	cp.async.cg.shared.global.L2::256B [%r3+1024], [%rd4+1024], 16;
	cp.async.ca.shared::cta.global.L2::128B [%r3+1536], [%rd4+1536], 4;
	cp.async.commit_group;
	cp.async.cg.shared.global.L2::cache_hint [%r3+2048], [%rd4+2048], 16, %rd5;
	cp.async.cg.shared.global.L2::cache_hint.L2::128B [%r3+2560], [%rd4+2560], 16, %r4, %rd6;
	cp.async.ca.shared.global.L2::cache_hint [%r3+3072], [%rd4+3072], 8, %p1, %rd7;
	cp.async.ca.shared.global.L2::256B [%r3+3584], [%rd4+3584], 8, 4;
	cp.async.commit_group;
	cp.async.wait_all;
	bar.sync 0;
	ld.shared.v4.u32 {%r10, %r11, %r12, %r13}, [%r3];
	st.global.L1::no_allocate.v4.u32 [%rd8], {%r10, %r11, %r12, %r13};
	ld.shared.v4.u32 {%r10, %r11, %r12, %r13}, [%r3+512];
	st.global.L2::cache_hint.v4.u32 [%rd8+512], {%r10, %r11, %r12, %r13}, %rd5;
	ld.shared.v4.u32 {%r10, %r11, %r12, %r13}, [%r3+1024];
	st.global.L1::evict_last.L2::evict_first.v4.u32 [%rd8+1024], {%r10, %r11, %r12, %r13};
	ld.shared.v4.u32 {%r10, %r11, %r12, %r13}, [%r3+1536];
	st.global.cs.v4.u32 [%rd8+1536], {%r10, %r11, %r12, %r13};
	ld.shared.v4.u32 {%r10, %r11, %r12, %r13}, [%r3+2048];
	st.global.L1::evict_unchanged.L2::cache_hint.v4.u32 [%rd8+2048], {%r10, %r11, %r12, %r13}, %rd6;
	ld.shared.v4.u32 {%r10, %r11, %r12, %r13}, [%r3+2560];
	st.global.v4.u32 [%rd8+2560], {%r10, %r11, %r12, %r13};
	ld.shared.v4.u32 {%r10, %r11, %r12, %r13}, [%r3+3072];
	st.L2::cache_hint.v4.u32 [%rd8+3072], {%r10, %r11, %r12, %r13}, %rd7;
	ld.shared.v4.u32 {%r10, %r11, %r12, %r13}, [%r3+3584];
	st.global.L1::evict_normal.v4.u32 [%rd8+3584], {%r10, %r11, %r12, %r13};
	shl.b32 %r6, %r1, 2;
	cvt.u64.u32 %rd9, %r6;
	add.s64 %rd10, %rd1, %rd9;
	ld.global.nc.L1::no_allocate.L2::256B.u32 %r20, [%rd10];
	ld.global.L1::evict_last.L2::evict_first.L2::64B.u32 %r21, [%rd10];
	ld.global.L2::cache_hint.u32 %r22, [%rd10], %rd5;
	ld.L2::128B.u32 %r23, [%rd10];
	st.global.v4.u32 [%rd8+4096], {%r20, %r21, %r22, %r23};
	atom.global.L2::cache_hint.add.u32 %r24, [%rd2+4608], 1, %rd6;
	red.global.add.L2::cache_hint.u32 [%rd2+4608], 2, %rd7;
	ret;
}
"#;

#[test]
fn every_hint_form_copies_what_the_plain_form_copies() {
    let dev = Device::new();
    let m = dev.load_ptx(&format!("{HEADER}{HINTS_KERNEL}")).unwrap();
    let mut rng = Rng(77);
    let src: Vec<u8> = (0..4096).map(|_| rng.next_u32() as u8).collect();
    let ps = dev.upload(&src).unwrap();
    let out = dev.upload(&vec![0u8; 4612]).unwrap();
    let opts = LaunchOptions { racecheck: true, ..LaunchOptions::default() };
    let c = dev.launch(&m, "cp_async_hints", &LaunchConfig::linear(1, 32), &Args::new().ptr(ps).ptr(out).slices(), &opts).unwrap();
    let o = dev.download::<u8>(out, 4612).unwrap();
    for t in 0..32usize {
        let slot = |i: usize| &o[i * 512 + t * 16..i * 512 + t * 16 + 16];
        let from = |i: usize, n: usize| src[i * 512 + t * 16..i * 512 + t * 16 + n].to_vec();
        // Bytes a copy did not write read as uninitialised shared memory (0xFF).
        let pad = |mut v: Vec<u8>, to: u8| {
            v.resize(16, to);
            v
        };
        assert_eq!(slot(0), from(0, 16), "thread {t}: .L2::64B");
        assert_eq!(slot(1), from(1, 16), "thread {t}: .L2::128B");
        assert_eq!(slot(2), from(2, 16), "thread {t}: .L2::256B");
        assert_eq!(slot(3), pad(from(3, 4), 0xFF), "thread {t}: .ca .shared::cta .L2::128B, 4 bytes");
        assert_eq!(slot(4), from(4, 16), "thread {t}: .L2::cache_hint with its policy");
        assert_eq!(slot(5), pad(from(5, t % 17), 0), "thread {t}: .L2::cache_hint.L2::128B, src-size {}", t % 17);
        let ignored = if t % 2 == 1 { vec![0; 8] } else { from(6, 8) };
        assert_eq!(slot(6), pad(ignored, 0xFF), "thread {t}: .L2::cache_hint with ignore-src");
        assert_eq!(slot(7), pad(pad(from(7, 4), 0)[..8].to_vec(), 0xFF), "thread {t}: .L2::256B, src-size 4 of 8");
        let word = &src[t * 4..t * 4 + 4];
        let loads = &o[4096 + t * 16..4096 + t * 16 + 16];
        assert_eq!(loads, [word, word, word, word].concat(), "thread {t}: hinted loads");
    }
    assert_eq!(u32::from_le_bytes(o[4608..4612].try_into().unwrap()), 32 * 3, "atom + red with .L2::cache_hint");
    assert_eq!(c.cp_async, 8);
    assert_eq!(c.global_atomics, 2);
}

/// A kernel whose only shared accesses are one warp-level cp.async of `size` bytes per lane
/// to `buf + lane * stride`.
fn stride_kernel(size: u32) -> String {
    format!(
        r#"{HEADER}
.visible .entry cp_async_stride(
	.param .u64 src,
	.param .u32 stride
)
{{
	.reg .b32 %r<8>;
	.reg .b64 %rd<8>;
	.shared .align 16 .b8 buf[8192];

	ld.param.u64 %rd1, [src];
	ld.param.u32 %r1, [stride];
	cvta.to.global.u64 %rd1, %rd1;
	mov.u32 %r2, %tid.x;
	mul.lo.s32 %r3, %r2, %r1;
	mov.u32 %r4, buf;
	add.s32 %r4, %r4, %r3;
	mul.wide.u32 %rd2, %r2, {size};
	add.s64 %rd3, %rd1, %rd2;
	cp.async.ca.shared.global.L2::128B [%r4], [%rd3], {size};
	cp.async.commit_group;
	cp.async.wait_group 0;
	ret;
}}
"#
    )
}

#[test]
fn conflicting_cp_async_destinations_cost_more_wavefronts() {
    let dev = Device::new();
    let src = dev.upload(&[7u8; 512]).unwrap();
    let run = |size: u32, stride: u32| {
        let m = dev.load_ptx(&stride_kernel(size)).unwrap();
        let c = dev.launch(&m, "cp_async_stride", &LaunchConfig::linear(1, 32), &Args::new().ptr(src).val(stride).slices(), &LaunchOptions::default()).unwrap();
        assert_eq!((c.cp_async, c.shared_stores, c.shared_store_bytes, c.shared_loads), (1, 1, 32 * size as u64, 0));
        (c.shared_wavefronts, c.shared_bank_conflicts)
    };
    // 16 bytes per lane: 512 bytes, at least 4 wavefronts (4 phases of 8 lanes).
    let packed = run(16, 16);
    assert_eq!(packed, (4, 0));
    // 128-byte rows: the 8 lanes of each phase all land in banks 0-3, 8 ways.
    let rows = run(16, 128);
    assert_eq!(rows, (32, 28));
    assert!(rows.0 > packed.0);
    // 256 bytes apart: lanes l and l+4 of a phase share banks, 2 ways.
    assert_eq!(run(16, 32), (8, 4));
    // 8 and 4 bytes per lane: 2 phases and 1 phase when packed; a 128-byte stride puts every
    // lane of the warp in bank 0 for the 4-byte copies.
    assert_eq!(run(8, 8), (2, 0));
    assert_eq!(run(4, 4), (1, 0));
    assert_eq!(run(4, 128), (32, 31));
}

/// The line of `instr` in `one_instruction`'s text.
const LINE: u32 = 14;

/// A kernel of one instruction `instr` (at line `LINE`) between setup and `ret`.
fn one_instruction(instr: &str) -> String {
    let text = format!(
        "{HEADER}.visible .entry k(\n\t.param .u64 src\n)\n{{\n\t.reg .pred %p<2>;\n\t.reg .b32 %r<4>;\n\t.reg .b64 %rd<4>;\n\t.shared .align 16 .b8 buf[64];\n\tld.param.u64 %rd1, [src];\n\t{instr}\n\tret;\n}}\n"
    );
    assert_eq!(text.lines().nth(LINE as usize - 1), Some(format!("\t{instr}").as_str()));
    text
}

fn parse_error(instr: &str) -> (u32, String, String) {
    match Device::new().load_ptx(&one_instruction(instr)).unwrap_err() {
        SimError::Parse { line, token, message } => (line, token, message),
        other => panic!("{instr}: expected a parse error, got {other}"),
    }
}

#[test]
fn an_unknown_qualifier_is_named_at_its_line() {
    let (line, token, message) = parse_error("cp.async.cg.shared.global.L2::512B [%r1], [%rd1], 16;");
    assert_eq!(line, LINE);
    assert_eq!(token, "cp.async.cg.shared.global.L2::512B");
    assert_eq!(message, "unknown qualifier .L2::512B on cp.async");
    let e = Device::new().load_ptx(&one_instruction("cp.async.cg.shared.global.L2::512B [%r1], [%rd1], 16;")).unwrap_err();
    assert_eq!(e.to_string(), "PTX line 14: unknown qualifier .L2::512B on cp.async (at `cp.async.cg.shared.global.L2::512B`)");
    // Real qualifiers in the wrong place, and typos, on the other instructions with hints.
    let cases = [
        ("cp.async.cg.shared.global.L1::evict_last [%r1], [%rd1], 16;", "unknown qualifier .L1::evict_last on cp.async"),
        ("ld.global.L2::32B.u32 %r1, [%rd1];", "unknown qualifier .L2::32B on ld"),
        ("ld.global.L1::evict_sometimes.u32 %r1, [%rd1];", "unknown qualifier .L1::evict_sometimes on ld"),
        ("st.global.L2::128B.u32 [%rd1], %r1;", "unknown qualifier .L2::128B on st"),
        ("prefetch.global.L2::evict_first [%rd1];", "unknown qualifier .L2::evict_first on prefetch"),
        ("createpolicy.fractional.L2::evict_soon.b64 %rd2, 1.0;", "unknown qualifier .L2::evict_soon on createpolicy"),
        ("ld.global.L2::64B.L2::256B.u32 %r1, [%rd1];", "conflicting qualifiers .L2::64B and .L2::256B on ld"),
        ("mov.b32.L2::cache_hint %r1, 0;", "unsupported qualifier .L2::cache_hint on mov"),
    ];
    for (instr, want) in cases {
        assert_eq!(parse_error(instr), (LINE, instr.split(' ').next().unwrap().to_string(), want.to_string()), "{instr}");
    }
}

#[test]
fn cache_policy_operands_are_counted() {
    let cases = [
        ("cp.async.cg.shared.global.L2::cache_hint [%r1], [%rd1], 16;", ".L2::cache_hint needs a cache-policy operand"),
        ("cp.async.cg.shared.global [%r1], [%rd1], 16, %r2, %rd2;", "an extra (cache-policy) operand needs the .L2::cache_hint qualifier"),
        ("cp.async.cg.shared.global.L2::cache_hint [%r1], [%rd1], 16, %r2, %rd2, %rd3;", "cp.async takes at most 5 operands, found 6"),
        ("ld.global.L2::cache_hint.u32 %r1, [%rd1];", ".L2::cache_hint needs a cache-policy operand"),
        ("ld.global.u32 %r1, [%rd1], %rd2;", "an extra (cache-policy) operand needs the .L2::cache_hint qualifier"),
        ("st.global.L2::cache_hint.u32 [%rd1], %r1;", ".L2::cache_hint needs a cache-policy operand"),
        ("red.global.add.L2::cache_hint.u32 [%rd1], 1;", ".L2::cache_hint needs a cache-policy operand"),
        // The hints are for global memory only.
        ("ld.shared.L2::cache_hint.u32 %r1, [%r2], %rd2;", ".L2::cache_hint needs .global or generic addressing, not .shared"),
        ("ld.shared.L2::128B.u32 %r1, [%r2];", ".L2::128B needs .global or generic addressing, not .shared"),
        // And the rest of cp.async's own syntax.
        ("cp.async.cg.shared.global.L2::128B [%r1], [%rd1], 8;", "cp.async.cg copies 16 bytes only"),
        ("cp.async.shared.global [%r1], [%rd1], 16;", "cp.async needs one of .ca and .cg"),
        ("createpolicy.fractional.L2::evict_last.b64 %rd2, 1.5;", "the createpolicy fraction 1.5 is outside (0, 1]"),
    ];
    for (instr, want) in cases {
        let (line, _, message) = parse_error(instr);
        assert_eq!((line, message.as_str()), (LINE, want), "{instr}");
    }
    // The forms the ISA allows all load.
    for ok in [
        "cp.async.ca.shared.global.L2::cache_hint [%r1], [%rd1], 4, %rd2;",
        "cp.async.cg.shared.global.L2::cache_hint [%r0], [%rd1], 16, %p1, %rd2;",
        "cp.async.cg.shared.global.L2::128B [%r1], [%rd1], 16, %r2;",
        "createpolicy.cvt.L2.b64 %rd2, %rd3;",
        "ld.global.nc.L1::no_allocate.L2::evict_last.L2::cache_hint.L2::256B.v4.u32 {%r0, %r1, %r2, %r3}, [%rd1], %rd2;",
        "st.global.L1::no_allocate.L2::evict_normal.L2::cache_hint.v2.u32 [%rd1], {%r0, %r1}, %rd2;",
    ] {
        Device::new().load_ptx(&one_instruction(ok)).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
}
