//! Module structure: directives, variable declarations, entries with their parameters and
//! bodies, register scopes and labels. Instruction operands are read into a small syntax
//! tree here and turned into decoded instructions by `decode`.

use crate::decode::{decode, Ctx, Sym};
use crate::error::{Result, SimError};
use crate::ir::{Instr, Op};
use crate::lex::{lex, Tok, Token};
use crate::module::{Kernel, Module, ParamInfo};
use std::collections::HashMap;
use std::sync::Arc;

/// An operand as written.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Opnd {
    Name(String),
    /// `!%p`
    Not(String),
    Int(u64),
    F32(u32),
    F64(u64),
    /// `{a, b, ...}`
    Vector(Vec<Opnd>),
    /// `[base+offset]`: base is a register or symbol name or absent.
    Mem(Option<String>, i64),
    /// `%r|%p`
    Pipe(String, String),
    /// `name+offset` outside brackets.
    NamePlus(String, i64),
    /// `_`
    Sink,
}

/// Where module-level `.global` / `.const` variables go: the loader allocates them.
pub(crate) trait GlobalAllocator {
    /// Allocates `size` bytes aligned to `align`, filled with `init` (zero past its end).
    fn alloc_global(&mut self, size: u64, align: u64, init: &[u8]) -> Result<u64>;
}

struct Cursor<'a> {
    toks: &'a [Token],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<&'a Token> {
        self.toks.get(self.pos)
    }
    fn peek_tok(&self) -> Option<&'a Tok> {
        self.peek().map(|t| &t.tok)
    }
    fn line(&self) -> u32 {
        self.peek().or_else(|| self.toks.last()).map_or(0, |t| t.line)
    }
    fn next(&mut self) -> Result<&'a Token> {
        let t = self.toks.get(self.pos).ok_or_else(|| self.err_eof())?;
        self.pos += 1;
        Ok(t)
    }
    fn err_eof(&self) -> SimError {
        SimError::Parse { line: self.line(), token: "<end of text>".into(), message: "unexpected end of PTX".into() }
    }
    fn err(&self, message: impl Into<String>) -> SimError {
        let token = self.peek().map_or_else(|| "<end of text>".to_string(), |t| t.show());
        SimError::Parse { line: self.line(), token, message: message.into() }
    }
    fn is_punct(&self, c: char) -> bool {
        self.peek_tok() == Some(&Tok::Punct(c))
    }
    fn eat_punct(&mut self, c: char) -> bool {
        if self.is_punct(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn expect_punct(&mut self, c: char) -> Result<()> {
        if self.eat_punct(c) {
            Ok(())
        } else {
            Err(self.err(format!("expected `{c}`")))
        }
    }
    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek_tok(), Some(Tok::Word(x)) if x == w)
    }
    fn eat_word(&mut self, w: &str) -> bool {
        if self.is_word(w) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn word(&mut self) -> Result<String> {
        match self.peek_tok() {
            Some(Tok::Word(w)) => {
                self.pos += 1;
                Ok(w.clone())
            }
            _ => Err(self.err("expected a name")),
        }
    }
    fn int(&mut self) -> Result<u64> {
        let neg = self.eat_punct('-');
        match self.peek_tok() {
            Some(Tok::Int(v)) => {
                self.pos += 1;
                Ok(if neg { v.wrapping_neg() } else { *v })
            }
            _ => Err(self.err("expected an integer")),
        }
    }
    /// Skips to just past the next `;` at the current nesting.
    fn skip_statement(&mut self) -> Result<()> {
        loop {
            if self.next()?.tok == Tok::Punct(';') {
                return Ok(());
            }
        }
    }
}

/// A declared variable (`.shared`, `.local`, `.global`, `.const`, or a `.param`).
struct VarDecl {
    space: String,
    name: String,
    align: u32,
    elem_bytes: u32,
    /// None for `name[]` (extern, unsized).
    count: Option<u64>,
    init: Vec<u8>,
}

/// Parses `.space [.align N] .type name[dims] [= init];` starting at the space word;
/// consumes the trailing `;` when `statement` is set.
fn parse_var(c: &mut Cursor, statement: bool) -> Result<VarDecl> {
    let space = c.word()?;
    let mut align = 0u32;
    let mut elem_bytes = 0u32;
    let mut vec_n = 1u32;
    loop {
        match c.peek_tok() {
            Some(Tok::Word(w)) if w == ".align" => {
                c.pos += 1;
                align = u32::try_from(c.int()?).map_err(|_| c.err("alignment too large"))?;
            }
            Some(Tok::Word(w)) if w == ".ptr" || w == ".global" || w == ".shared" || w == ".const" || w == ".local" => {
                c.pos += 1;
            }
            Some(Tok::Word(w)) if w.starts_with(".v") && w[2..].parse::<u32>().is_ok() => {
                vec_n = w[2..].parse().unwrap_or(1);
                c.pos += 1;
            }
            Some(Tok::Word(w)) if w.starts_with('.') => {
                let ty = crate::ir::Ty::parse(&w[1..]).ok_or_else(|| c.err("unknown type in declaration"))?;
                elem_bytes = ty.bytes() * vec_n;
                c.pos += 1;
                break;
            }
            _ => return Err(c.err("expected a type in declaration")),
        }
    }
    let name = c.word()?;
    let mut count: Option<u64> = Some(1);
    while c.eat_punct('[') {
        if c.eat_punct(']') {
            count = None;
        } else {
            let n = c.int()?;
            c.expect_punct(']')?;
            count = count.map(|x| x.saturating_mul(n));
        }
    }
    let mut init = Vec::new();
    if c.eat_punct('=') {
        let mut vals = Vec::new();
        let braced = c.eat_punct('{');
        loop {
            match c.peek_tok() {
                Some(Tok::Int(_)) | Some(Tok::Punct('-')) => vals.push(c.int()?),
                Some(Tok::F32(b)) => {
                    vals.push(*b as u64);
                    c.pos += 1;
                }
                Some(Tok::F64(b)) => {
                    let bits = if elem_bytes == 4 { (f64::from_bits(*b) as f32).to_bits() as u64 } else { *b };
                    vals.push(bits);
                    c.pos += 1;
                }
                Some(Tok::Punct('{')) | Some(Tok::Punct('}')) if braced => {
                    c.pos += 1;
                    continue;
                }
                _ => return Err(c.err("unsupported initializer")),
            }
            if !c.eat_punct(',') {
                break;
            }
        }
        if braced {
            while c.eat_punct('}') {}
        }
        for v in vals {
            init.extend_from_slice(&v.to_le_bytes()[..elem_bytes.min(8) as usize]);
        }
    }
    if statement {
        c.expect_punct(';')?;
    }
    if align == 0 {
        align = elem_bytes.max(1);
    }
    Ok(VarDecl { space, name, align, elem_bytes, count, init })
}

fn align_up(x: u64, a: u64) -> u64 {
    x.div_ceil(a.max(1)) * a.max(1)
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
                let mut depth = 1;
                while depth > 0 {
                    match c.next()?.tok {
                        Tok::Punct('{') => depth += 1,
                        Tok::Punct('}') => depth -= 1,
                        _ => {}
                    }
                }
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
                let size = v.count.unwrap_or(0) * v.elem_bytes as u64;
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
                        module_smem = off + n * v.elem_bytes as u64;
                        module_syms.insert(v.name, Sym::Shared(off));
                    }
                }
            }
            ".entry" => {
                c.pos += 1;
                let k = parse_entry(&mut c, &module_syms, module_smem, extern_smem_align, &source)?;
                kernels.insert(k.name.clone(), Arc::new(k));
            }
            ".func" => {
                // Device functions are inlined by nvcc -O3; a call would fail to decode.
                c.pos += 1;
                skip_function(&mut c)?;
            }
            _ => return Err(c.err("unsupported module-level directive")),
        }
    }
    Ok(Module { kernels })
}

fn skip_function(c: &mut Cursor) -> Result<()> {
    loop {
        match c.next()?.tok {
            Tok::Punct(';') => return Ok(()),
            Tok::Punct('{') => {
                let mut depth = 1;
                while depth > 0 {
                    match c.next()?.tok {
                        Tok::Punct('{') => depth += 1,
                        Tok::Punct('}') => depth -= 1,
                        _ => {}
                    }
                }
                return Ok(());
            }
            _ => {}
        }
    }
}

fn parse_entry(
    c: &mut Cursor,
    module_syms: &HashMap<String, Sym>,
    module_smem: u64,
    extern_smem_align: u32,
    source: &Arc<Vec<String>>,
) -> Result<Kernel> {
    let name = c.word()?;
    let mut syms = module_syms.clone();
    let mut params = Vec::new();
    let mut param_bytes = 0u64;
    if c.eat_punct('(') {
        while !c.eat_punct(')') {
            if !c.is_word(".param") {
                return Err(c.err("expected .param"));
            }
            let v = parse_var(c, false)?;
            let size = v.count.ok_or_else(|| c.err("unsized parameter"))? * v.elem_bytes as u64;
            let off = align_up(param_bytes, v.align as u64);
            param_bytes = off + size;
            syms.insert(v.name.clone(), Sym::Param(off));
            params.push(ParamInfo { name: v.name, size: size as u32, align: v.align, offset: off as u32 });
            c.eat_punct(',');
        }
    }
    // Performance directives (.maxntid 128, 1, 1 / .minnctapersm 1 / .reqntid ...).
    while let Some(Tok::Word(w)) = c.peek_tok() {
        if !w.starts_with('.') {
            break;
        }
        c.pos += 1;
        while matches!(c.peek_tok(), Some(Tok::Int(_)) | Some(Tok::Punct(','))) {
            c.pos += 1;
        }
    }
    if c.eat_punct(';') {
        return Err(c.err("entry declaration without a body"));
    }
    let body_start = c.pos;
    c.expect_punct('{')?;

    // Pre-scan: lay out function-scope .shared and .local so every symbol has an address
    // before the first instruction is decoded.
    let mut smem = module_smem;
    let mut local = 0u64;
    let mut dyn_align = extern_smem_align;
    {
        let mut depth = 1;
        let mut at_statement_start = true;
        while depth > 0 {
            let t = c.next()?;
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
                    c.pos -= 1;
                    let v = parse_var(c, true)?;
                    if v.space == ".shared" {
                        match v.count {
                            None => {
                                dyn_align = dyn_align.max(v.align);
                                syms.insert(v.name, Sym::DynShared);
                            }
                            Some(n) => {
                                let off = align_up(smem, v.align as u64);
                                smem = off + n * v.elem_bytes as u64;
                                syms.insert(v.name, Sym::Shared(off));
                            }
                        }
                    } else {
                        let off = align_up(local, v.align as u64);
                        local = off + v.count.unwrap_or(0) * v.elem_bytes as u64;
                        syms.insert(v.name, Sym::Local(off));
                    }
                    at_statement_start = true;
                }
                _ => at_statement_start = false,
            }
        }
    }
    let static_smem = u32::try_from(smem).map_err(|_| c.err("static shared memory too large"))?;
    let dyn_base = align_up(smem, dyn_align as u64);
    for s in syms.values_mut() {
        if *s == Sym::DynShared {
            *s = Sym::Shared(dyn_base);
        }
    }
    c.pos = body_start + 1;

    let mut ctx = Ctx { syms, scopes: vec![HashMap::new()], nregs: 0 };
    let mut code: Vec<Instr> = Vec::new();
    let mut labels: HashMap<String, u32> = HashMap::new();
    let mut fixups: Vec<(usize, String, u32)> = Vec::new();
    let mut depth = 1;
    while depth > 0 {
        let t = c.peek().ok_or_else(|| c.err_eof())?;
        let line = t.line;
        match &t.tok {
            Tok::Punct('{') => {
                c.pos += 1;
                depth += 1;
                ctx.scopes.push(HashMap::new());
            }
            Tok::Punct('}') => {
                c.pos += 1;
                depth -= 1;
                ctx.scopes.pop();
            }
            Tok::Word(w) if w == ".reg" => {
                c.pos += 1;
                parse_reg_decl(c, &mut ctx)?;
            }
            Tok::Word(w) if w == ".shared" || w == ".local" => {
                parse_var(c, true)?;
            }
            Tok::Word(w) if w == ".pragma" || w == ".loc" || w == ".maxnreg" => {
                if w == ".loc" {
                    c.pos += 1;
                    while matches!(c.peek_tok(), Some(Tok::Int(_)) | Some(Tok::Punct(','))) {
                        c.pos += 1;
                    }
                } else {
                    c.skip_statement()?;
                }
            }
            Tok::Word(w) if c.toks.get(c.pos + 1).map(|t| &t.tok) == Some(&Tok::Punct(':')) => {
                labels.insert(w.clone(), code.len() as u32);
                c.pos += 2;
            }
            Tok::Punct('@') | Tok::Word(_) => {
                let (guard, opcode, operands) = parse_statement(c)?;
                let guard = match guard {
                    None => None,
                    Some((name, neg)) => Some((ctx.reg(&name).ok_or_else(|| perr(line, &name, "unknown predicate register"))?, neg)),
                };
                if opcode == "bra" || opcode.starts_with("bra.") {
                    let target = match operands.as_slice() {
                        [Opnd::Name(l)] => l.clone(),
                        _ => return Err(perr(line, &opcode, "bra needs one label")),
                    };
                    fixups.push((code.len(), target, line));
                    code.push(Instr { op: Op::Bra { target: 0 }, guard, line });
                } else {
                    let op = decode(&opcode, &operands, &mut ctx).map_err(|m| perr(line, &opcode, &m))?;
                    code.push(Instr { op, guard, line });
                }
            }
            _ => return Err(c.err("expected an instruction")),
        }
    }
    for (pc, label, line) in fixups {
        let target = *labels.get(&label).ok_or_else(|| perr(line, &label, "unknown label"))?;
        code[pc].op = Op::Bra { target };
    }
    // Falling off the end of the body returns.
    code.push(Instr { op: Op::Exit, guard: None, line: c.toks.get(c.pos.saturating_sub(1)).map_or(0, |t| t.line) });
    Ok(Kernel {
        name,
        params,
        param_bytes: param_bytes as u32,
        code,
        nregs: ctx.nregs.max(1),
        static_smem,
        dyn_smem_align: dyn_align,
        local_bytes: u32::try_from(local).map_err(|_| perr(0, "", "local memory too large"))?,
        source: source.clone(),
    })
}

fn perr(line: u32, token: &str, message: &str) -> SimError {
    SimError::Parse { line, token: token.to_string(), message: message.to_string() }
}

/// `.reg .type name<N>, name2, ...;` (the type may be preceded by `.v2`/`.v4`).
fn parse_reg_decl(c: &mut Cursor, ctx: &mut Ctx) -> Result<()> {
    let mut vec_n = 1u32;
    loop {
        let w = c.word()?;
        if let Some(n) = w.strip_prefix(".v").and_then(|n| n.parse::<u32>().ok()) {
            vec_n = n;
            continue;
        }
        if crate::ir::Ty::parse(w.trim_start_matches('.')).is_none() {
            return Err(c.err("unknown register type"));
        }
        break;
    }
    if vec_n != 1 {
        return Err(c.err("vector registers are not supported"));
    }
    loop {
        let name = c.word()?;
        if c.eat_punct('<') {
            let n = c.int()? as u32;
            c.expect_punct('>')?;
            ctx.declare_range(&name, n);
        } else {
            ctx.declare(&name);
        }
        if !c.eat_punct(',') {
            break;
        }
    }
    c.expect_punct(';')
}

type Statement = (Option<(String, bool)>, String, Vec<Opnd>);

fn parse_statement(c: &mut Cursor) -> Result<Statement> {
    let mut guard = None;
    if c.eat_punct('@') {
        let neg = c.eat_punct('!');
        guard = Some((c.word()?, neg));
    }
    let opcode = c.word()?;
    let mut operands = Vec::new();
    if !c.eat_punct(';') {
        loop {
            operands.push(parse_operand(c)?);
            if c.eat_punct(';') {
                break;
            }
            c.expect_punct(',')?;
        }
    }
    Ok((guard, opcode, operands))
}

fn parse_operand(c: &mut Cursor) -> Result<Opnd> {
    match c.peek_tok() {
        Some(Tok::Punct('{')) => {
            c.pos += 1;
            let mut v = Vec::new();
            loop {
                v.push(parse_operand(c)?);
                if c.eat_punct('}') {
                    break;
                }
                c.expect_punct(',')?;
            }
            Ok(Opnd::Vector(v))
        }
        Some(Tok::Punct('[')) => {
            c.pos += 1;
            let mut base = None;
            let mut off: i64 = 0;
            if let Some(Tok::Word(w)) = c.peek_tok() {
                base = Some(w.clone());
                c.pos += 1;
                if c.eat_punct('+') {
                    off = c.int()? as i64;
                } else if c.is_punct('-') {
                    off = c.int()? as i64;
                }
            } else {
                off = c.int()? as i64;
            }
            c.expect_punct(']')?;
            Ok(Opnd::Mem(base, off))
        }
        Some(Tok::Punct('!')) => {
            c.pos += 1;
            Ok(Opnd::Not(c.word()?))
        }
        Some(Tok::Punct('-')) | Some(Tok::Int(_)) => {
            if c.is_punct('-') {
                if let Some(Tok::F32(b)) = c.toks.get(c.pos + 1).map(|t| &t.tok) {
                    c.pos += 2;
                    return Ok(Opnd::F32(b ^ 0x8000_0000));
                }
                if let Some(Tok::F64(b)) = c.toks.get(c.pos + 1).map(|t| &t.tok) {
                    c.pos += 2;
                    return Ok(Opnd::F64(b ^ (1 << 63)));
                }
            }
            Ok(Opnd::Int(c.int()?))
        }
        Some(Tok::F32(b)) => {
            let b = *b;
            c.pos += 1;
            Ok(Opnd::F32(b))
        }
        Some(Tok::F64(b)) => {
            let b = *b;
            c.pos += 1;
            Ok(Opnd::F64(b))
        }
        Some(Tok::Word(w)) => {
            let w = w.clone();
            c.pos += 1;
            if w == "_" {
                return Ok(Opnd::Sink);
            }
            if c.eat_punct('|') {
                return Ok(Opnd::Pipe(w, c.word()?));
            }
            if c.eat_punct('+') {
                return Ok(Opnd::NamePlus(w, c.int()? as i64));
            }
            Ok(Opnd::Name(w))
        }
        _ => Err(c.err("expected an operand")),
    }
}
