//! Reading a whole body under a limit, without copying a body that comes in one frame,
//! optionally charging each frame's bytes to a budget as they arrive; and
//! [`WholeBody`], the body a whole body is handed on in, its trailers included.

use super::store::BoxError;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use std::convert::Infallible;
use std::future::poll_fn;
use std::pin::{pin, Pin};
use std::task::{Context, Poll};

/// A body read in full: its bytes, in one data frame, then its trailers, if it had any
/// (gRPC's status travels in them). The layer answers in it (the first answer and every
/// resend alike), hands whole requests on in it, and the [`Client`](super::Client)
/// answers in it.
///
/// Its size is exact when it has no trailers; with trailers it announces none, so that
/// an HTTP/1.1 server sends it chunked, the only framing that carries trailers.
#[derive(Clone, Debug, Default)]
pub struct WholeBody {
    data: Bytes,
    // Boxed: a body without trailers (most) stays as small as `Bytes` and an option.
    trailers: Option<Box<HeaderMap>>,
}

impl WholeBody {
    /// A body of `data`, then `trailers` if there are some.
    pub fn new(data: Bytes, trailers: Option<HeaderMap>) -> Self {
        let trailers = trailers.map(Box::new);
        WholeBody { data, trailers }
    }

    /// The bytes not yet sent.
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// The trailers, if it has them and has not sent them yet.
    pub fn trailers(&self) -> Option<&HeaderMap> {
        self.trailers.as_deref()
    }

    /// Its bytes and trailers.
    pub fn into_parts(self) -> (Bytes, Option<HeaderMap>) {
        (self.data, self.trailers.map(|t| *t))
    }

    /// A body of `data`, then `trailers`, already boxed.
    pub(crate) fn from_boxed(data: Bytes, trailers: Option<Box<HeaderMap>>) -> Self {
        WholeBody { data, trailers }
    }

    /// Its bytes and trailers, still boxed.
    pub(crate) fn into_boxed_parts(self) -> (Bytes, Option<Box<HeaderMap>>) {
        (self.data, self.trailers)
    }
}

impl From<Bytes> for WholeBody {
    fn from(data: Bytes) -> Self {
        WholeBody::new(data, None)
    }
}

impl Body for WholeBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if !self.data.is_empty() {
            return Poll::Ready(Some(Ok(Frame::data(std::mem::take(&mut self.data)))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(*t))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_empty() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        let len = self.data.len() as u64;
        match self.trailers {
            None => SizeHint::with_exact(len),
            Some(_) => {
                let mut hint = SizeHint::new();
                hint.set_lower(len);
                hint
            }
        }
    }
}

/// Why a body could not be read in full.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The body is longer than the limit.
    TooLarge,
    /// The charge for a frame was refused (the budget cannot take its bytes).
    Refused,
    /// The body failed.
    Body(BoxError),
}

/// The whole of `body`, at most `limit` bytes, with its trailers. A body of one data
/// frame is handed on as it came (for `Bytes` data, without a copy or an allocation); only
/// a second frame makes a buffer that the frames are joined in.
pub(crate) async fn read_limited<B>(body: B, limit: usize) -> Result<WholeBody, ReadError>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    read_charged(body, limit, |_| true).await
}

/// [`read_limited`] that asks `charge(n)` for the `n` bytes of each data frame as it
/// arrives, before keeping them: a refused charge ends the read with
/// [`ReadError::Refused`], so what the read holds is never more than was charged.
pub(crate) async fn read_charged<B>(
    body: B,
    limit: usize,
    mut charge: impl FnMut(usize) -> bool,
) -> Result<WholeBody, ReadError>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let mut body = pin!(body);
    if body.size_hint().lower() > limit as u64 {
        return Err(ReadError::TooLarge);
    }
    let mut first = Bytes::new();
    let mut joined: Option<BytesMut> = None;
    let mut read = 0usize;
    // Boxed: the read's future, which holds it across awaits, stays small.
    let mut trailers: Option<Box<HeaderMap>> = None;
    while !body.is_end_stream() {
        let Some(frame) = poll_fn(|cx| body.as_mut().poll_frame(cx)).await else {
            break;
        };
        let frame = frame.map_err(|e| ReadError::Body(e.into()))?;
        let mut data = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => {
                if let Ok(more) = frame.into_trailers() {
                    match &mut trailers {
                        Some(trailers) => trailers.extend(more),
                        None => trailers = Some(Box::new(more)),
                    }
                }
                continue;
            }
        };
        let len = data.remaining();
        read = read.saturating_add(len);
        if read > limit {
            return Err(ReadError::TooLarge);
        }
        if !charge(len) {
            return Err(ReadError::Refused);
        }
        match &mut joined {
            Some(joined) => joined.put(data),
            None if first.is_empty() => first = data.copy_to_bytes(len),
            None => {
                let mut buffer = BytesMut::with_capacity(read);
                buffer.put(std::mem::take(&mut first));
                buffer.put(data);
                joined = Some(buffer);
            }
        }
    }
    let data = joined.map_or(first, BytesMut::freeze);
    Ok(WholeBody::from_boxed(data, trailers))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Frame;
    use http_body_util::Full;
    use std::collections::VecDeque;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// A body of the given frames, each data or an error, with no size hint.
    struct Frames(VecDeque<Result<&'static str, &'static str>>);

    impl Body for Frames {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            let next = self.0.pop_front().map(|frame| match frame {
                Ok(data) => Ok(Frame::data(Bytes::from_static(data.as_bytes()))),
                Err(e) => Err(e.into()),
            });
            Poll::Ready(next)
        }
    }

    fn frames(parts: &[&'static str]) -> Frames {
        Frames(parts.iter().map(|p| Ok(*p)).collect())
    }

    fn read<B: Body>(body: B, limit: usize) -> Result<Bytes, ReadError>
    where
        B::Error: Into<BoxError>,
    {
        let runtime = tokio::runtime::Builder::new_current_thread().build();
        let whole = runtime.unwrap().block_on(read_limited(body, limit));
        whole.map(|whole| whole.into_parts().0)
    }

    #[test]
    fn one_frame_is_handed_on_as_it_came() {
        let data = Bytes::from(vec![7u8; 100]);
        let read = read(Full::new(data.clone()), 100).unwrap();
        assert_eq!(read.as_ptr(), data.as_ptr(), "not copied");
        assert_eq!(read, data);
    }

    #[test]
    fn frames_are_joined_and_empty_bodies_read_as_empty() {
        assert_eq!(read(frames(&["ab", "", "cd", "e"]), 5).unwrap(), "abcde");
        assert_eq!(read(frames(&["", "ab"]), 5).unwrap(), "ab");
        assert_eq!(read(frames(&[]), 0).unwrap(), "");
        assert_eq!(read(Full::new(Bytes::new()), 0).unwrap(), "");
    }

    #[test]
    fn a_body_over_the_limit_is_refused_however_it_is_framed() {
        let too_large = |r| matches!(r, Err(ReadError::TooLarge));
        assert!(too_large(read(frames(&["ab", "cd"]), 3)));
        assert!(too_large(read(frames(&["abcd"]), 3)));
        assert!(too_large(read(Full::new(Bytes::from_static(b"abcd")), 3)));
    }

    #[test]
    fn each_frame_is_charged_before_it_is_kept_and_a_refused_charge_ends_the_read() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut charged = Vec::new();
        let read = runtime.block_on(read_charged(frames(&["ab", "cde"]), 10, |n| {
            charged.push(n);
            true
        }));
        assert_eq!(read.unwrap().data(), "abcde");
        assert_eq!(charged, [2, 3]);
        let mut room = 4;
        let refused = runtime.block_on(read_charged(frames(&["ab", "cde"]), 10, |n| {
            let fits = n <= room;
            room = room.saturating_sub(n);
            fits
        }));
        assert!(matches!(refused, Err(ReadError::Refused)));
    }

    #[test]
    fn trailers_are_kept_and_sent_after_the_bytes() {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for data in ["", "abc"] {
            let sent = WholeBody::new(Bytes::from_static(data.as_bytes()), Some(trailers.clone()));
            assert!(!sent.is_end_stream());
            assert_eq!(sent.size_hint().exact(), None, "sent chunked in HTTP/1.1");
            let read = runtime.block_on(read_limited(sent, 10)).unwrap();
            assert_eq!(read.data(), data);
            assert_eq!(read.trailers(), Some(&trailers));
            let collected = runtime.block_on(http_body_util::BodyExt::collect(read));
            let collected = collected.unwrap();
            assert_eq!(collected.trailers(), Some(&trailers));
            assert_eq!(collected.to_bytes(), data);
        }
        let plain = WholeBody::from(Bytes::from_static(b"abc"));
        assert_eq!(plain.size_hint().exact(), Some(3));
        assert!(WholeBody::default().is_end_stream());
    }

    #[test]
    fn a_failing_body_is_an_error() {
        let failing = Frames([Ok("ab"), Err("broken")].into_iter().collect());
        assert!(matches!(read(failing, 10), Err(ReadError::Body(e)) if e.to_string() == "broken"));
    }
}
