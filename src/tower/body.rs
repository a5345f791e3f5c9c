//! Reading a whole body under a limit, without copying a body that comes in one frame,
//! optionally charging each frame's bytes to a budget as they arrive.

use super::store::BoxError;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use http_body::Body;
use std::future::poll_fn;
use std::pin::pin;

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

/// The whole of `body`, at most `limit` bytes; trailers are dropped. A body of one data
/// frame is handed on as it came (for `Bytes` data, without a copy or an allocation); only
/// a second frame makes a buffer that the frames are joined in.
pub(crate) async fn read_limited<B>(body: B, limit: usize) -> Result<Bytes, ReadError>
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
) -> Result<Bytes, ReadError>
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
    while !body.is_end_stream() {
        let Some(frame) = poll_fn(|cx| body.as_mut().poll_frame(cx)).await else {
            break;
        };
        let frame = frame.map_err(|e| ReadError::Body(e.into()))?;
        let Ok(mut data) = frame.into_data() else {
            continue; // trailers
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
    Ok(joined.map_or(first, BytesMut::freeze))
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
        runtime.unwrap().block_on(read_limited(body, limit))
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
        assert_eq!(read.unwrap(), "abcde");
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
    fn a_failing_body_is_an_error() {
        let failing = Frames([Ok("ab"), Err("broken")].into_iter().collect());
        assert!(matches!(read(failing, 10), Err(ReadError::Body(e)) if e.to_string() == "broken"));
    }
}
