// Package mail defines outgoing mail: the Message that tenancy queues in its
// mail outbox (in the same transaction as the change that causes it) and the
// Mailer that a sender uses to deliver it. LogMailer, here, writes messages
// to a logger for `make run`; the SMTP Mailer lives in a subpackage.
//
// It knows nothing of Postgres; the outbox table belongs to tenancystore.
package mail
