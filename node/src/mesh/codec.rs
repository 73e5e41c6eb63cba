//! The wire codec of `/otto/handoff/1`: one envelope per request, one envelope per answer.
//!
//! # Wire format
//!
//! Each request opens a new stream. The requester writes the binary (CBOR) form of one
//! envelope ([`otto_protocol::encode_envelope`]) and closes its side of the stream; the
//! responder reads to the end, at most [`MAX_REQUEST_BYTES`], answers with one envelope, at
//! most [`MAX_ANSWER_BYTES`], and closes the stream. There is no other framing: the end of
//! the stream ends the message.
//!
//! The reader never trusts a length it has not counted: it reads through a `take` of the
//! limit plus one byte, so an endless stream costs at most the limit. A request over the
//! limit is an I/O error (the stream is dropped without an answer); a request within the
//! limit that does not decode is handed on as [`HandoffRequest::Malformed`], so the node
//! can answer it with a `malformed` reject.
#![warn(clippy::unwrap_used)]

use std::io;

use futures::prelude::*;
use libp2p::StreamProtocol;
use libp2p::request_response::Codec;
use otto_protocol::limits::{
    MAX_ACCEPT_BYTES, MAX_ENVELOPE_BYTES, MAX_JOIN_RESPONSE_BYTES, MAX_LOG_LINES_BYTES,
    MAX_REJECT_BYTES,
};
use otto_protocol::{DecodeError, Envelope, Kind};

/// The largest request: an envelope of the largest payload (an offer of 16 MiB) and its
/// signatures, [`MAX_ENVELOPE_BYTES`].
pub const MAX_REQUEST_BYTES: usize = MAX_ENVELOPE_BYTES;

/// The largest answer: the largest answer payload (a join response or log lines, 128 KiB)
/// plus 64 KiB for the payload type and signatures.
pub const MAX_ANSWER_BYTES: usize = max(
    max(MAX_ACCEPT_BYTES, MAX_REJECT_BYTES),
    max(MAX_JOIN_RESPONSE_BYTES, MAX_LOG_LINES_BYTES),
) + 64 * 1024;

/// The payload types a request on `/otto/handoff/1` may carry.
pub(crate) const REQUEST_KINDS: [Kind; 6] = [
    Kind::Offer,
    Kind::Receipt,
    Kind::JoinRequest,
    Kind::RevocationList,
    Kind::LogRequest,
    Kind::Retry,
];

/// The payload types an answer on `/otto/handoff/1` may carry.
pub(crate) const ANSWER_KINDS: [Kind; 4] = [
    Kind::Accept,
    Kind::Reject,
    Kind::JoinResponse,
    Kind::LogLines,
];

/// A request as read from a stream: an envelope of an allowed kind within its limits, or
/// the reason it is not one.
#[derive(Debug)]
pub(crate) enum HandoffRequest {
    /// A well-formed envelope of one of the [`REQUEST_KINDS`]; its signatures are not
    /// checked yet.
    Envelope(Envelope),
    /// Bytes within the size limit that are not such an envelope.
    Malformed(DecodeError),
}

/// The request-response codec of `/otto/handoff/1`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct HandoffCodec;

/// Decodes a request body: an envelope whose payload type is one of [`REQUEST_KINDS`] and
/// whose payload is within that kind's size limit. The payload itself is decoded by the
/// node after it has checked the signatures.
pub(crate) fn decode_request(bytes: &[u8]) -> Result<Envelope, DecodeError> {
    let envelope = otto_protocol::decode_envelope(bytes)?;
    check_kind(&envelope, &REQUEST_KINDS)?;
    Ok(envelope)
}

/// Decodes an answer body: an envelope whose payload type is one of [`ANSWER_KINDS`].
pub(crate) fn decode_answer(bytes: &[u8]) -> Result<Envelope, DecodeError> {
    if bytes.len() > MAX_ANSWER_BYTES {
        return Err(DecodeError::TooLarge {
            kind: "answer",
            len: bytes.len(),
            max: MAX_ANSWER_BYTES,
        });
    }
    let envelope = otto_protocol::decode_envelope(bytes)?;
    check_kind(&envelope, &ANSWER_KINDS)?;
    Ok(envelope)
}

/// Checks that an envelope's payload type is one of `kinds` and its payload within the
/// kind's size limit.
pub(crate) fn check_kind(envelope: &Envelope, kinds: &[Kind]) -> Result<Kind, DecodeError> {
    let kind: Kind = envelope.payload_type.parse()?;
    if !kinds.contains(&kind) {
        return Err(DecodeError::Malformed(format!(
            "a {kind} is not expected here"
        )));
    }
    otto_protocol::check_len(kind, envelope.payload.len())?;
    Ok(kind)
}

/// Reads a stream to its end, failing once it is longer than `limit` bytes.
async fn read_capped<T>(io: &mut T, limit: usize) -> io::Result<Vec<u8>>
where
    T: AsyncRead + Unpin + Send,
{
    let mut bytes = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    io.take(cap).read_to_end(&mut bytes).await?;
    if bytes.len() > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("message is over the limit of {limit} bytes"),
        ));
    }
    Ok(bytes)
}

/// Writes one envelope and closes the writing side of the stream.
async fn write_envelope<T>(io: &mut T, envelope: &Envelope) -> io::Result<()>
where
    T: AsyncWrite + Unpin + Send,
{
    io.write_all(&otto_protocol::encode_envelope(envelope))
        .await?;
    io.close().await
}

const fn max(a: usize, b: usize) -> usize {
    if a > b { a } else { b }
}

impl Codec for HandoffCodec {
    type Protocol = StreamProtocol;
    type Request = HandoffRequest;
    type Response = Envelope;

    async fn read_request<T>(&mut self, _: &Self::Protocol, io: &mut T) -> io::Result<Self::Request>
    where
        T: AsyncRead + Unpin + Send,
    {
        let bytes = read_capped(io, MAX_REQUEST_BYTES).await?;
        Ok(match decode_request(&bytes) {
            Ok(envelope) => HandoffRequest::Envelope(envelope),
            Err(err) => HandoffRequest::Malformed(err),
        })
    }

    async fn read_response<T>(
        &mut self,
        _: &Self::Protocol,
        io: &mut T,
    ) -> io::Result<Self::Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        let bytes = read_capped(io, MAX_ANSWER_BYTES).await?;
        decode_answer(&bytes).map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))
    }

    async fn write_request<T>(
        &mut self,
        _: &Self::Protocol,
        io: &mut T,
        request: Self::Request,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        match request {
            HandoffRequest::Envelope(envelope) => write_envelope(io, &envelope).await,
            HandoffRequest::Malformed(err) => Err(io::Error::new(io::ErrorKind::InvalidInput, err)),
        }
    }

    async fn write_response<T>(
        &mut self,
        _: &Self::Protocol,
        io: &mut T,
        response: Self::Response,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_envelope(io, &response).await
    }
}

#[cfg(test)]
mod tests {
    use otto_protocol::{Accept, HandoffId, Message};

    use super::*;

    fn accept() -> Envelope {
        Envelope::unsigned(&Message::Accept(Accept {
            id: HandoffId([7; 16]),
            stage: "deploy".to_owned(),
            attempt: 1,
        }))
    }

    #[test]
    fn answers_are_read_within_their_limit() {
        let bytes = otto_protocol::encode_envelope(&accept());
        assert_eq!(decode_answer(&bytes).ok(), Some(accept()));
        assert!(matches!(
            decode_answer(&vec![0; MAX_ANSWER_BYTES + 1]),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    #[test]
    fn a_request_of_the_wrong_kind_is_malformed() {
        // An accept is an answer, never a request.
        let bytes = otto_protocol::encode_envelope(&accept());
        assert!(matches!(
            decode_request(&bytes),
            Err(DecodeError::Malformed(_))
        ));
        assert!(decode_request(b"\xff\x00garbage").is_err());
        assert!(decode_request(&[]).is_err());
    }

    #[test]
    fn reading_stops_one_byte_past_the_limit() {
        let endless = futures::io::repeat(0);
        let mut io = endless;
        let read = futures::executor::block_on(read_capped(&mut io, 1024));
        assert_eq!(
            read.map_err(|err| err.kind()),
            Err(io::ErrorKind::InvalidData)
        );
    }
}
