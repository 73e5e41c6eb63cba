//! Size limits: the largest encoding of each message kind, the largest collections inside
//! them, and the field bounds within which a sender's message always fits.
//!
//! A receiver checks the byte length of a message against its kind's limit **before**
//! decoding anything, caps every collection while decoding, and limits CBOR nesting, so
//! hostile bytes cost at most a bounded amount of memory and time.
//!
//! The field bounds ([`MAX_NAME_LEN`] and friends) are not checked by the decoder: they are
//! what a sender stays within to be sure its message fits. Only totals and counts are
//! enforced on receipt.

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// Largest encoded offer: 16 MiB, because it carries the whole plan and the receipt chain.
pub const MAX_OFFER_BYTES: usize = 16 * MIB;
/// Largest encoded accept: 4 KiB.
pub const MAX_ACCEPT_BYTES: usize = 4 * KIB;
/// Largest encoded reject: 64 KiB.
pub const MAX_REJECT_BYTES: usize = 64 * KIB;
/// Largest encoded retry request: 64 KiB (a node certificate and a reason).
pub const MAX_RETRY_BYTES: usize = 64 * KIB;
/// Largest encoded receipt: 1 MiB.
pub const MAX_RECEIPT_BYTES: usize = MIB;
/// Largest encoded status event: 1 MiB.
pub const MAX_STATUS_BYTES: usize = MIB;
/// Largest encoded artifact request: 1 KiB.
pub const MAX_ARTIFACT_REQUEST_BYTES: usize = KIB;
/// Largest data part of one artifact chunk: 1 MiB.
pub const MAX_ARTIFACT_CHUNK_DATA: usize = MIB;
/// Largest encoded artifact chunk: [`MAX_ARTIFACT_CHUNK_DATA`] plus 1 KiB for the other fields.
pub const MAX_ARTIFACT_CHUNK_BYTES: usize = MAX_ARTIFACT_CHUNK_DATA + KIB;
/// Largest encoded log request: 1 KiB.
pub const MAX_LOG_REQUEST_BYTES: usize = KIB;
/// Largest encoded log lines answer: 128 KiB (it travels as an answer on
/// `/otto/handoff/1`, whose answers are at most 192 KiB with their envelope).
pub const MAX_LOG_LINES_BYTES: usize = 128 * KIB;
/// Largest encoded join request: 128 KiB.
pub const MAX_JOIN_REQUEST_BYTES: usize = 128 * KIB;
/// Largest encoded join response: 128 KiB.
pub const MAX_JOIN_RESPONSE_BYTES: usize = 128 * KIB;
/// Largest encoded revocation list: 4 MiB.
pub const MAX_REVOCATION_LIST_BYTES: usize = 4 * MIB;
/// Largest encoded node certificate: 32 KiB.
pub const MAX_NODE_CERTIFICATE_BYTES: usize = 32 * KIB;
/// Largest encoded envelope: the largest payload ([`MAX_OFFER_BYTES`]) plus 64 KiB for the
/// payload type and signatures.
pub const MAX_ENVELOPE_BYTES: usize = MAX_OFFER_BYTES + 64 * KIB;
/// Largest DSSE JSON envelope accepted by [`Envelope::from_json`](crate::Envelope::from_json):
/// base64 grows bytes by 4/3, plus room for the JSON around them.
pub const MAX_ENVELOPE_JSON_BYTES: usize = MAX_ENVELOPE_BYTES / 3 * 4 + 64 * KIB;

/// Deepest nesting of CBOR arrays and maps a decoder follows (an offer needs 5).
pub const MAX_DEPTH: usize = 16;

/// Most receipts in an offer's receipt chain.
pub const MAX_RECEIPTS: usize = 1024;
/// Most artifacts in an offer's inputs or a receipt's outputs.
pub const MAX_ARTIFACTS: usize = 1024;
/// Most upstream receipt digests in a receipt.
pub const MAX_UPSTREAM: usize = 1024;
/// Most entries in the `vars` map of an offer's facts.
pub const MAX_VARS: usize = 1024;
/// Most log lines in one status event.
pub const MAX_LOG_LINES: usize = 256;
/// Most lines in one log lines answer.
pub const MAX_LOG_FETCH_LINES: usize = 4096;
/// Most signatures on one envelope.
pub const MAX_SIGNATURES: usize = 16;
/// Most addresses in a join request.
pub const MAX_ADDRS: usize = 32;
/// Most entries in each list of a node certificate's roles or a join scope.
pub const MAX_SCOPE_ENTRIES: usize = 64;
/// Most revoked nodes in one revocation list.
pub const MAX_REVOKED: usize = 8192;

/// Sender bound for identifiers and short strings: run and stage ids, node, org and artifact
/// names, plan digests, peer ids, addresses, key ids, roles, scope globs, reject codes,
/// payload types, revocation reasons. 256 bytes of UTF-8.
pub const MAX_NAME_LEN: usize = 256;
/// Sender bound for human text: reject message and hint, status detail, join refusal
/// reason, fact values, a git URL. 4 KiB of UTF-8.
pub const MAX_TEXT_LEN: usize = 4 * KIB;
/// Sender bound for one log line in a status event: 2 KiB of UTF-8 (split longer lines).
pub const MAX_LOG_LINE_LEN: usize = 2 * KIB;
/// Sender bound for the text of one log lines answer: 96 KiB of UTF-8 over all its lines
/// (each within [`MAX_LOG_LINE_LEN`]).
pub const MAX_LOG_FETCH_BYTES: usize = 96 * KIB;
/// Sender bound for an invite token in a join request: 8 KiB.
pub const MAX_TOKEN_LEN: usize = 8 * KIB;
