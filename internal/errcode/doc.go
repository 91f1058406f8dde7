// Package errcode gives domain errors a stable, machine-readable code that
// clients can rely on, whatever the wording of the message.
//
// Domain packages return *Error (or wrap one); exactly one place per
// transport (the GraphQL error presenter, the HTTP error writer) turns a
// code into what the client sees. Errors without a code are internal: their
// text never reaches a client.
package errcode
