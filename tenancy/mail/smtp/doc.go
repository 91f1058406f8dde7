// Package smtp delivers outgoing mail through an SMTP submission server: a
// [mail.Mailer] for production.
//
// Each [Mailer.Send] opens one connection (STARTTLS, implicit TLS or, on a
// loopback host only, plain), authenticates with PLAIN or LOGIN when
// credentials are set, and submits one RFC 5322 message: CRLF line endings,
// headers encoded with RFC 2047 Q-encoding and folded, bodies in
// quoted-printable, multipart/alternative when there is an HTML part, and a
// Message-ID derived from the outbox id so a retried delivery carries the same
// id and receivers can recognise it.
//
// It must not send credentials over an unencrypted connection to another
// host, nor fall back to plain text when STARTTLS is missing. It knows
// nothing of the outbox: retries and their schedule belong to the sender that
// calls it, which can tell with [Permanent] when a message will never be
// accepted.
package smtp
