//! The headers of a stored response, kept without an allocation when they are few.

use http::{HeaderMap, HeaderName, HeaderValue};
use std::fmt;

/// How many headers are kept in place; a response with more keeps the rest in a list.
const IN_PLACE: usize = 3;

type Header = (HeaderName, HeaderValue);

/// The headers of a [`StoredResponse`](super::StoredResponse), in the order the response
/// had them (a name with several values once per value). Up to three are kept in place,
/// in the session's allocation of the response: copying the headers of a typical
/// response for resends allocates nothing, where a copy of a [`HeaderMap`] takes two
/// allocations on the path of every request.
#[derive(Clone, Default)]
pub struct StoredHeaders {
    in_place: [Option<Header>; IN_PLACE],
    more: Vec<Header>,
}

impl StoredHeaders {
    /// A copy of every value in `headers`.
    pub fn new(headers: &HeaderMap) -> Self {
        let mut stored = StoredHeaders::default();
        let mut all = headers.iter();
        for (slot, (name, value)) in stored.in_place.iter_mut().zip(all.by_ref()) {
            *slot = Some((name.clone(), value.clone()));
        }
        let rest = headers.len().saturating_sub(IN_PLACE);
        if rest > 0 {
            stored.more.reserve_exact(rest);
            stored
                .more
                .extend(all.map(|(name, value)| (name.clone(), value.clone())));
        }
        stored
    }

    /// Every header, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
        let in_place = self.in_place.iter().map_while(Option::as_ref);
        in_place
            .chain(&self.more)
            .map(|(name, value)| (name, value))
    }

    /// How many values there are.
    pub fn len(&self) -> usize {
        self.in_place.iter().filter(|h| h.is_some()).count() + self.more.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.in_place[0].is_none()
    }

    /// The headers as a map, for an answer.
    pub fn to_map(&self) -> HeaderMap {
        let mut map = HeaderMap::with_capacity(self.len());
        for (name, value) in self.iter() {
            map.append(name, value.clone());
        }
        map
    }
}

impl fmt::Debug for StoredHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn headers_are_kept_in_order_however_many_there_are() {
        let names = ["a", "b", "a", "c", "d", "a", "e"];
        let values = ["1", "2", "3", "4", "5", "6", "7"];
        for n in 0..=names.len() {
            let pairs: Vec<_> = names.iter().copied().zip(values).take(n).collect();
            let original = map(&pairs);
            let stored = StoredHeaders::new(&original);
            assert_eq!(stored.len(), n);
            assert_eq!(stored.is_empty(), n == 0);
            let kept: Vec<_> = stored.iter().collect();
            let expected: Vec<_> = original.iter().collect();
            assert_eq!(kept, expected, "{n} headers");
            assert_eq!(stored.to_map(), original);
            assert_eq!(stored.more.capacity(), n.saturating_sub(IN_PLACE));
        }
    }
}
