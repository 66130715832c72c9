//! Gives the cdylib the soname `libcuda.so`: cudarc asks the loader for `libcuda.so` before
//! any other name, and the loader answers a request by soname with a library already loaded
//! (`ptx_sim_driver::install` loads this one by path), so cudarc binds the simulated driver.
fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libcuda.so");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
