//! Parses PTX files with the simulator and lists their kernels, or prints the first parse
//! error: a quick way to see whether a new kernel uses something the simulator lacks.
//!
//! Run with: `cargo run -p ptx-sim --example check_ptx -- file.ptx [more.ptx ...]`
fn main() {
    let mut failed = false;
    for path in std::env::args().skip(1) {
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{path}: {e}");
                failed = true;
                continue;
            }
        };
        match ptx_sim::Device::new().load_ptx(&text) {
            Ok(m) => {
                for k in m.kernel_names() {
                    println!(
                        "{path}: {k}: {} instructions, {} parameter bytes, {} static shared bytes",
                        m.instruction_count(&k).unwrap_or(0),
                        m.params(&k).map_or(0, |p| p.iter().map(|p| p.offset + p.size).max().unwrap_or(0)),
                        m.static_shared_bytes(&k).unwrap_or(0)
                    );
                }
            }
            Err(e) => {
                eprintln!("{path}: {e}");
                failed = true;
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
}
