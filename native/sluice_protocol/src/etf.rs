//! The checker in front of `eetf`: untrusted bytes become a [`Term`] only after
//! [`check_etf`] has walked them.
//!
//! The helper program must never fall over on bad input, and `eetf`'s decoder trusts
//! lengths (a list claiming 4 billion elements allocates for them), panics on some tags
//! (`unimplemented!()` for distribution headers and atom cache refs, a shift overflow on a
//! bitstring with 0 tail bits) and recurses without bound. So every payload is first checked
//! here: lengths within the input, supported tags only, bounded depth and term count.

use eetf::Term;

use crate::term::DecodeError;

/// Nesting deeper than this is rejected before `eetf` sees the term.
pub const MAX_DEPTH: usize = 64;

/// More terms than this in one payload are rejected before `eetf` sees it.
pub const MAX_TERMS: usize = 1 << 20;

const VERSION_MAGIC: u8 = 131;

struct Checker<'a> {
    buf: &'a [u8],
    pos: usize,
    terms: usize,
}

impl Checker<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if self.buf.len() - self.pos < n {
            return Err(format!("truncated term at byte {}", self.pos));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<usize, String> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]) as usize)
    }

    fn u32(&mut self) -> Result<usize, String> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }

    /// A count of sub-terms: each takes at least one byte, so it cannot exceed what is left.
    fn count(&mut self, n: usize, per: usize) -> Result<usize, String> {
        let left = self.buf.len() - self.pos;
        if n.saturating_mul(per) > left {
            return Err(format!("element count {n} exceeds the frame"));
        }
        Ok(n)
    }

    fn terms(&mut self, n: usize, depth: usize) -> Result<(), String> {
        for _ in 0..n {
            self.term(depth)?;
        }
        Ok(())
    }

    fn atom(&mut self) -> Result<(), String> {
        match self.u8()? {
            100 | 118 => {
                let n = self.u16()?;
                self.take(n)?;
            }
            115 | 119 => {
                let n = self.u8()? as usize;
                self.take(n)?;
            }
            t => return Err(format!("expected an atom, got tag {t}")),
        }
        self.terms += 1;
        Ok(())
    }

    fn term(&mut self, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err("term nested too deeply".into());
        }
        self.terms += 1;
        if self.terms > MAX_TERMS {
            return Err("too many terms in one frame".into());
        }
        let d = depth + 1;
        let tag = self.u8()?;
        match tag {
            70 => drop(self.take(8)?),
            77 => {
                let n = self.u32()?;
                let bits = self.u8()?;
                if !(1..=8).contains(&bits) {
                    return Err(format!("bad bitstring tail size {bits}"));
                }
                self.take(n)?;
            }
            97 => drop(self.take(1)?),
            98 => drop(self.take(4)?),
            99 => drop(self.take(31)?),
            100 | 118 => {
                let n = self.u16()?;
                self.take(n)?;
            }
            115 | 119 => {
                let n = self.u8()? as usize;
                self.take(n)?;
            }
            // Reference, port, pid and their newer forms: a node atom, then fixed bytes.
            101 | 102 | 103 | 88 | 89 | 120 => {
                self.atom()?;
                self.take(match tag {
                    101 | 102 => 5,
                    103 => 9,
                    89 => 8,
                    _ => 12,
                })?;
            }
            114 => {
                let n = self.u16()?;
                self.atom()?;
                self.take(1)?;
                self.take(n * 4)?;
            }
            90 => {
                let n = self.u16()?;
                self.atom()?;
                self.take(4)?;
                self.take(n * 4)?;
            }
            104 => {
                let n = self.u8()? as usize;
                self.terms(n, d)?;
            }
            105 => {
                let n = self.u32()?;
                let n = self.count(n, 1)?;
                self.terms(n, d)?;
            }
            106 => {}
            107 => {
                let n = self.u16()?;
                self.take(n)?;
            }
            108 => {
                let n = self.u32()?;
                let n = self.count(n, 1)?;
                self.terms(n, d)?;
                self.term(d)?;
            }
            109 => {
                let n = self.u32()?;
                self.take(n)?;
            }
            110 => {
                let n = self.u8()? as usize;
                if self.u8()? > 1 {
                    return Err("bad bignum sign".into());
                }
                self.take(n)?;
            }
            111 => {
                let n = self.u32()?;
                if self.u8()? > 1 {
                    return Err("bad bignum sign".into());
                }
                self.take(n)?;
            }
            116 => {
                let n = self.u32()?;
                let n = self.count(n, 2)?;
                self.terms(n * 2, d)?;
            }
            80 => return Err("compressed terms are not supported".into()),
            t => return Err(format!("unsupported term tag {t}")),
        }
        Ok(())
    }
}

/// Checks that `bytes` is one complete ETF term (with the 131 version byte) that `eetf` can
/// decode without panicking or allocating more than the input justifies.
pub fn check_etf(bytes: &[u8]) -> Result<(), String> {
    let mut c = Checker {
        buf: bytes,
        pos: 0,
        terms: 0,
    };
    if c.u8().map_err(|_| "empty frame".to_string())? != VERSION_MAGIC {
        return Err("not an external term (bad version byte)".into());
    }
    c.term(0)?;
    if c.pos != bytes.len() {
        return Err(format!(
            "{} trailing bytes after the term",
            bytes.len() - c.pos
        ));
    }
    Ok(())
}

/// Decodes untrusted ETF bytes into a term: [`check_etf`] first, then `eetf`.
pub fn decode_term(bytes: &[u8]) -> Result<Term, DecodeError> {
    check_etf(bytes).map_err(DecodeError::new)?;
    Term::decode(bytes).map_err(|e| DecodeError::new(format!("bad external term: {e}")))
}

/// Encodes a term to ETF bytes (with the version byte, without the length prefix).
pub fn encode_term(term: &Term) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec only fails for atoms longer than 65535 bytes, which we never build.
    if term.encode(&mut out).is_err() {
        out.clear();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_hostile_etf() {
        // DISTRIBUTION_HEADER and ATOM_CACHE_REF hit `unimplemented!()` in eetf.
        assert!(decode_term(&[131, 68, 0]).is_err());
        assert!(decode_term(&[131, 82, 0]).is_err());
        // A list claiming 4 billion elements.
        assert!(decode_term(&[131, 108, 255, 255, 255, 255, 106]).is_err());
        // A binary claiming 4 GiB.
        assert!(decode_term(&[131, 109, 255, 255, 255, 255]).is_err());
        // Bitstring with 0 tail bits (shift overflow in eetf).
        assert!(decode_term(&[131, 77, 0, 0, 0, 1, 0, 5]).is_err());
        // Deep nesting.
        let mut deep = vec![131];
        for _ in 0..100_000 {
            deep.extend_from_slice(&[108, 0, 0, 0, 1]);
        }
        deep.push(106);
        assert!(decode_term(&deep).is_err());
        // Compressed.
        assert!(decode_term(&[131, 80, 0, 0, 0, 1, 0]).is_err());
        assert!(decode_term(&[]).is_err());
        // Trailing bytes.
        assert!(check_etf(&[131, 106, 0]).is_err());
        assert!(check_etf(&[131, 106]).is_ok());
    }
}
