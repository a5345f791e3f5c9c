//! The `Idempotency-Key` parser: arbitrary header values never panic; a key it takes is
//! 1 to `max_len` bytes of visible ASCII and is what RFC 8941's own algorithm for an
//! sf-string reads (or the value itself, unquoted); a key written back as an sf-string
//! reads as the same key; and a value it refuses is refused for a reason that holds.
//! The first input byte is the length limit, the rest the header value.

#![no_main]

use exactly_once::tower::idempotency::{parse_idempotency_key, IdempotencyKeyError};
use libfuzzer_sys::fuzz_target;

/// RFC 8941 section 4.2.5 (Parsing a String), on what follows the opening quote, with
/// nothing allowed after the closing quote: the string, or `None`. Its check of each
/// character's range is left out: a key must be visible ASCII, which is stricter, and
/// is checked on the result.
fn rfc_string(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let (&c, tail) = rest.split_first()?;
        rest = tail;
        match c {
            b'\\' => {
                let (&next, tail) = rest.split_first()?;
                rest = tail;
                if next != b'"' && next != b'\\' {
                    return None;
                }
                out.push(next);
            }
            b'"' => return rest.is_empty().then_some(out),
            c => out.push(c),
        }
    }
}

fn trimmed(value: &[u8]) -> &[u8] {
    let start = value.iter().position(|&b| b != b' ').unwrap_or(value.len());
    let end = value.iter().rposition(|&b| b != b' ').map_or(start, |i| i + 1);
    &value[start..end.max(start)]
}

fuzz_target!(|data: &[u8]| {
    let Some((&max_len, value)) = data.split_first() else {
        return;
    };
    let max_len = usize::from(max_len);
    let parsed = parse_idempotency_key(value, max_len);
    let value = trimmed(value);
    let expected = match value.first() {
        Some(b'"') => rfc_string(&value[1..]),
        _ => Some(value.to_vec()),
    };
    match parsed {
        Ok(key) => {
            assert!(!key.is_empty() && key.len() <= max_len);
            assert!(key.iter().all(u8::is_ascii_graphic));
            assert_eq!(Some(key.to_vec()), expected, "not what RFC 8941 reads");
            // Written back as an sf-string, it reads as the same key.
            let mut quoted = vec![b'"'];
            for &b in key.iter() {
                if b == b'"' || b == b'\\' {
                    quoted.push(b'\\');
                }
                quoted.push(b);
            }
            quoted.push(b'"');
            let again = parse_idempotency_key(&quoted, max_len).expect("its own sf-string");
            assert_eq!(again, key);
        }
        Err(IdempotencyKeyError::Malformed) => {
            assert!(value.first() == Some(&b'"'));
            // RFC 8941 refuses it too, or reads text the key may not hold anyway.
            if let Some(text) = expected {
                panic!("RFC 8941 reads {text:?}, the parser calls it malformed");
            }
        }
        Err(IdempotencyKeyError::Empty) => assert_eq!(expected, Some(Vec::new())),
        Err(IdempotencyKeyError::TooLong { max }) => {
            assert_eq!(max, max_len);
            assert!(expected.is_some_and(|k| k.len() > max_len));
        }
        Err(IdempotencyKeyError::NotVisibleAscii) => {
            let k = expected.expect("a key that reads");
            assert!(!k.is_empty() && k.len() <= max_len);
            assert!(!k.iter().all(u8::is_ascii_graphic));
        }
        Err(e) => panic!("the parser of one value gave {e:?}"),
    }
});
