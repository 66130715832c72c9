//! The PTX syntax shared by the module parser (`parse`) and the kernel-body builder
//! (`body`): a cursor over the tokens with its error helpers, operands as written (`Opnd`,
//! the small syntax tree that `decode` turns into `ir` operands), variable declarations, and
//! the alignment helper for laying them out.
//!
//! Layering of the parser, each module using only those before it:
//! `lex` -> `syntax` -> `qualifiers` -> `decode` -> `body` -> `parse`.

use crate::error::{Result, SimError};
use crate::lex::{Tok, Token};

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

pub(crate) struct Cursor<'a> {
    pub(crate) toks: &'a [Token],
    pub(crate) pos: usize,
}

impl<'a> Cursor<'a> {
    /// Skips past the `}` that closes a `{` just consumed, over any nested braces.
    pub(crate) fn skip_to_matching_brace(&mut self) -> Result<()> {
        let mut depth = 1;
        while depth > 0 {
            match self.next()?.tok {
                Tok::Punct('{') => depth += 1,
                Tok::Punct('}') => depth -= 1,
                _ => {}
            }
        }
        Ok(())
    }
    pub(crate) fn peek(&self) -> Option<&'a Token> {
        self.toks.get(self.pos)
    }
    pub(crate) fn peek_tok(&self) -> Option<&'a Tok> {
        self.peek().map(|t| &t.tok)
    }
    pub(crate) fn line(&self) -> u32 {
        self.peek().or_else(|| self.toks.last()).map_or(0, |t| t.line)
    }
    pub(crate) fn next(&mut self) -> Result<&'a Token> {
        let t = self.toks.get(self.pos).ok_or_else(|| self.err_eof())?;
        self.pos += 1;
        Ok(t)
    }
    pub(crate) fn err_eof(&self) -> SimError {
        SimError::Parse { line: self.line(), token: "<end of text>".into(), message: "unexpected end of PTX".into() }
    }
    pub(crate) fn err(&self, message: impl Into<String>) -> SimError {
        let token = self.peek().map_or_else(|| "<end of text>".to_string(), |t| t.show());
        SimError::Parse { line: self.line(), token, message: message.into() }
    }
    pub(crate) fn is_punct(&self, c: char) -> bool {
        self.peek_tok() == Some(&Tok::Punct(c))
    }
    pub(crate) fn eat_punct(&mut self, c: char) -> bool {
        if self.is_punct(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    pub(crate) fn expect_punct(&mut self, c: char) -> Result<()> {
        if self.eat_punct(c) {
            Ok(())
        } else {
            Err(self.err(format!("expected `{c}`")))
        }
    }
    pub(crate) fn is_word(&self, w: &str) -> bool {
        matches!(self.peek_tok(), Some(Tok::Word(x)) if x == w)
    }
    pub(crate) fn word(&mut self) -> Result<String> {
        match self.peek_tok() {
            Some(Tok::Word(w)) => {
                self.pos += 1;
                Ok(w.clone())
            }
            _ => Err(self.err("expected a name")),
        }
    }
    pub(crate) fn int(&mut self) -> Result<u64> {
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
    pub(crate) fn skip_statement(&mut self) -> Result<()> {
        loop {
            if self.next()?.tok == Tok::Punct(';') {
                return Ok(());
            }
        }
    }
}

/// A declared variable (`.shared`, `.local`, `.global`, `.const`, or a `.param`).
pub(crate) struct VarDecl {
    pub(crate) space: String,
    pub(crate) name: String,
    pub(crate) align: u32,
    pub(crate) elem_bytes: u32,
    /// None for `name[]` (extern, unsized).
    pub(crate) count: Option<u64>,
    pub(crate) init: Vec<u8>,
}

/// Parses `.space [.align N] .type name[dims] [= init];` starting at the space word;
/// consumes the trailing `;` when `statement` is set.
pub(crate) fn parse_var(c: &mut Cursor, statement: bool) -> Result<VarDecl> {
    let space = c.word()?;
    let mut align = 0u32;
    let elem_bytes: u32;
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

pub(crate) fn align_up(x: u64, a: u64) -> u64 {
    x.div_ceil(a.max(1)) * a.max(1)
}

pub(crate) fn perr(line: u32, token: &str, message: &str) -> SimError {
    SimError::Parse { line, token: token.to_string(), message: message.to_string() }
}

/// The operand list of an instruction, after its opcode, through the closing `;`.
pub(crate) fn parse_operands(c: &mut Cursor) -> Result<Vec<Opnd>> {
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
    Ok(operands)
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
                // `[r+imm]`, `[r+-imm]` and `[r-imm]`: `int` reads the sign itself.
                if c.eat_punct('+') || c.is_punct('-') {
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
