//! Builds one kernel: its parameters, the memory layout of its body, its decoded
//! instructions, and every device function it calls (directly or not), appended to the same
//! instruction array with registers and local memory of their own.
//!
//! Calls pass arguments through `.param` variables (PTX ISA 5.1.6.2, "Parameter State Space
//! in functions"). Here every such variable, in the caller's call sequence and in the
//! callee's signature, is a slot in the thread's local memory: a call copies the argument
//! slots into the callee's parameter slots and a return copies the callee's return slots
//! back. Because each function has one fixed set of registers and slots, recursion is
//! rejected when the module is loaded.
//!
//! Statements of a body are handled here (`.reg` declarations, body-scope variables, labels,
//! guards, calls); each instruction's operands are read with `syntax` and decoded by
//! `decode`. Layering of the parser, each module using only those before it:
//! `lex` -> `syntax` -> `qualifiers` -> `decode` -> `body` -> `parse` (which finds the
//! entries and calls `build_kernel` for each).

use crate::decode::{decode, Ctx, Sym};
use crate::error::{Result, SimError};
use crate::ir::{Instr, Op};
use crate::lex::Tok;
use crate::module::{Kernel, ParamInfo};
use crate::syntax::{align_up, parse_operands, parse_var, perr, Cursor, Opnd};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// What every kernel of a module shares.
pub(crate) struct ModuleShared<'m> {
    pub syms: &'m HashMap<String, Sym>,
    pub smem: u64,
    pub extern_smem_align: u32,
    /// Token index just after `.func` for every function with a body.
    pub funcs: &'m HashMap<String, usize>,
    pub source: &'m Arc<Vec<String>>,
}

/// A call site waiting for its callee's address and parameter slots.
struct CallSite {
    pc: usize,
    callee: String,
    /// Argument slots (offset, size) in the caller, in order.
    args: Vec<(u32, u32)>,
    /// Return slots in the caller.
    rets: Vec<(u32, u32)>,
    line: u32,
}

/// A decoded function: where its code starts and its parameter and return slots.
struct FuncInfo {
    start: u32,
    params: Vec<(u32, u32)>,
    rets: Vec<(u32, u32)>,
}

struct Builder<'m, 't> {
    m: &'m ModuleShared<'m>,
    c: &'m mut Cursor<'t>,
    ctx: Ctx,
    code: Vec<Instr>,
    smem: u64,
    local: u64,
    dyn_align: u32,
    calls: Vec<CallSite>,
    /// Callees of each decoded function ("" is the kernel itself), for the recursion check.
    edges: HashMap<String, Vec<(String, u32)>>,
}

/// Parses the entry whose name is at the cursor and everything it calls.
pub(crate) fn build_kernel(c: &mut Cursor, m: &ModuleShared) -> Result<Kernel> {
    let name = c.word()?;
    let mut syms = m.syms.clone();
    let mut params = Vec::new();
    let mut param_bytes = 0u64;
    if c.eat_punct('(') {
        while !c.eat_punct(')') {
            if !c.is_word(".param") {
                return Err(c.err("expected .param"));
            }
            let v = parse_var(c, false)?;
            let size = v.count.ok_or_else(|| c.err("unsized parameter"))?.saturating_mul(v.elem_bytes as u64);
            let off = align_up(param_bytes, v.align as u64);
            param_bytes = off.saturating_add(size);
            if param_bytes > 32 * 1024 {
                return Err(c.err("parameters exceed 32 KiB"));
            }
            syms.insert(v.name.clone(), Sym::Param(off));
            params.push(ParamInfo { name: v.name, size: size as u32, align: v.align, offset: off as u32 });
            c.eat_punct(',');
        }
    }
    skip_perf_directives(c);
    if c.is_punct(';') {
        return Err(c.err("entry declaration without a body"));
    }
    let mut b = Builder {
        m,
        c,
        ctx: Ctx { syms, scopes: vec![HashMap::new()], nregs: 0, preds: Default::default() },
        code: Vec::new(),
        smem: m.smem,
        local: 0,
        dyn_align: m.extern_smem_align,
        calls: Vec::new(),
        edges: HashMap::new(),
    };
    b.body("", false)?;
    b.link_calls()?;
    let static_smem = u32::try_from(b.smem).map_err(|_| perr(0, &name, "static shared memory too large"))?;
    Ok(Kernel {
        name,
        params,
        param_bytes: param_bytes as u32,
        code: b.code,
        nregs: b.ctx.nregs.max(1),
        static_smem,
        dyn_smem_align: b.dyn_align,
        local_bytes: u32::try_from(b.local).map_err(|_| perr(0, "", "local memory too large"))?,
        source: m.source.clone(),
    })
}

/// `.maxntid 128, 1, 1`, `.minnctapersm 1`, `.noreturn` and the like.
fn skip_perf_directives(c: &mut Cursor) {
    while let Some(Tok::Word(w)) = c.peek_tok() {
        if !w.starts_with('.') {
            break;
        }
        c.pos += 1;
        while matches!(c.peek_tok(), Some(Tok::Int(_)) | Some(Tok::Punct(','))) {
            c.pos += 1;
        }
    }
}

/// Register slots one kernel may declare (each costs 256 bytes per warp).
const MAX_REGS: u32 = 1 << 16;

/// `.reg .type name<N>, name2, ...;` (the type may be preceded by `.v2`/`.v4`).
fn parse_reg_decl(c: &mut Cursor, ctx: &mut Ctx) -> Result<()> {
    let mut vec_n = 1u32;
    let ty = loop {
        let w = c.word()?;
        if let Some(n) = w.strip_prefix(".v").and_then(|n| n.parse::<u32>().ok()) {
            vec_n = n;
            continue;
        }
        match crate::ir::Ty::parse(w.trim_start_matches('.')) {
            Some(t) => break t,
            None => return Err(c.err("unknown register type")),
        }
    };
    if vec_n != 1 {
        return Err(c.err("vector registers are not supported"));
    }
    loop {
        let name = c.word()?;
        if c.eat_punct('<') {
            let n = c.int()?;
            if n > MAX_REGS as u64 || ctx.nregs as u64 + n > MAX_REGS as u64 {
                return Err(c.err("too many registers"));
            }
            c.expect_punct('>')?;
            let first = ctx.nregs;
            ctx.declare_range(&name, n as u32);
            if ty == crate::ir::Ty::Pred {
                ctx.preds.extend(first..ctx.nregs);
            }
        } else {
            if ctx.nregs >= MAX_REGS {
                return Err(c.err("too many registers"));
            }
            if ty == crate::ir::Ty::Pred {
                ctx.preds.insert(ctx.nregs);
            }
            ctx.declare(&name);
        }
        if !c.eat_punct(',') {
            break;
        }
    }
    c.expect_punct(';')
}

impl Builder<'_, '_> {
    /// Allocates `size` bytes of per-thread local memory.
    fn local_slot(&mut self, size: u64, align: u64) -> u64 {
        let off = align_up(self.local, align.max(1));
        self.local = off.saturating_add(size);
        off
    }

    /// Lays out the `.shared` and `.local` variables of the body starting at the cursor's
    /// `{`, leaving the cursor where it was.
    fn prescan(&mut self) -> Result<()> {
        let start = self.c.pos;
        self.c.expect_punct('{')?;
        let mut depth = 1;
        let mut at_statement_start = true;
        while depth > 0 {
            let t = self.c.next()?;
            match &t.tok {
                Tok::Punct('{') => {
                    depth += 1;
                    at_statement_start = true;
                }
                Tok::Punct('}') => {
                    depth -= 1;
                    at_statement_start = true;
                }
                Tok::Punct(';') | Tok::Punct(':') => at_statement_start = true,
                Tok::Word(w) if at_statement_start && (w == ".shared" || w == ".local") => {
                    self.c.pos -= 1;
                    let v = parse_var(self.c, true)?;
                    if v.space == ".shared" {
                        match v.count {
                            None => {
                                self.dyn_align = self.dyn_align.max(v.align);
                                self.ctx.syms.insert(v.name, Sym::DynShared);
                            }
                            Some(n) => {
                                let off = align_up(self.smem, v.align as u64);
                                self.smem = off.saturating_add(n.saturating_mul(v.elem_bytes as u64));
                                self.ctx.syms.insert(v.name, Sym::Shared(off));
                            }
                        }
                    } else {
                        let size = v.count.unwrap_or(0).saturating_mul(v.elem_bytes as u64);
                        let off = self.local_slot(size, v.align as u64);
                        self.ctx.syms.insert(v.name, Sym::Local(off));
                    }
                    at_statement_start = true;
                }
                _ => at_statement_start = false,
            }
        }
        self.c.pos = start;
        Ok(())
    }

    /// Decodes the body at the cursor (`{ ... }`) for function `fname` ("" for the kernel).
    fn body(&mut self, fname: &str, in_func: bool) -> Result<()> {
        let smem_before = self.smem;
        self.prescan()?;
        // Dynamic shared symbols resolve once the static layout of this body is known; a
        // callee that declares more static shared memory later is rejected below.
        let dyn_base = align_up(self.smem, self.dyn_align as u64);
        for s in self.ctx.syms.values_mut() {
            if *s == Sym::DynShared {
                *s = Sym::Shared(dyn_base);
            }
        }
        self.c.expect_punct('{')?;
        let mut labels: HashMap<String, u32> = HashMap::new();
        let mut fixups: Vec<(usize, String, u32)> = Vec::new();
        let mut depth = 1;
        while depth > 0 {
            let t = self.c.peek().ok_or_else(|| self.c.err_eof())?;
            let line = t.line;
            match &t.tok {
                Tok::Punct('{') => {
                    self.c.pos += 1;
                    depth += 1;
                    self.ctx.scopes.push(HashMap::new());
                }
                Tok::Punct('}') => {
                    self.c.pos += 1;
                    depth -= 1;
                    self.ctx.scopes.pop();
                }
                Tok::Word(w) if w == ".reg" => {
                    self.c.pos += 1;
                    parse_reg_decl(self.c, &mut self.ctx)?;
                }
                Tok::Word(w) if w == ".shared" || w == ".local" => {
                    parse_var(self.c, true)?;
                }
                Tok::Word(w) if w == ".param" => {
                    // A call-sequence argument or return slot.
                    let v = parse_var(self.c, true)?;
                    let size = v.count.unwrap_or(0).saturating_mul(v.elem_bytes as u64);
                    let off = self.local_slot(size, v.align as u64);
                    self.ctx.syms.insert(v.name, Sym::CallParam(off, size as u32));
                }
                Tok::Word(w) if w == ".pragma" || w == ".loc" || w == ".maxnreg" => {
                    if w == ".loc" {
                        self.c.pos += 1;
                        while matches!(self.c.peek_tok(), Some(Tok::Int(_)) | Some(Tok::Punct(','))) {
                            self.c.pos += 1;
                        }
                    } else {
                        self.c.skip_statement()?;
                    }
                }
                Tok::Word(w) if self.c.toks.get(self.c.pos + 1).map(|t| &t.tok) == Some(&Tok::Punct(':')) => {
                    labels.insert(w.clone(), self.code.len() as u32);
                    self.c.pos += 2;
                }
                Tok::Punct('@') | Tok::Word(_) => {
                    let guard = self.guard()?;
                    let opcode = self.c.word()?;
                    let guard = match guard {
                        None => None,
                        Some((name, neg)) => Some((self.ctx.reg(&name).ok_or_else(|| perr(line, &name, "unknown predicate register"))?, neg)),
                    };
                    if opcode == "call" || opcode.starts_with("call.") {
                        self.call(fname, guard, line)?;
                        continue;
                    }
                    let operands = parse_operands(self.c)?;
                    let op = if opcode == "bra" || opcode.starts_with("bra.") {
                        let target = match operands.as_slice() {
                            [Opnd::Name(l)] => l.clone(),
                            _ => return Err(perr(line, &opcode, "bra needs one label")),
                        };
                        fixups.push((self.code.len(), target, line));
                        Op::Bra { target: 0 }
                    } else if in_func && (opcode == "ret" || opcode.starts_with("ret.")) {
                        Op::Ret
                    } else {
                        decode(&opcode, &operands, &mut self.ctx).map_err(|m| perr(line, &opcode, &m))?
                    };
                    self.code.push(Instr { op, guard, line });
                }
                _ => return Err(self.c.err("expected an instruction")),
            }
        }
        for (pc, label, line) in fixups {
            let target = *labels.get(&label).ok_or_else(|| perr(line, &label, "unknown label"))?;
            self.code[pc].op = Op::Bra { target };
        }
        // Falling off the end of a body returns.
        let line = self.c.toks.get(self.c.pos.saturating_sub(1)).map_or(0, |t| t.line);
        self.code.push(Instr { op: if in_func { Op::Ret } else { Op::Exit }, guard: None, line });
        if in_func && self.smem != smem_before {
            return Err(perr(line, fname, "shared memory declared inside a called function is not supported"));
        }
        self.edges.entry(fname.to_string()).or_default();
        Ok(())
    }

    /// An optional `@p` / `@!p` guard at the cursor.
    fn guard(&mut self) -> Result<Option<(String, bool)>> {
        if self.c.eat_punct('@') {
            let neg = self.c.eat_punct('!');
            return Ok(Some((self.c.word()?, neg)));
        }
        Ok(None)
    }

    /// A slot list `(a, b, ...)` of call-sequence `.param` names.
    fn slot_list(&mut self, line: u32) -> Result<Vec<(u32, u32)>> {
        let mut out = Vec::new();
        self.c.expect_punct('(')?;
        while !self.c.eat_punct(')') {
            let name = self.c.word()?;
            match self.ctx.syms.get(&name) {
                Some(Sym::CallParam(off, size)) => out.push((*off as u32, *size)),
                _ => return Err(perr(line, &name, "call argument is not a .param variable of the call sequence")),
            }
            self.c.eat_punct(',');
        }
        Ok(out)
    }

    /// `call{.uni} (ret...), name, (arg...);` (the return and argument lists are optional).
    fn call(&mut self, caller: &str, guard: Option<(u32, bool)>, line: u32) -> Result<()> {
        let rets = if self.c.is_punct('(') { self.slot_list(line)? } else { Vec::new() };
        self.c.eat_punct(',');
        let callee = self.c.word()?;
        if self.ctx.reg(&callee).is_some() {
            return Err(perr(line, &callee, "indirect calls are not supported"));
        }
        if !self.m.funcs.contains_key(&callee) {
            return Err(perr(line, &callee, "call to a function without a body in this module (external functions such as vprintf are not supported)"));
        }
        let args = if self.c.eat_punct(',') { self.slot_list(line)? } else { Vec::new() };
        if !self.c.eat_punct(';') {
            return Err(self.c.err("call prototypes (indirect calls) are not supported"));
        }
        self.edges.entry(caller.to_string()).or_default().push((callee.clone(), line));
        self.calls.push(CallSite { pc: self.code.len(), callee, args, rets, line });
        self.code.push(Instr { op: Op::Nop, guard, line });
        Ok(())
    }

    /// Decodes every function the kernel reaches, rejects recursion, and patches each call
    /// site with its callee's entry and the slot copies.
    fn link_calls(&mut self) -> Result<()> {
        let mut infos: HashMap<String, FuncInfo> = HashMap::new();
        let mut next = 0;
        while next < self.calls.len() {
            let callee = self.calls[next].callee.clone();
            next += 1;
            if infos.contains_key(&callee) {
                continue;
            }
            let info = self.function(&callee)?;
            infos.insert(callee, info);
        }
        self.check_recursion()?;
        for site in std::mem::take(&mut self.calls) {
            let f = &infos[&site.callee];
            if site.args.len() != f.params.len() || site.rets.len() != f.rets.len() {
                return Err(perr(site.line, &site.callee, "call argument or return count does not match the function"));
            }
            let pair = |(src, ssize): (u32, u32), (dst, dsize): (u32, u32)| (src, dst, ssize.min(dsize));
            let copy_in = site.args.iter().zip(&f.params).map(|(a, p)| pair(*a, *p)).collect();
            let copy_out = f.rets.iter().zip(&site.rets).map(|(r, s)| pair(*r, *s)).collect();
            self.code[site.pc].op = Op::Call { target: f.start, copy_in, copy_out };
        }
        Ok(())
    }

    /// Decodes function `name` at the end of the code.
    fn function(&mut self, name: &str) -> Result<FuncInfo> {
        let pos = self.m.funcs[name];
        let saved = self.c.pos;
        self.c.pos = pos;
        let mut rets = Vec::new();
        let mut params = Vec::new();
        if self.c.eat_punct('(') {
            rets = self.param_list()?;
        }
        let _ = self.c.word()?;
        if self.c.is_punct('(') {
            self.c.pos += 1;
            params = self.param_list()?;
        }
        skip_perf_directives(self.c);
        let outer_scopes = std::mem::replace(&mut self.ctx.scopes, vec![HashMap::new()]);
        let start = self.code.len() as u32;
        self.body(name, true)?;
        self.ctx.scopes = outer_scopes;
        self.c.pos = saved;
        Ok(FuncInfo { start, params, rets })
    }

    /// `.param ... a, .param ... b)` after the opening parenthesis: allocates each slot.
    fn param_list(&mut self) -> Result<Vec<(u32, u32)>> {
        let mut out = Vec::new();
        while !self.c.eat_punct(')') {
            if !self.c.is_word(".param") && !self.c.is_word(".reg") {
                return Err(self.c.err("expected .param in a function signature"));
            }
            if self.c.is_word(".reg") {
                return Err(self.c.err(".reg function parameters are not supported"));
            }
            let v = parse_var(self.c, false)?;
            let size = v.count.unwrap_or(0).saturating_mul(v.elem_bytes as u64);
            let off = self.local_slot(size, v.align as u64);
            self.ctx.syms.insert(v.name, Sym::CallParam(off, size as u32));
            out.push((off as u32, size as u32));
            self.c.eat_punct(',');
        }
        Ok(out)
    }

    fn check_recursion(&self) -> Result<()> {
        type Edges = HashMap<String, Vec<(String, u32)>>;
        /// Depth-first search; returns the function that closes a cycle and the line of the
        /// call that does it.
        fn visit<'e>(f: &'e str, edges: &'e Edges, path: &mut Vec<&'e str>, done: &mut HashSet<&'e str>) -> Option<(String, u32)> {
            path.push(f);
            for (g, line) in edges.get(f).into_iter().flatten() {
                if path.contains(&g.as_str()) {
                    return Some((g.clone(), *line));
                }
                if done.insert(g.as_str()) {
                    if let Some(hit) = visit(g, edges, path, done) {
                        return Some(hit);
                    }
                }
            }
            path.pop();
            None
        }
        let mut done = HashSet::new();
        if let Some((f, line)) = visit("", &self.edges, &mut Vec::new(), &mut done) {
            return Err(SimError::Parse { line, token: f, message: "recursive device functions are not supported".into() });
        }
        Ok(())
    }
}
