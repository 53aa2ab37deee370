//! The Fluss RPC frame codec. Every integer is big-endian.
//!
//! ```text
//! request        : i32 frame_length | i16 api_key | i16 api_version | i32 request_id | body
//! SUCCESS        : i32 frame_length | i8 0 | i32 request_id | body
//! ERROR_RESPONSE : i32 frame_length | i8 1 | i32 request_id | ErrorResponse{1: code, 2: message}
//! ```
//!
//! `frame_length` counts the bytes after itself. This server never sends SERVER_FAILURE
//! (type 2, no request id): the Rust client reads a request id from every response and would
//! leave the caller hanging. Every error is an ERROR_RESPONSE.
//!
//! Decoding is incremental: it takes bytes from the front of a [`BytesMut`] and returns
//! `Ok(None)` while a frame is incomplete. A negative length, one shorter than the header or
//! one above the configured maximum is a [`FrameError`], reported as soon as the four length
//! bytes are in, without waiting for the body; the connection it came from must be closed.
//! Decoding never panics, whatever the bytes.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message;

use crate::wire::messages::ErrorResponse;

/// Bytes of the length prefix.
pub const LENGTH_FIELD_LEN: usize = 4;
/// Bytes of a request header after the length: api key, api version, request id.
pub const REQUEST_HEADER_LEN: usize = 8;
/// Bytes of a response header after the length: type, request id.
pub const RESPONSE_HEADER_LEN: usize = 5;
/// The default largest `frame_length` accepted (the setting `net.max-frame-size`).
pub const DEFAULT_MAX_FRAME_SIZE: usize = 100 * 1024 * 1024;

/// Response type byte of a SUCCESS frame.
pub const RESPONSE_TYPE_SUCCESS: u8 = 0;
/// Response type byte of an ERROR_RESPONSE frame.
pub const RESPONSE_TYPE_ERROR: u8 = 1;
/// Response type byte of a SERVER_FAILURE frame; recognised only to be refused.
pub const RESPONSE_TYPE_SERVER_FAILURE: u8 = 2;

/// One request as it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestFrame {
    pub api_key: i16,
    pub api_version: i16,
    pub request_id: i32,
    /// The protobuf request body, not yet decoded.
    pub body: Bytes,
}

/// One response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseFrame {
    /// Type 0: the protobuf response body.
    Success { request_id: i32, body: Bytes },
    /// Type 1: a whole-request error.
    Error { request_id: i32, error_code: i32, error_message: Option<String> },
}

impl ResponseFrame {
    pub fn request_id(&self) -> i32 {
        match self {
            ResponseFrame::Success { request_id, .. } | ResponseFrame::Error { request_id, .. } => {
                *request_id
            }
        }
    }
}

/// A stream that cannot be split into frames; the connection must be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("negative frame length {0}")]
    NegativeLength(i32),
    #[error("frame length {length} is shorter than the {header}-byte header")]
    ShorterThanHeader { length: usize, header: usize },
    #[error("frame length {length} exceeds the maximum frame size {max}")]
    TooLarge { length: usize, max: usize },
    #[error("the stream ended inside a frame ({buffered} bytes buffered)")]
    Truncated { buffered: usize },
    #[error("unsupported response type {0}")]
    UnsupportedResponseType(u8),
    #[error("malformed ErrorResponse body: {0}")]
    CorruptErrorResponse(String),
}

/// Frame encoding and decoding with a maximum frame size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameCodec {
    max_frame_size: usize,
}

impl Default for FrameCodec {
    fn default() -> Self {
        FrameCodec::new(DEFAULT_MAX_FRAME_SIZE)
    }
}

impl FrameCodec {
    /// `max_frame_size` bounds `frame_length` (the bytes after the length field), both when
    /// decoding and when encoding. It is raised to at least the largest header so that an empty
    /// body always fits, and capped at `i32::MAX`, the largest length the field can carry.
    pub fn new(max_frame_size: usize) -> Self {
        let max_frame_size =
            max_frame_size.max(REQUEST_HEADER_LEN.max(RESPONSE_HEADER_LEN)).min(i32::MAX as usize);
        FrameCodec { max_frame_size }
    }

    pub fn max_frame_size(&self) -> usize {
        self.max_frame_size
    }

    /// Takes the next complete request from the front of `buf`; `Ok(None)` if more bytes are
    /// needed (then `buf` is untouched).
    pub fn decode_request(&self, buf: &mut BytesMut) -> Result<Option<RequestFrame>, FrameError> {
        let Some(mut frame) = self.split_frame(buf, REQUEST_HEADER_LEN)? else {
            return Ok(None);
        };
        let api_key = frame.get_i16();
        let api_version = frame.get_i16();
        let request_id = frame.get_i32();
        Ok(Some(RequestFrame { api_key, api_version, request_id, body: frame }))
    }

    /// Takes the next complete response from the front of `buf`; `Ok(None)` if more bytes are
    /// needed (then `buf` is untouched).
    pub fn decode_response(&self, buf: &mut BytesMut) -> Result<Option<ResponseFrame>, FrameError> {
        // SERVER_FAILURE has no request id, so its shortest frame is one byte; refuse it by type
        // before asking for a request id.
        if let Some(&kind) = buf.get(LENGTH_FIELD_LEN) {
            if kind != RESPONSE_TYPE_SUCCESS && kind != RESPONSE_TYPE_ERROR {
                self.check_length(buf, 1)?;
                return Err(FrameError::UnsupportedResponseType(kind));
            }
        }
        let Some(mut frame) = self.split_frame(buf, RESPONSE_HEADER_LEN)? else {
            return Ok(None);
        };
        let kind = frame.get_u8();
        let request_id = frame.get_i32();
        match kind {
            RESPONSE_TYPE_SUCCESS => Ok(Some(ResponseFrame::Success { request_id, body: frame })),
            RESPONSE_TYPE_ERROR => {
                let error = ErrorResponse::decode(frame)
                    .map_err(|error| FrameError::CorruptErrorResponse(error.to_string()))?;
                Ok(Some(ResponseFrame::Error {
                    request_id,
                    error_code: error.error_code,
                    error_message: error.error_message,
                }))
            }
            other => Err(FrameError::UnsupportedResponseType(other)),
        }
    }

    /// The whole size (length prefix included) of the request frame at the front of `buf`,
    /// once its four length bytes are in; a bad length is an error at once. Reserves nothing.
    pub fn request_frame_size(&self, buf: &[u8]) -> Result<Option<usize>, FrameError> {
        Ok(self.check_length(buf, REQUEST_HEADER_LEN)?.map(|length| LENGTH_FIELD_LEN + length))
    }

    /// At the end of the stream: anything left in `buf` is a frame cut short.
    pub fn check_eof(&self, buf: &BytesMut) -> Result<(), FrameError> {
        if buf.is_empty() {
            Ok(())
        } else {
            Err(FrameError::Truncated { buffered: buf.len() })
        }
    }

    /// Appends a request frame to `dst`. Fails, writing nothing, if it would exceed the maximum.
    pub fn encode_request(
        &self,
        frame: &RequestFrame,
        dst: &mut BytesMut,
    ) -> Result<(), FrameError> {
        let length = self.frame_length(REQUEST_HEADER_LEN, frame.body.len())?;
        dst.reserve(LENGTH_FIELD_LEN + length as usize);
        dst.put_i32(length);
        dst.put_i16(frame.api_key);
        dst.put_i16(frame.api_version);
        dst.put_i32(frame.request_id);
        dst.put_slice(&frame.body);
        Ok(())
    }

    /// Appends a response frame to `dst`. Fails, writing nothing, if it would exceed the
    /// maximum.
    pub fn encode_response(
        &self,
        frame: &ResponseFrame,
        dst: &mut BytesMut,
    ) -> Result<(), FrameError> {
        match frame {
            ResponseFrame::Success { request_id, body } => {
                self.put_response(RESPONSE_TYPE_SUCCESS, *request_id, body, dst)
            }
            ResponseFrame::Error { request_id, error_code, error_message } => {
                let body =
                    ErrorResponse { error_code: *error_code, error_message: error_message.clone() }
                        .encode_to_vec();
                self.put_response(RESPONSE_TYPE_ERROR, *request_id, &body, dst)
            }
        }
    }

    /// The header of a SUCCESS frame whose body is `body_len` bytes: what goes on the wire
    /// before the body, so that a large body is written after it without being copied into
    /// the frame. Fails if the frame would exceed the maximum.
    pub fn success_header(&self, request_id: i32, body_len: usize) -> Result<Bytes, FrameError> {
        let length = self.frame_length(RESPONSE_HEADER_LEN, body_len)?;
        let mut header = BytesMut::with_capacity(LENGTH_FIELD_LEN + RESPONSE_HEADER_LEN);
        header.put_i32(length);
        header.put_u8(RESPONSE_TYPE_SUCCESS);
        header.put_i32(request_id);
        Ok(header.freeze())
    }

    fn put_response(
        &self,
        kind: u8,
        request_id: i32,
        body: &[u8],
        dst: &mut BytesMut,
    ) -> Result<(), FrameError> {
        let length = self.frame_length(RESPONSE_HEADER_LEN, body.len())?;
        dst.reserve(LENGTH_FIELD_LEN + length as usize);
        dst.put_i32(length);
        dst.put_u8(kind);
        dst.put_i32(request_id);
        dst.put_slice(body);
        Ok(())
    }

    fn frame_length(&self, header: usize, body: usize) -> Result<i32, FrameError> {
        let length = header.saturating_add(body);
        if length > self.max_frame_size {
            return Err(FrameError::TooLarge { length, max: self.max_frame_size });
        }
        // max_frame_size <= i32::MAX, so this cannot fail; never panic all the same.
        i32::try_from(length).map_err(|_| FrameError::TooLarge { length, max: self.max_frame_size })
    }

    /// Validates the length prefix at the front of `buf`, if it is all there. Returns the
    /// frame length, or `None` if fewer than four bytes are buffered.
    fn check_length(&self, buf: &[u8], header: usize) -> Result<Option<usize>, FrameError> {
        let Some(prefix) = buf.get(..LENGTH_FIELD_LEN) else {
            return Ok(None);
        };
        let mut prefix = prefix;
        let length = prefix.get_i32();
        if length < 0 {
            return Err(FrameError::NegativeLength(length));
        }
        let length = length as usize;
        if length < header {
            return Err(FrameError::ShorterThanHeader { length, header });
        }
        if length > self.max_frame_size {
            return Err(FrameError::TooLarge { length, max: self.max_frame_size });
        }
        Ok(Some(length))
    }

    /// Splits the next whole frame (without its length prefix) off the front of `buf`.
    fn split_frame(&self, buf: &mut BytesMut, header: usize) -> Result<Option<Bytes>, FrameError> {
        let Some(length) = self.check_length(buf, header)? else {
            return Ok(None);
        };
        let total = LENGTH_FIELD_LEN + length;
        if buf.len() < total {
            // Make room for the rest of the frame (bounded by the maximum) in one allocation.
            buf.reserve(total - buf.len());
            return Ok(None);
        }
        let mut frame = buf.split_to(total);
        frame.advance(LENGTH_FIELD_LEN);
        Ok(Some(frame.freeze()))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn request(api_key: i16, api_version: i16, request_id: i32, body: &[u8]) -> RequestFrame {
        RequestFrame { api_key, api_version, request_id, body: Bytes::copy_from_slice(body) }
    }

    #[test]
    fn decodes_the_captured_api_versions_frame() {
        let mut bytes = BytesMut::new();
        bytes.put_slice(&[0, 0, 0, 0x1b, 0x03, 0xe8, 0, 0, 0, 0, 0, 0]);
        bytes.put_slice(b"\x0a\x0afluss-rust\x12\x051.0.0");
        let frame = FrameCodec::default().decode_request(&mut bytes).unwrap().unwrap();
        assert_eq!(frame, request(1000, 0, 0, b"\x0a\x0afluss-rust\x12\x051.0.0"));
        assert!(bytes.is_empty());
    }

    #[test]
    fn needs_more_bytes_until_the_frame_is_complete() {
        let codec = FrameCodec::default();
        let mut whole = BytesMut::new();
        codec.encode_request(&request(1016, 2, 7, b"hello"), &mut whole).unwrap();
        for cut in 0..whole.len() {
            let mut partial = BytesMut::from(&whole[..cut]);
            assert_eq!(codec.decode_request(&mut partial), Ok(None), "cut at {cut}");
            assert_eq!(partial.len(), cut, "a partial frame stays buffered");
            assert_eq!(codec.check_eof(&partial).is_err(), cut > 0);
        }
        let frame = codec.decode_request(&mut whole).unwrap().unwrap();
        assert_eq!(frame, request(1016, 2, 7, b"hello"));
    }

    #[test]
    fn decodes_back_to_back_frames() {
        let codec = FrameCodec::default();
        let mut buf = BytesMut::new();
        for id in 0..3 {
            codec.encode_request(&request(1017, 1, id, &[id as u8; 3]), &mut buf).unwrap();
        }
        for id in 0..3 {
            let frame = codec.decode_request(&mut buf).unwrap().unwrap();
            assert_eq!(frame.request_id, id);
        }
        assert_eq!(codec.decode_request(&mut buf), Ok(None));
    }

    #[test]
    fn refuses_negative_short_and_oversized_lengths_before_the_body() {
        let codec = FrameCodec::new(1024);
        let mut negative = BytesMut::from(&[0xff, 0xff, 0xff, 0xfe][..]);
        assert_eq!(codec.decode_request(&mut negative), Err(FrameError::NegativeLength(-2)));
        let mut short = BytesMut::from(&[0, 0, 0, 7, 1, 2, 3, 4, 5, 6, 7][..]);
        assert_eq!(
            codec.decode_request(&mut short),
            Err(FrameError::ShorterThanHeader { length: 7, header: 8 })
        );
        let mut oversized = BytesMut::from(&[0, 0, 4, 1][..]);
        assert_eq!(
            codec.decode_request(&mut oversized),
            Err(FrameError::TooLarge { length: 1025, max: 1024 })
        );
        let mut at_max = BytesMut::from(&[0, 0, 4, 0][..]);
        assert_eq!(codec.decode_request(&mut at_max), Ok(None));
    }

    #[test]
    fn refuses_to_encode_above_the_maximum() {
        let codec = FrameCodec::new(16);
        let mut dst = BytesMut::new();
        assert!(codec.encode_request(&request(1, 0, 0, &[0; 8]), &mut dst).is_ok());
        let too_big = ResponseFrame::Success { request_id: 0, body: Bytes::from(vec![0; 12]) };
        assert_eq!(
            codec.encode_response(&too_big, &mut dst),
            Err(FrameError::TooLarge { length: 17, max: 16 })
        );
        assert_eq!(dst.len(), 20, "a refused frame writes nothing");
    }

    #[test]
    fn error_response_bytes_are_as_fluss_sends_them() {
        let frame = ResponseFrame::Error {
            request_id: 5,
            error_code: 2,
            error_message: Some("no".to_string()),
        };
        let mut dst = BytesMut::new();
        FrameCodec::default().encode_response(&frame, &mut dst).unwrap();
        assert_eq!(&dst[..], &[0, 0, 0, 11, 1, 0, 0, 0, 5, 0x08, 0x02, 0x12, 0x02, b'n', b'o']);
    }

    #[test]
    fn refuses_server_failure_and_unknown_response_types() {
        let codec = FrameCodec::default();
        let mut failure = BytesMut::from(&[0, 0, 0, 3, 2, 0x08, 0x01][..]);
        assert_eq!(
            codec.decode_response(&mut failure),
            Err(FrameError::UnsupportedResponseType(2))
        );
        let mut unknown = BytesMut::from(&[0, 0, 0, 5, 9, 0, 0, 0, 0][..]);
        assert_eq!(
            codec.decode_response(&mut unknown),
            Err(FrameError::UnsupportedResponseType(9))
        );
        let mut corrupt = BytesMut::from(&[0, 0, 0, 6, 1, 0, 0, 0, 0, 0x0a][..]);
        assert!(matches!(
            codec.decode_response(&mut corrupt),
            Err(FrameError::CorruptErrorResponse(_))
        ));
    }

    #[test]
    fn the_maximum_is_clamped() {
        assert_eq!(FrameCodec::new(0).max_frame_size(), REQUEST_HEADER_LEN);
        assert_eq!(FrameCodec::new(usize::MAX).max_frame_size(), i32::MAX as usize);
    }

    fn response_strategy() -> impl Strategy<Value = ResponseFrame> {
        prop_oneof![
            (any::<i32>(), proptest::collection::vec(any::<u8>(), 0..64)).prop_map(
                |(request_id, body)| ResponseFrame::Success { request_id, body: Bytes::from(body) }
            ),
            (any::<i32>(), any::<i32>(), proptest::option::of(".{0,16}")).prop_map(
                |(request_id, error_code, error_message)| ResponseFrame::Error {
                    request_id,
                    error_code,
                    error_message
                }
            ),
        ]
    }

    proptest! {
        #[test]
        fn requests_round_trip(
            api_key in any::<i16>(),
            api_version in any::<i16>(),
            request_id in any::<i32>(),
            body in proptest::collection::vec(any::<u8>(), 0..256),
            trailing in proptest::collection::vec(any::<u8>(), 0..8),
        ) {
            let codec = FrameCodec::default();
            let frame = request(api_key, api_version, request_id, &body);
            let mut buf = BytesMut::new();
            codec.encode_request(&frame, &mut buf).unwrap();
            buf.put_slice(&trailing);
            prop_assert_eq!(codec.decode_request(&mut buf).unwrap(), Some(frame));
            prop_assert_eq!(&buf[..], &trailing[..]);
        }

        #[test]
        fn responses_round_trip(frame in response_strategy()) {
            let codec = FrameCodec::default();
            let mut buf = BytesMut::new();
            codec.encode_response(&frame, &mut buf).unwrap();
            prop_assert_eq!(codec.decode_response(&mut buf).unwrap(), Some(frame));
            prop_assert!(buf.is_empty());
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let codec = FrameCodec::new(32);
            let mut requests = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = codec.decode_request(&mut requests) {}
            let mut responses = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = codec.decode_response(&mut responses) {}
        }
    }
}
