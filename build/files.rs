//! File discovery and hashing for the build script's change tracking.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

/// The files directly in `dir` that `keep` accepts, sorted.
pub fn list(dir: &Path, keep: impl Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file() && keep(p)).collect())
        .unwrap_or_default();
    files.sort();
    files
}

/// The project headers `src` includes, transitively: every `#include "..."` resolved
/// against the including file's folder, then `include_dir` (the compiler's `-I`).
/// Angle-bracket and unresolvable includes are the toolkit's, covered by the compiler id.
/// Sorted, so the hash does not depend on discovery order.
pub fn local_includes(src: &Path, include_dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = Vec::new();
    let mut pending = vec![src.to_path_buf()];
    while let Some(file) = pending.pop() {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for line in text.lines() {
            let Some(rest) = line.trim_start().strip_prefix("#include") else { continue };
            let Some(name) = rest.trim().strip_prefix('"').and_then(|r| r.split('"').next()) else { continue };
            let candidates = [file.parent().map(|d| d.join(name)), Some(include_dir.join(name))];
            if let Some(path) = candidates.into_iter().flatten().find(|p| p.is_file()) {
                let path = path.canonicalize().unwrap_or(path);
                if !found.contains(&path) {
                    found.push(path.clone());
                    pending.push(path);
                }
            }
        }
    }
    found.sort();
    found
}

/// A hash of the files' names (relative to `base` when under it, so that a copy of the
/// tree, such as `cargo package`'s, hashes alike) and contents.
pub fn hash(files: &[PathBuf], base: &Path) -> u64 {
    let base = base.canonicalize().unwrap_or_else(|_| base.to_path_buf());
    let mut h = DefaultHasher::new();
    for f in files {
        (f.strip_prefix(&base).unwrap_or(f), std::fs::read(f).unwrap_or_default()).hash(&mut h);
    }
    h.finish()
}
