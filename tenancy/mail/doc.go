// Package mail defines outgoing mail: the Message that tenancy queues in its
// mail outbox (in the same transaction as the change that causes it) and the
// Mailer that a sender uses to deliver it. Implementations live in
// subpackages or in server: SMTP for production, a log mailer for `dev`.
//
// It knows nothing of Postgres; the outbox table belongs to tenancystore.
package mail
