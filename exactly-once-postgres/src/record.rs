//! The stored response as it lies in a session's row: status, headers, body, trailers.
//!
//! Headers and trailers are kept as `bytea` in one simple form: for each field, the
//! name's length (u16, big-endian), the name, the value's length (u32), the value.
//! Values are bytes, not text (HTTP allows any visible byte in them).

use bytes::Bytes;
use exactly_once::tower::{StoredHeaders, StoredResponse};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Version};

/// A response's columns, ready to be written.
#[derive(Debug)]
pub(crate) struct Columns {
    pub(crate) status: i16,
    pub(crate) headers: Vec<u8>,
    pub(crate) body: Vec<u8>,
    pub(crate) trailers: Option<Vec<u8>>,
}

impl Columns {
    pub(crate) fn of(response: &StoredResponse) -> Columns {
        Columns {
            status: response.status.as_u16() as i16,
            headers: encode(response.headers.iter()),
            body: response.body.to_vec(),
            trailers: response.trailers.as_deref().map(|t| encode(t.iter())),
        }
    }
}

/// The stored response of a row, or `None` if the row's columns do not make one (a row
/// written by something else than this crate).
pub(crate) fn decode_response(
    status: i16,
    headers: &[u8],
    body: Vec<u8>,
    trailers: Option<&[u8]>,
) -> Option<StoredResponse> {
    let status = StatusCode::from_u16(u16::try_from(status).ok()?).ok()?;
    let headers = decode(headers)?;
    let trailers = match trailers {
        Some(bytes) => Some(Box::new(decode(bytes)?)),
        None => None,
    };
    Some(StoredResponse {
        status,
        version: Version::HTTP_11,
        headers: StoredHeaders::new(&headers),
        body: Bytes::from(body),
        trailers,
    })
}

fn encode<'a>(fields: impl Iterator<Item = (&'a HeaderName, &'a HeaderValue)>) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        let name = name.as_str().as_bytes();
        // Header names are short (hyper refuses names over 64 KiB anyway).
        out.extend_from_slice(&(name.len() as u16).to_be_bytes());
        out.extend_from_slice(name);
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

fn decode(mut bytes: &[u8]) -> Option<HeaderMap> {
    let mut map = HeaderMap::new();
    while !bytes.is_empty() {
        let (len, rest) = bytes.split_first_chunk::<2>()?;
        let (name, rest) = rest.split_at_checked(usize::from(u16::from_be_bytes(*len)))?;
        let (len, rest) = rest.split_first_chunk::<4>()?;
        let (value, rest) = rest.split_at_checked(u32::from_be_bytes(*len) as usize)?;
        map.append(
            HeaderName::from_bytes(name).ok()?,
            HeaderValue::from_bytes(value).ok()?,
        );
        bytes = rest;
    }
    Some(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_comes_back_as_it_was_stored_repeated_fields_and_trailers_included() {
        let mut headers = HeaderMap::new();
        headers.append("set-cookie", HeaderValue::from_static("a=1"));
        headers.append("set-cookie", HeaderValue::from_static("b=2"));
        headers.insert("x-bytes", HeaderValue::from_bytes(b"\xfe\xff").unwrap());
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        let response = StoredResponse {
            status: StatusCode::ACCEPTED,
            version: Version::HTTP_11,
            headers: StoredHeaders::new(&headers),
            body: Bytes::from_static(b"done"),
            trailers: Some(Box::new(trailers.clone())),
        };
        let c = Columns::of(&response);
        let back = decode_response(c.status, &c.headers, c.body, c.trailers.as_deref()).unwrap();
        assert_eq!(back.status, StatusCode::ACCEPTED);
        assert_eq!(back.headers.to_map(), headers);
        assert_eq!(back.body, "done");
        assert_eq!(back.trailers.as_deref(), Some(&trailers));
    }

    #[test]
    fn a_damaged_row_is_no_response() {
        assert!(decode(&[0, 5, b'a']).is_none(), "a name cut short");
        assert!(
            decode(&[0, 1, b'a', 0, 0, 0, 9]).is_none(),
            "a value cut short"
        );
        assert!(
            decode_response(1000, &[], vec![], None).is_none(),
            "no such status"
        );
    }
}
