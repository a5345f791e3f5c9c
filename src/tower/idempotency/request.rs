//! Which requests share a record, and whether a duplicate is the same request: the key
//! a record is found by ([`RecordKey`]: scope, method, path, client's key) and the
//! fingerprint it is kept with ([`Fingerprint`]: query, body, chosen headers). Pure
//! functions of the request, apart from where records live: a store that outlives the
//! process keeps the same bytes.

use http::request::Parts;
use http::HeaderName;
use std::fmt;
use std::hash::Hasher;
use std::sync::Arc;

/// What a record is found by: scope, method, path and the client's key, each with its
/// length before it (no two different quadruples give the same bytes).
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct RecordKey(Arc<[u8]>);

impl RecordKey {
    /// The key of `key` sent with `parts`, in `scope`.
    pub(crate) fn new(scope: &Scope, parts: &Parts, key: &[u8]) -> RecordKey {
        let (method, path) = (parts.method.as_str(), parts.uri.path());
        let mut bytes = Vec::with_capacity(32 + method.len() + path.len() + key.len());
        bytes.extend_from_slice(&[0; 4]);
        scope.write(parts, &mut bytes);
        let scope_len = bytes.len() - 4;
        bytes[..4].copy_from_slice(&(scope_len as u32).to_le_bytes());
        for part in [method.as_bytes(), path.as_bytes(), key] {
            bytes.extend_from_slice(&(part.len() as u32).to_le_bytes());
            bytes.extend_from_slice(part);
        }
        RecordKey(bytes.into())
    }

    /// Its bytes, as a store keeps them.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

impl fmt::Debug for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecordKey({} bytes)", self.0.len())
    }
}

/// Whose keys a request's key is among: requests of different scopes never share a
/// record, so one client can neither read nor block another's. Made by
/// [`IdempotencyLayer::scoped_by`](super::IdempotencyLayer::scoped_by); by default the
/// [digest](digest) of the `Authorization` header (requests without it share one scope).
#[derive(Clone)]
pub struct Scope(Arc<ScopeFn>);

type ScopeFn = dyn Fn(&Parts, &mut Vec<u8>) + Send + Sync;

impl Scope {
    /// The scope `scope(parts)` names, as bytes.
    pub fn new<S: AsRef<[u8]>>(scope: impl Fn(&Parts) -> S + Send + Sync + 'static) -> Self {
        Scope(Arc::new(move |parts, out| {
            out.extend_from_slice(scope(parts).as_ref())
        }))
    }

    /// The [digest] of the values of header `name` (in order; none is a scope too).
    pub fn by_header(name: HeaderName) -> Self {
        Scope(Arc::new(move |parts, out| {
            let mut digest = Digest::new();
            for value in parts.headers.get_all(&name) {
                digest.write_part(value.as_bytes());
            }
            out.extend_from_slice(&digest.finish())
        }))
    }

    fn write(&self, parts: &Parts, out: &mut Vec<u8>) {
        (self.0)(parts, out)
    }
}

impl Default for Scope {
    fn default() -> Self {
        Scope::by_header(http::header::AUTHORIZATION)
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Scope")
    }
}

/// What must be the same for a duplicate to get a record's answer: the [digest] of the
/// request's query, body and the configured headers' values. A request with a record's
/// key and another fingerprint is refused (422) and leaves the record as it was.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fingerprint([u8; 16]);

impl Fingerprint {
    /// The fingerprint of a request with head `parts` and body `body`, counting the
    /// headers `headers`.
    pub(crate) fn new(parts: &Parts, body: &[u8], headers: &[HeaderName]) -> Fingerprint {
        let mut digest = Digest::new();
        digest.write_part(parts.uri.query().unwrap_or("").as_bytes());
        digest.write_part(body);
        for name in headers {
            let values = parts.headers.get_all(name);
            digest.write_part(&(values.iter().count() as u64).to_le_bytes());
            for value in values {
                digest.write_part(value.as_bytes());
            }
        }
        Fingerprint(digest.finish())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({:02x}{:02x}…)", self.0[0], self.0[1])
    }
}

/// The 128-bit digest of scopes and fingerprints: SipHash-2-4 under two fixed keys,
/// the same in every process and version (a store that outlives the process compares
/// digests made by another). It is not a cryptographic hash: a client that crafted two
/// bodies of one digest would only get its own first answer for its second body; a
/// server whose scope comes from secrets an attacker could choose gives its own
/// [`Scope`].
///
/// Each part is written with its length before it.
struct Digest {
    halves: [DigestHasher; 2],
}

// std's SipHash-2-4 is deprecated only in favour of `DefaultHasher`, whose algorithm
// may change between versions; a digest kept across processes needs a fixed one.
#[allow(deprecated)]
type DigestHasher = std::hash::SipHasher;

/// The two fixed keys (the first 32 bytes of the fractional part of pi).
const DIGEST_KEYS: [(u64, u64); 2] = [
    (0x243f_6a88_85a3_08d3, 0x1319_8a2e_0370_7344),
    (0xa409_3822_299f_31d0, 0x082e_fa98_ec4e_6c89),
];

impl Digest {
    fn new() -> Self {
        #[allow(deprecated)]
        let hasher = |(k0, k1)| std::hash::SipHasher::new_with_keys(k0, k1);
        Digest {
            halves: DIGEST_KEYS.map(hasher),
        }
    }

    fn write_part(&mut self, part: &[u8]) {
        for half in &mut self.halves {
            half.write(&(part.len() as u64).to_le_bytes());
            half.write(part);
        }
    }

    fn finish(&self) -> [u8; 16] {
        let mut out = [0; 16];
        out[..8].copy_from_slice(&self.halves[0].finish().to_le_bytes());
        out[8..].copy_from_slice(&self.halves[1].finish().to_le_bytes());
        out
    }
}

/// The digest of `parts`, each with its length before it: what [`Scope::by_header`]
/// and fingerprints use, for a [`Scope`] of the caller's own.
pub fn digest<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> [u8; 16] {
    let mut digest = Digest::new();
    for part in parts {
        digest.write_part(part);
    }
    digest.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: &str, uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut request = http::Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(()).unwrap().into_parts().0
    }

    #[test]
    fn the_key_covers_scope_method_path_and_key_without_ambiguity() {
        let scope = Scope::default();
        let base = parts("POST", "/a", &[("authorization", "Bearer x")]);
        let key = |p: &Parts, k: &[u8]| RecordKey::new(&scope, p, k);
        assert!(
            key(&base, b"k")
                == key(
                    &parts("POST", "/a?q=1", &[("authorization", "Bearer x")]),
                    b"k"
                )
        );
        for other in [
            parts("POST", "/a", &[("authorization", "Bearer y")]),
            parts("POST", "/a", &[]),
            parts("PUT", "/a", &[("authorization", "Bearer x")]),
            parts("POST", "/b", &[("authorization", "Bearer x")]),
        ] {
            assert!(key(&base, b"k") != key(&other, b"k"));
        }
        assert!(key(&base, b"k") != key(&base, b"k2"));
        let by_path = Scope::new(|p: &Parts| p.uri.path().to_owned());
        let p = parts("POST", "/ab", &[]);
        let q = parts("POST", "/a", &[]);
        assert!(RecordKey::new(&by_path, &p, b"c") != RecordKey::new(&by_path, &q, b"bc"));
    }

    #[test]
    fn the_fingerprint_covers_query_body_and_the_chosen_headers_only() {
        let names = [HeaderName::from_static("x-amount")];
        let fp = |p: &Parts, body: &[u8]| Fingerprint::new(p, body, &names);
        let base = parts("POST", "/a?q=1", &[("x-amount", "5"), ("x-other", "1")]);
        let same = parts("POST", "/a?q=1", &[("x-amount", "5"), ("x-other", "2")]);
        assert!(fp(&base, b"body") == fp(&same, b"body"));
        assert!(fp(&base, b"body") != fp(&base, b"bodz"));
        assert!(fp(&base, b"body") != fp(&parts("POST", "/a?q=2", &[("x-amount", "5")]), b"body"));
        assert!(fp(&base, b"body") != fp(&parts("POST", "/a?q=1", &[("x-amount", "6")]), b"body"));
        assert!(fp(&base, b"body") != fp(&parts("POST", "/a?q=1", &[]), b"body"));
    }

    #[test]
    fn digests_are_the_same_in_every_process() {
        // Pinned: a store that outlives the process compares digests made by another.
        let abc = digest([&b"abc"[..]]);
        let pinned = [
            0x70, 0x08, 0xab, 0xb5, 0xc7, 0x0c, 0xfd, 0x73, 0xcd, 0xcb, 0xa9, 0xca, 0x4a, 0x32,
            0xc6, 0x24,
        ];
        assert_eq!(abc, pinned);
        assert_ne!(digest([&b"ab"[..], b"c"]), digest([&b"a"[..], b"bc"]));
    }
}
