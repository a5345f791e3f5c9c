//! The layer's own answers: RFC 9457 problem details.
//!
//! Every answer the layer gives in place of the inner service is an
//! `application/problem+json` body with `type`, `title`, `status` and `detail`, and
//! carries the [`ERROR_HEADER`](super::ERROR_HEADER) header with the same code that ends
//! its `type` (the crate's [`Client`](super::Client) reads the header). An application's
//! own answers, kept and replayed, carry neither. Each `type` is
//! [`PROBLEM_TYPES`](super::PROBLEM_TYPES) followed by the code:
//!
//! | code | status | `Retry-After` | what happened; what the client does |
//! |---|---|---|---|
//! | `bad-key` | 400 | – | session or request header missing or malformed; nothing ran |
//! | `duplicate-key` | 400 | – | a session or request header given twice; nothing ran |
//! | `end-needs-delete` | 405 (`Allow: DELETE`) | – | number 0 (end) with a method other than `DELETE`; nothing ended |
//! | `incomplete-body` | 400 | 0 | the body failed before it was whole; nothing ran: send it again, whole |
//! | `request-too-large` | 413 | – | the body is over the request limit; nothing ran |
//! | `unknown-session` | 404 | – | never created, expired, evicted or ended; nothing ran now |
//! | `table-full` | 503 | 1 | no room for another session; ask again later |
//! | `over-budget` | 503 | 1 | the memory budget cannot take the body or the response; nothing ran: send it again later |
//! | `busy` | 409 | 1 | an earlier number is still running; send this one again once it is answered |
//! | `still-running` | 503 | 1 | a resend's wait ended before the run did; send it again later |
//! | `stale` | 409 | – | the client has moved past this number; nothing ran |
//! | `gone` | 410 | – | the session moved past this number while the resend waited |
//! | `abandoned` | 500 | – | the request's only run failed; it never runs again |
//! | `response-too-large` | 502 | – | the response is over the response limit; the request is abandoned |
//! | `bad-idempotency-key` | 400 | – | `Idempotency-Key` empty, over-long, not visible ASCII, a malformed sf-string or given twice; nothing ran |
//! | `idempotency-key-missing` | 400 | – | no `Idempotency-Key` where the [`IdempotencyLayer`](super::IdempotencyLayer) requires one; nothing ran |
//! | `idempotency-key-reused` | 422 | – | the key's record was made by a request with another body, query or fingerprinted header; nothing ran, the record is as it was |
//! | `idempotency-key-in-flight` | 409 | 1 | the key's request is still running (only with [`conflicting_in_flight`](super::IdempotencyLayer::conflicting_in_flight)); send it again later |
//!
//! `Retry-After` is on every refusal after which the same request may be sent again and
//! run, and on no other: a client that honours it never resends what cannot run.
