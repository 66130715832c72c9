//! Writes `kernels_embedded.rs`, which src/ptx.rs includes: the PTX modules, the ptxas
//! report and, for a build without kernels, the reason.

use std::fmt::Write as _;
use std::path::Path;

use crate::compile::Compiled;

pub fn write(out: &Path, compiled: &[Compiled], report: Option<&Path>, reason: &str) {
    let mut code = String::from("static EMBEDDED_MODULES: &[KernelModule] = &[\n");
    for c in compiled {
        let _ = writeln!(
            code,
            "    KernelModule {{ name: {:?}, target: Target {{ arch: \"sm_{}\", compute_capability: {} }}, compiler: {:?}, ptx: include_str!({:?}) }},",
            c.module,
            c.cc,
            c.cc,
            c.compiler,
            c.ptx_path.display().to_string()
        );
    }
    code.push_str("];\n");
    let _ = match report {
        Some(p) => writeln!(code, "static RESOURCE_REPORT: Option<&str> = Some(include_str!({:?}));", p.display().to_string()),
        None => writeln!(code, "static RESOURCE_REPORT: Option<&str> = None;"),
    };
    let _ = writeln!(code, "const NO_KERNELS_REASON: &str = {reason:?};");
    std::fs::write(out.join("kernels_embedded.rs"), code).expect("writing kernels_embedded.rs into OUT_DIR");
}
