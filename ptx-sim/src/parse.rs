//! Module structure: directives, module-level variables (`.global`, `.const`, `.shared`,
//! `.extern .shared`), and the `.entry` / `.func` declarations, which are skipped on a first
//! pass and then handed to `body` to build each kernel.
//!
//! Layering of the parser, each module using only those before it:
//! `lex` -> `syntax` -> `qualifiers` -> `decode` -> `body` -> `parse` (this module, the
//! top: `device` loads modules through `parse_module`).

use crate::body::{build_kernel, ModuleShared};
use crate::decode::Sym;
use crate::error::Result;
use crate::lex::{lex, Tok};
use crate::module::Module;
use crate::syntax::{align_up, parse_var, Cursor};
use std::collections::HashMap;
use std::sync::Arc;

/// Where module-level `.global` / `.const` variables go: the loader allocates them.
pub(crate) trait GlobalAllocator {
    /// Allocates `size` bytes aligned to `align`, filled with `init` (zero past its end).
    fn alloc_global(&mut self, size: u64, align: u64, init: &[u8]) -> Result<u64>;
}

/// Parses a module. Module-level `.global` and `.const` variables are allocated through
/// `alloc` so that their addresses can be resolved to immediates while decoding.
pub(crate) fn parse_module(text: &str, alloc: &mut dyn GlobalAllocator) -> Result<Module> {
    let toks = lex(text)?;
    let source: Arc<Vec<String>> = Arc::new(text.lines().map(str::to_string).collect());
    let mut c = Cursor { toks: &toks, pos: 0 };
    let mut module_syms: HashMap<String, Sym> = HashMap::new();
    let mut module_smem: u64 = 0;
    let mut extern_smem_align: u32 = 16;
    let mut kernels = HashMap::new();
    let mut entries: Vec<usize> = Vec::new();
    let mut funcs: HashMap<String, usize> = HashMap::new();
    while let Some(t) = c.peek() {
        let Tok::Word(w) = &t.tok else {
            return Err(c.err("expected a directive"));
        };
        match w.as_str() {
            ".version" | ".target" | ".address_size" | ".file" | ".loc" => {
                c.pos += 1;
                // These statements have no `;`: skip their arguments up to the next directive.
                while let Some(t) = c.peek() {
                    match &t.tok {
                        Tok::Word(w) if w.starts_with('.') => break,
                        _ => c.pos += 1,
                    }
                }
            }
            ".pragma" => c.skip_statement()?,
            ".section" => {
                // Debug sections: skip the braced block.
                c.pos += 1;
                while !c.eat_punct('{') {
                    c.next()?;
                }
                c.skip_to_matching_brace()?;
            }
            ".visible" | ".extern" | ".weak" | ".common" => {
                let is_extern = w == ".extern";
                c.pos += 1;
                if is_extern && c.is_word(".shared") {
                    let v = parse_var(&mut c, true)?;
                    extern_smem_align = extern_smem_align.max(v.align);
                    module_syms.insert(v.name, Sym::DynShared);
                }
            }
            ".global" | ".const" => {
                let v = parse_var(&mut c, true)?;
                let size = v.count.unwrap_or(0).saturating_mul(v.elem_bytes as u64);
                if size > 1 << 30 {
                    return Err(c.err("module variable larger than 1 GiB"));
                }
                let addr = alloc.alloc_global(size, v.align as u64, &v.init)?;
                module_syms.insert(v.name, Sym::Global(addr));
            }
            ".shared" => {
                let v = parse_var(&mut c, true)?;
                match v.count {
                    None => {
                        extern_smem_align = extern_smem_align.max(v.align);
                        module_syms.insert(v.name, Sym::DynShared);
                    }
                    Some(n) => {
                        let off = align_up(module_smem, v.align as u64);
                        module_smem = off.saturating_add(n.saturating_mul(v.elem_bytes as u64));
                        module_syms.insert(v.name, Sym::Shared(off));
                    }
                }
            }
            ".entry" => {
                // Built after the whole module is read: a kernel may call a function that
                // is defined further down.
                c.pos += 1;
                entries.push(c.pos);
                skip_function(&mut c)?;
            }
            ".func" => {
                c.pos += 1;
                let start = c.pos;
                if c.eat_punct('(') {
                    while !c.eat_punct(')') {
                        c.next()?;
                    }
                }
                let name = c.word()?;
                c.pos = start;
                let has_body = skip_function(&mut c)?;
                if has_body {
                    funcs.insert(name, start);
                }
            }
            _ => return Err(c.err("unsupported module-level directive")),
        }
    }
    let shared = ModuleShared { syms: &module_syms, smem: module_smem, extern_smem_align, funcs: &funcs, source: &source };
    for pos in entries {
        c.pos = pos;
        let k = build_kernel(&mut c, &shared)?;
        kernels.insert(k.name.clone(), Arc::new(k));
    }
    Ok(Module { kernels })
}

/// Skips a function header and body (or prototype); true when there was a body.
pub(crate) fn skip_function(c: &mut Cursor) -> Result<bool> {
    let mut parens = 0i32;
    loop {
        match c.next()?.tok {
            Tok::Punct('(') => parens += 1,
            Tok::Punct(')') => parens -= 1,
            Tok::Punct(';') if parens == 0 => return Ok(false),
            Tok::Punct('{') if parens == 0 => {
                c.skip_to_matching_brace()?;
                return Ok(true);
            }
            _ => {}
        }
    }
}
