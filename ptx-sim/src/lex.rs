//! Splits PTX text into tokens that carry their line number, so every parse error can name
//! the line and the token it stopped at.
//!
//! The bottom of the parser's layering, each module using only those before it:
//! `lex` -> `syntax` -> `qualifiers` -> `decode` -> `body` -> `parse`.

use crate::error::{Result, SimError};

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Tok {
    /// Identifiers, opcodes, directives, registers and labels: anything that starts with a
    /// letter, `_`, `$`, `%` or `.` (dots inside are kept: `ld.global.u32`, `%tid.x`).
    Word(String),
    /// An integer literal (decimal, hex, octal or binary), as its two's-complement bits.
    Int(u64),
    /// A float literal: `0f` hex (f32 bits), `0d` hex (f64 bits) or decimal (f64).
    F32(u32),
    F64(u64),
    Str(String),
    Punct(char),
}

#[derive(Clone, Debug)]
pub(crate) struct Token {
    pub tok: Tok,
    pub line: u32,
}

impl Token {
    /// How the token reads in an error message.
    pub(crate) fn show(&self) -> String {
        match &self.tok {
            Tok::Word(w) => w.clone(),
            Tok::Int(v) => v.to_string(),
            Tok::F32(b) => format!("0f{b:08X}"),
            Tok::F64(b) => format!("0d{b:016X}"),
            Tok::Str(s) => format!("\"{s}\""),
            Tok::Punct(c) => c.to_string(),
        }
    }
}

fn is_word_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || matches!(c, b'_' | b'$' | b'%' | b'.')
}

fn is_word_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'$' | b'%' | b'.')
}

/// Tokenizes a whole module.
pub(crate) fn lex(text: &str) -> Result<Vec<Token>> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(text.len() / 4);
    let mut i = 0;
    let mut line = 1u32;
    let err = |line: u32, token: String, msg: &str| SimError::Parse { line, token, message: msg.to_string() };
    while i < b.len() {
        let c = b[i];
        if c == b'\n' {
            line += 1;
            i += 1;
        } else if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let start = line;
            i += 2;
            loop {
                if i + 1 >= b.len() {
                    return Err(err(start, "/*".into(), "unterminated block comment"));
                }
                if b[i] == b'*' && b[i + 1] == b'/' {
                    i += 2;
                    break;
                }
                if b[i] == b'\n' {
                    line += 1;
                }
                i += 1;
            }
        } else if c == b'"' {
            let start = i + 1;
            i += 1;
            while i < b.len() && b[i] != b'"' && b[i] != b'\n' {
                i += 1;
            }
            if i >= b.len() || b[i] != b'"' {
                return Err(err(line, text[start - 1..i].to_string(), "unterminated string"));
            }
            out.push(Token { tok: Tok::Str(text[start..i].to_string()), line });
            i += 1;
        } else if c.is_ascii_digit() {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                i += 1;
            }
            let s = &text[start..i];
            let tok = parse_number(s).ok_or_else(|| err(line, s.to_string(), "malformed number"))?;
            out.push(Token { tok, line });
        } else if is_word_start(c) {
            let start = i;
            loop {
                while i < b.len() && is_word_char(b[i]) {
                    i += 1;
                }
                // `::` joins a sub-qualifier to its qualifier inside an opcode
                // (`.shared::cta`, `.L2::128B`, `.L1::evict_last`), so the opcode stays one
                // word and `128B` is not read as a number; a label's single `:` still ends it.
                if b.get(i) == Some(&b':') && b.get(i + 1) == Some(&b':') && b.get(i + 2).is_some_and(|&c| is_word_char(c)) {
                    i += 2;
                } else {
                    break;
                }
            }
            out.push(Token { tok: Tok::Word(text[start..i].to_string()), line });
        } else if b",;:[]{}()+-|@!<>=*".contains(&c) {
            out.push(Token { tok: Tok::Punct(c as char), line });
            i += 1;
        } else {
            let ch = text[i..].chars().next().unwrap_or('?');
            return Err(err(line, ch.to_string(), "unexpected character"));
        }
    }
    Ok(out)
}

fn parse_number(s: &str) -> Option<Tok> {
    let lower = s.to_ascii_lowercase();
    if let Some(h) = lower.strip_prefix("0f") {
        if h.len() == 8 {
            return u32::from_str_radix(h, 16).ok().map(Tok::F32);
        }
    }
    if let Some(h) = lower.strip_prefix("0d") {
        if h.len() == 16 {
            return u64::from_str_radix(h, 16).ok().map(Tok::F64);
        }
    }
    let t = lower.strip_suffix('u').unwrap_or(&lower);
    if let Some(h) = t.strip_prefix("0x") {
        return u64::from_str_radix(h, 16).ok().map(Tok::Int);
    }
    if let Some(h) = t.strip_prefix("0b") {
        return u64::from_str_radix(h, 2).ok().map(Tok::Int);
    }
    if t.contains('.') || t.contains('e') {
        return t.parse::<f64>().ok().map(|f| Tok::F64(f.to_bits()));
    }
    if t.len() > 1 && t.starts_with('0') {
        return u64::from_str_radix(&t[1..], 8).ok().map(Tok::Int);
    }
    t.parse::<u64>().ok().map(Tok::Int)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_words() {
        let t = lex("mov.f32 %f1, 0f3F800000; // c\n@!%p1 bra $L__BB0_2; add.s64 %rd1, %rd2, -16;").unwrap();
        assert_eq!(t[0].tok, Tok::Word("mov.f32".into()));
        assert_eq!(t[3].tok, Tok::F32(0x3F80_0000));
        assert_eq!(t[5].tok, Tok::Punct('@'));
        assert_eq!(t[5].line, 2);
        assert_eq!(t[6].tok, Tok::Punct('!'));
        assert_eq!(t[8].tok, Tok::Word("bra".into()));
        assert_eq!(t[9].tok, Tok::Word("$L__BB0_2".into()));
        assert!(t.iter().any(|x| x.tok == Tok::Int(16)));
        assert_eq!(parse_number("0x10"), Some(Tok::Int(16)));
        assert_eq!(parse_number("010"), Some(Tok::Int(8)));
        assert_eq!(parse_number("1.5"), Some(Tok::F64(1.5f64.to_bits())));
    }

    #[test]
    fn double_colon_qualifiers_stay_in_the_opcode() {
        let t = lex("cp.async.cg.shared.global.L2::128B [%r1], [%rd1], 16;\n$L__BB0_2:\n").unwrap();
        assert_eq!(t[0].tok, Tok::Word("cp.async.cg.shared.global.L2::128B".into()));
        assert_eq!(t[1].tok, Tok::Punct('['));
        let n = t.len();
        assert_eq!(t[n - 2].tok, Tok::Word("$L__BB0_2".into()));
        assert_eq!(t[n - 1].tok, Tok::Punct(':'));
    }

    #[test]
    fn bad_character_names_line() {
        let e = lex("add.s32 %r1, %r2, %r3;\n  # oops").unwrap_err();
        match e {
            SimError::Parse { line, token, .. } => {
                assert_eq!(line, 2);
                assert_eq!(token, "#");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
