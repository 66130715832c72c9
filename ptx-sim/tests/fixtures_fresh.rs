//! The checked-in PTX fixtures must be what nvcc makes today from `tests/kernels/*.cu` with
//! the project's flags (those of build/compile.rs in the root crate). Without nvcc the check is skipped with
//! a printed reason; with `PTX_SIM_UPDATE_FIXTURES=1` stale fixtures are rewritten.
use std::path::{Path, PathBuf};
use std::process::Command;

fn find_nvcc(root: &Path) -> Option<PathBuf> {
    let env_path = |v: &str| std::env::var_os(v).filter(|s| !s.is_empty()).map(PathBuf::from);
    let mut c: Vec<PathBuf> = Vec::new();
    c.extend(env_path("NVCC"));
    c.extend(env_path("CUDA_HOME").map(|h| h.join("bin/nvcc")));
    if let Some(p) = std::env::var_os("PATH") {
        c.extend(std::env::split_paths(&p).map(|d| d.join("nvcc")));
    }
    c.push(root.join("../.cuda-toolchain/nvcc/nvidia/cu13/bin/nvcc"));
    c.into_iter().find(|p| p.is_file())
}

fn files(dir: &Path, ext: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn every_kernel_source_has_a_fixture() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert_eq!(files(&root.join("tests/kernels"), "cu"), files(&root.join("tests/fixtures"), "ptx"));
}

#[test]
fn fixtures_match_nvcc_output() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let Some(nvcc) = find_nvcc(root) else {
        eprintln!("skipped: no nvcc found (NVCC, CUDA_HOME, PATH, .cuda-toolchain); fixtures not re-checked");
        return;
    };
    let update = std::env::var_os("PTX_SIM_UPDATE_FIXTURES").is_some_and(|v| v == "1");
    let tmp = std::env::temp_dir().join(format!("ptx-sim-fixtures-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let mut stale = Vec::new();
    for name in files(&root.join("tests/kernels"), "cu") {
        let out = tmp.join(format!("{name}.ptx"));
        let st = Command::new(&nvcc)
            .args(["-ptx", "-O3", "-std=c++17", "--use_fast_math", "--gpu-architecture=compute_80", "-o"])
            .arg(&out)
            .arg(root.join(format!("tests/kernels/{name}.cu")))
            .output()
            .unwrap();
        assert!(st.status.success(), "nvcc failed on {name}.cu:\n{}", String::from_utf8_lossy(&st.stderr));
        let fresh = std::fs::read_to_string(&out).unwrap();
        let fixture = root.join(format!("tests/fixtures/{name}.ptx"));
        if std::fs::read_to_string(&fixture).ok().as_deref() != Some(fresh.as_str()) {
            if update {
                std::fs::write(&fixture, &fresh).unwrap();
            }
            stale.push(name);
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    assert!(
        stale.is_empty() || update,
        "stale PTX fixtures {stale:?}: regenerate with PTX_SIM_UPDATE_FIXTURES=1 cargo test -p ptx-sim --test fixtures_fresh"
    );
}
