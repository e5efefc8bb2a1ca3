//! The spec read by hand, in one pass: the first look builds only the
//! fields of [`ROOT`] and steps over the rest (Docker's seccomp list is
//! most of a spec) without building or checking it; the whole read builds
//! everything, as serde would.
//!
//! Both vouch only for what they read plainly. Anything else (an escape in
//! a key or a kept string, a number serde would make a float, a key twice,
//! two spellings of one field, a wrong type, invalid UTF-8 anywhere) gives
//! `None`, and the caller reads the spec with serde ([`super::read`]),
//! which also words the errors. What they build is what serde builds, so
//! judging it judges what runc runs. What the first look steps over it
//! need not check: a spec that is not JSON there is one runc refuses.

use serde_json::{Map, Value};

use super::{ROOT, Shape, folds_to};

/// How deep arrays and objects may nest, the root's counted: deeper, serde
/// decides (its limit is 127 levels), rather than this reader's stack
/// running out.
const MAX_DEPTH: usize = 100;

/// The fields of [`ROOT`] in `bytes`, or `None` where only the whole read
/// can vouch for them.
pub(super) fn look(bytes: &[u8]) -> Option<Value> {
    read::<false>(bytes)
}

/// The whole spec as [`super::read`] reads it (ds01's fields under its
/// spelling of their names, everything else as it is), or `None` where
/// serde's reading must decide.
pub(super) fn whole(bytes: &[u8]) -> Option<Value> {
    read::<true>(bytes)
}

/// `WHOLE`: every field built, not only ds01's. Two readers, so that the
/// first look, which every container pays, stays small code.
fn read<const WHOLE: bool>(bytes: &[u8]) -> Option<Value> {
    // Invalid UTF-8, which Go replaces, is the whole read's to handle.
    let text = std::str::from_utf8(bytes).ok()?;
    let mut r = Reader::<WHOLE> {
        text,
        b: bytes,
        i: 0,
        depth: 0,
    };
    r.ws();
    if r.peek()? != b'{' {
        return None;
    }
    // What follows the first value is never read, as with Go's decoder.
    r.value(&ROOT)
}

/// `v` kept as `key`; a key twice, or two spellings of one field, is the
/// whole read's to judge.
fn keep(map: &mut Map<String, Value>, key: &str, v: Value) -> Option<bool> {
    match map.entry(key) {
        serde_json::map::Entry::Vacant(slot) => {
            slot.insert(v);
            Some(true)
        }
        serde_json::map::Entry::Occupied(_) => None,
    }
}

struct Reader<'a, const WHOLE: bool> {
    text: &'a str,
    /// `text`'s bytes.
    b: &'a [u8],
    i: usize,
    /// How deep in arrays and objects the reader is.
    depth: usize,
}

impl<'a, const WHOLE: bool> Reader<'a, WHOLE> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// JSON's whitespace, and only it.
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    fn null(&mut self) -> bool {
        let null = self.b[self.i..].starts_with(b"null");
        if null {
            self.i += 4;
        }
        null
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        self.ws();
        (self.peek()? == c).then(|| self.i += 1)
    }

    /// A value of `shape`; `null` stands for an absent field, as in Go.
    fn value(&mut self, shape: &Shape) -> Option<Value> {
        self.ws();
        if self.null() {
            return Some(Value::Null);
        }
        match shape {
            Shape::String => self.string().map(|s| Value::String(s.to_string())),
            Shape::Bool => self.boolean().map(Value::Bool),
            Shape::Integer => self.integer().map(Value::from),
            Shape::Array(item) => self.array(|r| r.value(item)),
            Shape::Object(fields) => self.object(fields.len(), |r, key, map| {
                let found = fields
                    .iter()
                    .find(|(name, _)| *name == key)
                    .or_else(|| fields.iter().find(|(name, _)| folds_to(key, name)));
                // A field ds01 does not read is stepped over, or kept as
                // it is.
                let Some((name, sub)) = found else {
                    if !WHOLE {
                        return Some(false);
                    }
                    let v = r.any()?;
                    return keep(map, key, v);
                };
                let v = r.value(sub)?;
                keep(map, name, v)
            }),
            Shape::StringMap => self.object(0, |r, key, map| {
                let v = r.value(&Shape::String)?;
                keep(map, key, v)
            }),
        }
    }

    /// An object, each member read by `member`, which keeps it (`true`),
    /// leaves it to be stepped over (`false`, having read nothing) or
    /// gives up.
    fn object(
        &mut self,
        fields: usize,
        mut member: impl FnMut(&mut Self, &str, &mut Map<String, Value>) -> Option<bool>,
    ) -> Option<Value> {
        self.eat(b'{')?;
        self.deeper()?;
        let mut map = Map::with_capacity(fields);
        self.ws();
        if self.peek()? == b'}' {
            self.i += 1;
            self.depth -= 1;
            return Some(Value::Object(map));
        }
        loop {
            self.ws();
            let key = self.string()?;
            self.eat(b':')?;
            if !member(self, key, &mut map)? {
                self.skip()?;
            }
            self.ws();
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    self.depth -= 1;
                    return Some(Value::Object(map));
                }
                _ => return None,
            }
        }
    }

    /// One level deeper into arrays and objects; `None` past [`MAX_DEPTH`].
    /// (A reader that gives up is not used again: only a finished value
    /// comes back out.)
    fn deeper(&mut self) -> Option<()> {
        self.depth += 1;
        (self.depth < MAX_DEPTH).then_some(())
    }

    /// Any JSON value, as serde builds it.
    fn any(&mut self) -> Option<Value> {
        self.ws();
        match self.peek()? {
            b'{' => self.object(0, |r, key, map| {
                let v = r.any()?;
                keep(map, key, v)
            }),
            b'[' => self.array(Self::any),
            b'"' => self.string().map(|s| Value::String(s.to_string())),
            b'n' => self.null().then_some(Value::Null),
            b't' | b'f' => self.boolean().map(Value::Bool),
            _ => self.number(),
        }
    }

    fn array(&mut self, mut item: impl FnMut(&mut Self) -> Option<Value>) -> Option<Value> {
        self.eat(b'[')?;
        self.deeper()?;
        let mut out = Vec::new();
        self.ws();
        if self.peek()? == b']' {
            self.i += 1;
            self.depth -= 1;
            return Some(Value::Array(out));
        }
        // Room for most of a spec's lists at once (namespaces, options).
        out.reserve(8);
        loop {
            out.push(item(self)?);
            self.ws();
            match self.peek()? {
                b',' => self.i += 1,
                b']' => {
                    self.i += 1;
                    self.depth -= 1;
                    return Some(Value::Array(out));
                }
                _ => return None,
            }
        }
    }

    /// A string without escapes or control characters.
    fn string(&mut self) -> Option<&'a str> {
        if self.peek()? != b'"' {
            return None;
        }
        let start = self.i + 1;
        // Byte by byte: the strings of a spec are short.
        let len = self.b[start..]
            .iter()
            .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
        if self.b[start + len] != b'"' {
            return None;
        }
        self.i = start + len + 1;
        // Both ends are ASCII, so at a character's boundary.
        self.text.get(start..start + len)
    }

    fn boolean(&mut self) -> Option<bool> {
        for (word, v) in [(&b"true"[..], true), (b"false", false)] {
            if self.b[self.i..].starts_with(word) {
                self.i += word.len();
                return Some(v);
            }
        }
        None
    }

    /// A non-negative integer as JSON writes it (no leading zero, no
    /// fraction or exponent), within `u64`.
    fn integer(&mut self) -> Option<u64> {
        let end = self.digits(self.i)?;
        let n = self.text[self.i..end].parse().ok()?;
        self.i = end;
        Some(n)
    }

    /// An integer, as serde_json builds it: within `u64`, or negative
    /// within `i64` (serde makes `-0` a float, which is left to it).
    fn number(&mut self) -> Option<Value> {
        if self.peek()? != b'-' {
            return self.integer().map(Value::from);
        }
        let end = self.digits(self.i + 1)?;
        let n: i64 = self.text[self.i..end].parse().ok()?;
        if n == 0 {
            return None;
        }
        self.i = end;
        Some(Value::from(n))
    }

    /// Where the digits of an integer starting at `from` end: one or more,
    /// no leading zero, no fraction or exponent after.
    fn digits(&self, from: usize) -> Option<usize> {
        let n = self.b[from..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if n == 0 || (n > 1 && self.b[from] == b'0') {
            return None;
        }
        match self.b.get(from + n) {
            Some(b'.' | b'e' | b'E') => None,
            _ => Some(from + n),
        }
    }

    /// Steps over one value: strings whole, brackets counted. Only its end
    /// matters; runc refuses a spec that is not JSON here.
    fn skip(&mut self) -> Option<()> {
        self.ws();
        let b = self.b;
        let mut i = self.i;
        let mut depth = 0usize;
        loop {
            let c = *b.get(i)?;
            i += 1;
            match c {
                b'"' => loop {
                    let c = *b.get(i)?;
                    i += 1;
                    match c {
                        b'"' => break,
                        // An escape: the next byte never ends the string.
                        b'\\' => i += 1,
                        _ => {}
                    }
                },
                b'{' | b'[' => depth += 1,
                b'}' | b']' => depth = depth.checked_sub(1)?,
                // Inside: punctuation, whitespace and scalars alike.
                _ if depth > 0 => continue,
                b',' | b':' => return None,
                // A number, `true`, `false` or `null` alone: to its end.
                _ => {
                    while !matches!(
                        *b.get(i)?,
                        b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'
                    ) {
                        i += 1;
                    }
                }
            }
            if depth == 0 {
                self.i = i;
                return Some(());
            }
        }
    }
}
