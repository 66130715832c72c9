//! Prints the ptxas resource report that build/main.rs recorded (registers, spills, stack and
//! shared memory per kernel and target).

fn main() {
    match sparse_attn::ptx::resource_report() {
        Some(report) => print!("{report}"),
        None => {
            eprintln!("this build carries no kernels: no CUDA compiler was found at build time");
            std::process::exit(1);
        }
    }
}
