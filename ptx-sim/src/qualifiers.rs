//! Qualifier tables of the instructions that take cache hints (`ld`, `ldu`, `st`,
//! `cp.async`, `prefetch`, `prefetchu`) and of `createpolicy`, from the PTX ISA syntax of
//! each. Every qualifier of such an instruction is checked here, so a misspelt or
//! unsupported one is named in the parse error (`unknown qualifier .L2::512B on cp.async`)
//! instead of being ignored or failing somewhere unrelated; the cache qualifiers are
//! decoded into an `ir::CacheHint`.
//!
//! Other instructions keep their permissive modifier handling in `decode`, except that a
//! `::` sub-qualifier they do not know is refused (`check_subqualifiers`): before `lex` kept
//! `a::b` in one word those never reached the decoder at all.
//!
//! Used by `decode` only; layering of the parser: `lex` -> `syntax` -> `qualifiers` ->
//! `decode` -> `body` -> `parse`.

use crate::ir::{CacheHint, Evict, Ty};

/// What one instruction accepts after its base name.
pub(crate) struct Family {
    /// The instruction as error messages name it.
    name: &'static str,
    /// Qualifiers without a cache meaning: state spaces, cache operators, memory
    /// semantics and scopes, vector widths (type suffixes are always accepted when `types`).
    plain: &'static [&'static str],
    types: bool,
    /// `.L1::` eviction priorities it takes (the part after `L1::`).
    l1: &'static [&'static str],
    /// `.L2::` eviction priorities it takes.
    l2: &'static [&'static str],
    /// Whether `.L2::64B` / `.L2::128B` / `.L2::256B` are allowed.
    prefetch_size: bool,
    /// Whether `.L2::cache_hint` (and with it a cache-policy operand) is allowed.
    cache_hint: bool,
}

const L1_PRIORITIES: &[&str] = &["evict_normal", "evict_unchanged", "evict_first", "evict_last", "no_allocate"];
const L2_PRIORITIES: &[&str] = &["evict_normal", "evict_first", "evict_last"];

/// `ld` (PTX ISA "ld" and "ld.global.nc"). `.v8` and `.b128` are listed so that `decode`
/// reports them as unsupported rather than this as unknown.
pub(crate) const LD: Family = Family {
    name: "ld",
    plain: &[
        "weak", "volatile", "relaxed", "acquire", "mmio", "cta", "cluster", "gpu", "sys",
        "const", "global", "local", "param", "param::entry", "param::func", "shared", "shared::cta", "shared::cluster",
        "nc", "ca", "cg", "cs", "lu", "cv", "v2", "v4", "v8", "b128",
    ],
    types: true,
    l1: L1_PRIORITIES,
    l2: L2_PRIORITIES,
    prefetch_size: true,
    cache_hint: true,
};

/// `ldu{.global}{.vec}.type`: no cache qualifiers.
pub(crate) const LDU: Family = Family { name: "ldu", plain: &["global", "v2", "v4"], types: true, l1: &[], l2: &[], prefetch_size: false, cache_hint: false };

/// `st`: eviction priorities and cache_hint, but no prefetch size.
pub(crate) const ST: Family = Family {
    name: "st",
    plain: &[
        "weak", "volatile", "relaxed", "release", "mmio", "cta", "cluster", "gpu", "sys",
        "global", "local", "param", "param::func", "shared", "shared::cta", "shared::cluster",
        "wb", "cg", "cs", "wt", "v2", "v4", "v8", "b128",
    ],
    types: true,
    l1: L1_PRIORITIES,
    l2: L2_PRIORITIES,
    prefetch_size: false,
    cache_hint: true,
};

/// `cp.async.{ca,cg}.shared{::cta}.global{.L2::cache_hint}{.L2::64B|128B|256B}`.
pub(crate) const CP_ASYNC: Family = Family {
    name: "cp.async",
    plain: &["async", "ca", "cg", "shared", "shared::cta", "global"],
    types: false,
    l1: &[],
    l2: &[],
    prefetch_size: true,
    cache_hint: true,
};

/// `prefetch{.global,.local}.{L1,L2}`, `prefetch.global.L2::evict_{last,normal}` and the
/// tensormap form (all no-ops here).
pub(crate) const PREFETCH: Family = Family {
    name: "prefetch",
    plain: &["global", "local", "L1", "L2", "const", "param", "tensormap"],
    types: false,
    l1: &[],
    l2: &["evict_last", "evict_normal"],
    prefetch_size: false,
    cache_hint: false,
};

/// `prefetchu.L1`.
pub(crate) const PREFETCHU: Family = Family { name: "prefetchu", plain: &["L1"], types: false, l1: &[], l2: &[], prefetch_size: false, cache_hint: false };

fn evict_of(s: &str) -> Option<Evict> {
    Some(match s {
        "evict_normal" => Evict::Normal,
        "evict_unchanged" => Evict::Unchanged,
        "evict_first" => Evict::First,
        "evict_last" => Evict::Last,
        "no_allocate" => Evict::NoAllocate,
        _ => return None,
    })
}

fn unknown(p: &str, name: &str) -> String {
    format!("unknown qualifier .{p} on {name}")
}

/// Sets a hint slot once; a second qualifier for the same slot is a conflict, not an override.
fn set_once<T>(slot: &mut Option<(T, String)>, v: T, p: &str, name: &str) -> Result<(), String> {
    if let Some((_, prev)) = slot {
        return Err(format!("conflicting qualifiers .{prev} and .{p} on {name}"));
    }
    *slot = Some((v, p.to_string()));
    Ok(())
}

/// Checks every qualifier of an instruction of family `f` (`parts`: the opcode after its base
/// name, split at dots) and decodes its cache qualifiers. The second result says whether
/// `.L2::cache_hint` was given, so the caller must take a cache-policy operand (and put it
/// in the hint's `policy`).
pub(crate) fn check(f: &Family, parts: &[&str]) -> Result<(CacheHint, bool), String> {
    let (mut l1, mut l2, mut size, mut hint) = (None, None, None, None);
    for &p in parts {
        if f.plain.contains(&p) || (f.types && Ty::parse(p).is_some()) {
            continue;
        }
        if let Some(e) = p.strip_prefix("L1::").filter(|s| f.l1.contains(s)).and_then(evict_of) {
            set_once(&mut l1, e, p, f.name)?;
        } else if let Some(e) = p.strip_prefix("L2::").filter(|s| f.l2.contains(s)).and_then(evict_of) {
            set_once(&mut l2, e, p, f.name)?;
        } else if let Some(b) = prefetch_size(p).filter(|_| f.prefetch_size) {
            set_once(&mut size, b, p, f.name)?;
        } else if p == "L2::cache_hint" && f.cache_hint {
            set_once(&mut hint, (), p, f.name)?;
        } else {
            return Err(unknown(p, f.name));
        }
    }
    let first = |x: Option<(Evict, String)>| x.map(|x| x.0);
    let hint_out = CacheHint { l1: first(l1), l2: first(l2), prefetch_bytes: size.map_or(0, |x| x.0), policy: None };
    Ok((hint_out, hint.is_some()))
}

fn prefetch_size(p: &str) -> Option<u16> {
    match p {
        "L2::64B" => Some(64),
        "L2::128B" => Some(128),
        "L2::256B" => Some(256),
        _ => None,
    }
}

/// For instructions without a table above: a `::` sub-qualifier must be one of the state
/// space forms, which mean the same as the plain space here (a launch is one CTA per
/// cluster), or one of `extra`.
pub(crate) fn check_subqualifiers(name: &str, parts: &[&str], extra: &[&str]) -> Result<(), String> {
    const SPACES: &[&str] = &["shared::cta", "shared::cluster", "param::entry", "param::func"];
    match parts.iter().find(|p| p.contains("::") && !SPACES.contains(p) && !extra.contains(p)) {
        Some(p) => Err(format!("unsupported qualifier .{p} on {name}")),
        None => Ok(()),
    }
}

/// A decoded `createpolicy`.
#[derive(Debug, PartialEq)]
pub(crate) enum CreatePolicy {
    /// `createpolicy.fractional.L2::<primary>{.L2::<secondary>}.b64 d{, fraction}`.
    Fractional { primary: Evict, secondary: Option<Evict> },
    /// `createpolicy.cvt.L2.b64 d, access-property`: converts a CUDA access property.
    Cvt,
}

/// Parses the qualifiers of `createpolicy` (PTX ISA "createpolicy"). The range form is
/// refused: it needs an address range the simulator would have to keep per policy.
pub(crate) fn createpolicy(parts: &[&str]) -> Result<CreatePolicy, String> {
    let name = "createpolicy";
    match parts {
        ["cvt", "L2", "b64"] => Ok(CreatePolicy::Cvt),
        ["range", ..] => Err("createpolicy.range is not supported".into()),
        ["fractional", rest @ ..] => {
            let prio = |p: &str, allowed: &[&str]| match p.strip_prefix("L2::") {
                Some(s) if allowed.contains(&s) => Ok(evict_of(s)),
                _ => Err(unknown(p, name)),
            };
            let (primary, secondary) = match rest {
                [p, "b64"] => (prio(p, &["evict_last", "evict_normal", "evict_first", "evict_unchanged"])?, None),
                [p, s, "b64"] => (prio(p, &["evict_last", "evict_normal", "evict_first", "evict_unchanged"])?, prio(s, &["evict_first", "evict_unchanged"])?),
                _ => return Err("createpolicy.fractional takes .L2::<primary>{.L2::<secondary>}.b64".into()),
            };
            Ok(CreatePolicy::Fractional { primary: primary.unwrap_or(Evict::Normal), secondary })
        }
        [p, ..] => Err(unknown(p, name)),
        [] => Err("createpolicy needs .fractional or .cvt".into()),
    }
}

/// The opaque 64-bit policy of a fractional `createpolicy`: the priorities and the fraction
/// packed so that different policies differ; nothing reads it but `.L2::cache_hint` operands,
/// which execution ignores.
pub(crate) fn fractional_policy(primary: Evict, secondary: Option<Evict>, fraction: f32) -> u64 {
    let code = |e: Option<Evict>| e.map_or(0u64, |e| e as u64 + 1);
    (fraction.to_bits() as u64) << 32 | code(secondary) << 8 | code(Some(primary))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(opcode: &str) -> Vec<&str> {
        opcode.split('.').skip(1).collect()
    }

    #[test]
    fn cache_qualifiers_decode() {
        let (h, policy) = check(&CP_ASYNC, &parts("cp.async.cg.shared.global.L2::128B")).unwrap();
        assert_eq!((h.prefetch_bytes, policy), (128, false));
        let (h, policy) = check(&CP_ASYNC, &parts("cp.async.ca.shared::cta.global.L2::cache_hint.L2::256B")).unwrap();
        assert_eq!((h.prefetch_bytes, policy), (256, true));
        let (h, _) = check(&LD, &parts("ld.global.nc.L1::no_allocate.L2::evict_last.L2::64B.v4.u32")).unwrap();
        assert_eq!((h.l1, h.l2, h.prefetch_bytes), (Some(Evict::NoAllocate), Some(Evict::Last), 64));
        let (h, policy) = check(&ST, &parts("st.global.L1::evict_first.L2::cache_hint.b32")).unwrap();
        assert_eq!((h.l1, policy), (Some(Evict::First), true));
        check(&PREFETCH, &parts("prefetch.global.L2::evict_last")).unwrap();
        check(&LD, &parts("ld.relaxed.gpu.global.u32")).unwrap();
    }

    #[test]
    fn unknown_and_misplaced_qualifiers_are_named() {
        let e = |f: &Family, op: &str| check(f, &parts(op)).unwrap_err();
        assert_eq!(e(&CP_ASYNC, "cp.async.cg.shared.global.L2::512B"), "unknown qualifier .L2::512B on cp.async");
        // Real qualifiers, but not of this instruction.
        assert_eq!(e(&CP_ASYNC, "cp.async.cg.shared.global.L1::evict_last"), "unknown qualifier .L1::evict_last on cp.async");
        assert_eq!(e(&ST, "st.global.L2::128B.u32"), "unknown qualifier .L2::128B on st");
        assert_eq!(e(&LD, "ld.global.L2::evict_unchanged.u32"), "unknown qualifier .L2::evict_unchanged on ld");
        assert_eq!(e(&PREFETCH, "prefetch.global.L2::evict_first"), "unknown qualifier .L2::evict_first on prefetch");
        assert_eq!(e(&LD, "ld.global.frob.u32"), "unknown qualifier .frob on ld");
        assert_eq!(e(&LD, "ld.global.L2::64B.L2::128B.u32"), "conflicting qualifiers .L2::64B and .L2::128B on ld");
        assert_eq!(check_subqualifiers("atom", &parts("atom.global.L2::cache_hint.add.u32"), &[]).unwrap_err(), "unsupported qualifier .L2::cache_hint on atom");
        check_subqualifiers("ldmatrix", &parts("ldmatrix.sync.aligned.m8n8.x4.shared::cta.b16"), &[]).unwrap();
    }

    #[test]
    fn createpolicy_forms() {
        assert_eq!(createpolicy(&parts("createpolicy.fractional.L2::evict_last.b64")), Ok(CreatePolicy::Fractional { primary: Evict::Last, secondary: None }));
        assert_eq!(
            createpolicy(&parts("createpolicy.fractional.L2::evict_last.L2::evict_unchanged.b64")),
            Ok(CreatePolicy::Fractional { primary: Evict::Last, secondary: Some(Evict::Unchanged) })
        );
        assert_eq!(createpolicy(&parts("createpolicy.cvt.L2.b64")), Ok(CreatePolicy::Cvt));
        assert_eq!(createpolicy(&parts("createpolicy.fractional.L2::evict_last.L2::evict_last.b64")).unwrap_err(), "unknown qualifier .L2::evict_last on createpolicy");
        assert!(createpolicy(&parts("createpolicy.range.L2::evict_last.b64")).is_err());
        assert_ne!(fractional_policy(Evict::Last, None, 1.0), fractional_policy(Evict::Last, Some(Evict::Unchanged), 1.0));
    }
}
