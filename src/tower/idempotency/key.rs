//! The `Idempotency-Key` header's value: an RFC 8941 sf-string (`"…"`), or the same key
//! unquoted, as many clients send it.

use std::borrow::Cow;
use std::fmt;

/// The header a client names its operation with.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// The header the layer adds to every answer it gives from a record rather than from a
/// run (`true`): a duplicate's answer.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// The longest key taken by default, in bytes (as Stripe's).
pub const DEFAULT_MAX_KEY_LEN: usize = 255;

/// Why an `Idempotency-Key` header was refused (400); nothing ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdempotencyKeyError {
    /// The request has no key, and the layer requires one.
    Missing,
    /// The header is given more than once: parties reading the first and the last
    /// would disagree on the operation.
    Duplicate,
    /// The key is empty (`""`, or a blank header).
    Empty,
    /// The key is longer than the layer takes.
    TooLong {
        /// The most bytes a key may have.
        max: usize,
    },
    /// A byte of the key is not visible ASCII (`!` to `~`): a space, a control byte
    /// or a byte above 127.
    NotVisibleAscii,
    /// A quoted key is not a well-formed sf-string: no closing quote, an escape of
    /// anything but `"` or `\`, or text after the closing quote.
    Malformed,
}

impl fmt::Display for IdempotencyKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdempotencyKeyError::Missing => f.write_str("the request has no Idempotency-Key"),
            IdempotencyKeyError::Duplicate => {
                f.write_str("the Idempotency-Key header is given more than once")
            }
            IdempotencyKeyError::Empty => f.write_str("the Idempotency-Key is empty"),
            IdempotencyKeyError::TooLong { max } => {
                write!(f, "the Idempotency-Key is longer than {max} bytes")
            }
            IdempotencyKeyError::NotVisibleAscii => {
                f.write_str("the Idempotency-Key has a byte that is not visible ASCII")
            }
            IdempotencyKeyError::Malformed => {
                f.write_str("the Idempotency-Key is not a well-formed sf-string")
            }
        }
    }
}

impl std::error::Error for IdempotencyKeyError {}

/// The key a header value names: an sf-string (`"…"`, whose `\"` and `\\` stand for
/// `"` and `\`), or the key itself, unquoted. Spaces around the value are ignored (as
/// RFC 8941 does); the key itself must be 1 to `max_len` bytes of visible ASCII.
/// Borrowed from `value` unless it had escapes.
pub fn parse_idempotency_key(
    value: &[u8],
    max_len: usize,
) -> Result<Cow<'_, [u8]>, IdempotencyKeyError> {
    let value = trim_spaces(value);
    let key = match value.split_first() {
        Some((b'"', quoted)) => unquote(quoted)?,
        _ => Cow::Borrowed(value),
    };
    if key.is_empty() {
        return Err(IdempotencyKeyError::Empty);
    }
    if key.len() > max_len {
        return Err(IdempotencyKeyError::TooLong { max: max_len });
    }
    if !key.iter().all(u8::is_ascii_graphic) {
        return Err(IdempotencyKeyError::NotVisibleAscii);
    }
    Ok(key)
}

/// The inside of an sf-string whose opening quote is gone: up to its closing quote,
/// which must end `rest`.
fn unquote(rest: &[u8]) -> Result<Cow<'_, [u8]>, IdempotencyKeyError> {
    let Some(end) = rest.iter().position(|&b| b == b'"' || b == b'\\') else {
        return Err(IdempotencyKeyError::Malformed); // no closing quote
    };
    if rest[end] == b'"' {
        // The common case, no escape: borrowed.
        return match end + 1 == rest.len() {
            true => Ok(Cow::Borrowed(&rest[..end])),
            false => Err(IdempotencyKeyError::Malformed),
        };
    }
    let mut key = rest[..end].to_vec();
    let mut bytes = rest[end..].iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'\\' => match bytes.next() {
                Some(&escaped @ (b'"' | b'\\')) => key.push(escaped),
                _ => return Err(IdempotencyKeyError::Malformed),
            },
            b'"' if bytes.as_slice().is_empty() => return Ok(Cow::Owned(key)),
            b'"' => return Err(IdempotencyKeyError::Malformed),
            b => key.push(b),
        }
    }
    Err(IdempotencyKeyError::Malformed)
}

fn trim_spaces(mut value: &[u8]) -> &[u8] {
    while let [b' ', rest @ ..] = value {
        value = rest;
    }
    while let [rest @ .., b' '] = value {
        value = rest;
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(value: &str) -> Result<String, IdempotencyKeyError> {
        let key = parse_idempotency_key(value.as_bytes(), 8)?;
        Ok(String::from_utf8(key.into_owned()).unwrap())
    }

    #[test]
    fn a_key_is_an_sf_string_or_the_same_key_unquoted() {
        assert_eq!(key("\"abc\""), Ok("abc".into()));
        assert_eq!(key("abc"), Ok("abc".into()));
        assert_eq!(key("  \"abc\" "), Ok("abc".into()));
        assert_eq!(key(r#""a\"b\\c""#), Ok(r#"a"b\c"#.into()));
        assert_eq!(
            key("a\"b"),
            Ok("a\"b".into()),
            "unquoted keys are taken as they are"
        );
    }

    #[test]
    fn empty_over_long_invisible_and_malformed_keys_are_refused() {
        use IdempotencyKeyError::*;
        for (value, error) in [
            ("", Empty),
            ("   ", Empty),
            ("\"\"", Empty),
            ("123456789", TooLong { max: 8 }),
            ("\"123456789\"", TooLong { max: 8 }),
            ("a b", NotVisibleAscii),
            ("\"a b\"", NotVisibleAscii),
            ("a\tb", NotVisibleAscii),
            ("\"abc", Malformed),
            ("\"abc\"x", Malformed),
            ("\"abc\";p=1", Malformed),
            (r#""a\nb""#, Malformed),
            (r#""abc\"#, Malformed),
            (r#""a\"b"#, Malformed),
        ] {
            assert_eq!(key(value), Err(error), "{value:?}");
        }
        assert_eq!(
            parse_idempotency_key("é".as_bytes(), 8),
            Err(NotVisibleAscii)
        );
        assert_eq!(
            parse_idempotency_key(&[b'"', 0x80, b'"'], 8),
            Err(NotVisibleAscii)
        );
    }
}
