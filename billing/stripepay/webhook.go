package stripepay

import (
	"errors"
	"io"
	"net/http"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/webhook"

	"github.com/tenantplane/tenantplane/internal/errcode"
)

// SignatureHeader is the header that carries a webhook's signature.
const SignatureHeader = "Stripe-Signature"

// ErrBadSignature is a webhook whose signature none of the secrets
// verifies, or whose timestamp is outside the tolerance.
var ErrBadSignature = errcode.New(errcode.BadUserInput, "webhook signature not verified")

// Verify checks a webhook body's signature against each configured secret
// and the timestamp against the tolerance, and returns the event. Stripe
// speaks a newer API version than stripe-go v76 expects; the event's
// object is decoded by our own types, so the version is not checked.
func (s *Service) Verify(body []byte, header string) (stripe.Event, error) {
	opts := webhook.ConstructEventOptions{Tolerance: s.cfg.WebhookTolerance, IgnoreAPIVersionMismatch: true}
	for _, secret := range s.cfg.WebhookSecrets {
		e, err := webhook.ConstructEventWithOptions(body, header, secret, opts)
		switch {
		case err == nil:
			if e.ID == "" || e.Type == "" {
				return stripe.Event{}, errcode.Invalid("event", "has no id or type")
			}
			return e, nil
		case errors.Is(err, webhook.ErrNoValidSignature):
			continue // perhaps signed with the next secret
		case errors.Is(err, webhook.ErrTooOld), errors.Is(err, webhook.ErrNotSigned), errors.Is(err, webhook.ErrInvalidHeader):
			return stripe.Event{}, ErrBadSignature
		default: // signed, but not an event
			return stripe.Event{}, errcode.Invalid("event", "body is not a Stripe event")
		}
	}
	return stripe.Event{}, ErrBadSignature
}

// Webhook returns the handler of POST /webhooks/stripe: 400 and no change
// for a body that is not verified, 500 when processing fails (Stripe then
// retries, and nothing was applied), 200 otherwise, duplicates included.
func (s *Service) Webhook() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxWebhookBytes))
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
				return
			}
			http.Error(w, "reading body", http.StatusBadRequest)
			return
		}
		e, err := s.Verify(body, r.Header.Get(SignatureHeader))
		if err != nil {
			s.metrics.rejected.Inc()
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if _, err := s.HandleEvent(r.Context(), body, e); err != nil {
			s.log.Error("stripe webhook", "event", e.ID, "type", e.Type, "err", err)
			http.Error(w, "event not processed; retry later", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"received":true}`))
	})
}
