package billing

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tenantplane/tenantplane/internal/errcode"
)

// WebhookSignatureHeader carries the signature of an outgoing webhook:
// "t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" under the secret>",
// the scheme Stripe uses, so that a receiver can refuse replays of old
// deliveries.
const WebhookSignatureHeader = "Tenantplane-Signature"

// WebhookEventHeader carries the event's id, the same on every attempt, so
// a receiver can ignore a delivery it already processed.
const WebhookEventHeader = "Tenantplane-Event-Id"

// maxWebhookURL bounds a webhook URL's length.
const maxWebhookURL = 2048

// NewWebhookSecret returns a fresh random signing secret, "whsec_" and 32
// random bytes in base64url.
func NewWebhookSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("making webhook secret: %w", err)
	}
	return "whsec_" + base64.RawURLEncoding.EncodeToString(b), nil
}

// SignWebhook returns the signature header value for body sent at t.
func SignWebhook(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(webhookMAC(secret, ts, body))
}

func webhookMAC(secret, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts))
	m.Write([]byte("."))
	m.Write(body)
	return m.Sum(nil)
}

// VerifyWebhookSignature checks a signature header against body: one of
// its v1 signatures must match, and its timestamp must be within tolerance
// of now. Receivers of Tenantplane's webhooks do the same.
func VerifyWebhookSignature(secret, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts string
	var sigs [][]byte
	for _, part := range strings.Split(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			continue
		}
		switch k {
		case "t":
			ts = v
		case "v1":
			if b, err := hex.DecodeString(v); err == nil {
				sigs = append(sigs, b)
			}
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return errors.New("webhook signature: malformed header")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return errors.New("webhook signature: timestamp outside the tolerance")
	}
	want := webhookMAC(secret, ts, body)
	for _, s := range sigs {
		if hmac.Equal(s, want) {
			return nil
		}
	}
	return errors.New("webhook signature: no signature matches")
}

// WebhookPayload is the JSON body of an outgoing webhook.
type WebhookPayload struct {
	// ID is "evt_debt_<transition id>", the same on every attempt.
	ID string `json:"id"`
	// Type is "billing.debt.<event>", e.g. billing.debt.suspended.
	Type    string          `json:"type"`
	Created int64           `json:"created"`
	Data    WebhookDataDebt `json:"data"`
}

// WebhookDataDebt is the data of a debt webhook.
type WebhookDataDebt struct {
	OrgID        string `json:"org_id"`
	NamespaceID  string `json:"namespace_id,omitempty"`
	Event        string `json:"event"`
	From         string `json:"from"`
	To           string `json:"to"`
	UsableMicros string `json:"usable_micros"`
	Usable       string `json:"usable"`
	Currency     string `json:"currency"`
	Cause        string `json:"cause"`
	At           string `json:"at"`
}

// NewWebhookPayload describes a transition to a webhook receiver.
func NewWebhookPayload(tr DebtTransition) WebhookPayload {
	d := WebhookDataDebt{
		OrgID: strconv.FormatInt(tr.OrgID, 10), Event: string(tr.Event), From: string(tr.From), To: string(tr.To),
		UsableMicros: strconv.FormatInt(tr.Usable, 10), Usable: FormatMicros(tr.Usable), Currency: tr.Currency,
		Cause: tr.Cause, At: tr.At.UTC().Format(time.RFC3339),
	}
	if tr.NamespaceID != 0 {
		d.NamespaceID = strconv.FormatInt(tr.NamespaceID, 10)
	}
	return WebhookPayload{
		ID: fmt.Sprintf("evt_debt_%d", tr.ID), Type: "billing.debt." + string(tr.Event),
		Created: tr.At.Unix(), Data: d,
	}
}

// ValidateWebhookURL checks a URL an org owner configures: absolute,
// https (or http when allowed), with a host, no user information, and, if
// the host is an IP address, one a webhook may reach. Host names are
// checked again, address by address, at every connection.
func ValidateWebhookURL(raw string, cfg WebhookConfig) (string, error) {
	bad := func(msg string) (string, error) { return "", errcode.Invalid("url", msg) }
	if raw == "" || len(raw) > maxWebhookURL {
		return bad("must be 1 to 2048 characters")
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" || u.Opaque != "" {
		return bad("must be an absolute URL such as https://example.com/hooks/billing")
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && cfg.AllowHTTP:
	default:
		return bad("must use https")
	}
	if u.User != nil {
		return bad("must not carry a user name or password")
	}
	if u.Fragment != "" {
		return bad("must not have a fragment")
	}
	host := u.Hostname()
	if a, err := netip.ParseAddr(host); err == nil {
		if !webhookAddrAllowed(a, cfg.AllowedNets) {
			return bad("must not point at a loopback, private or link-local address")
		}
	} else if h := strings.ToLower(strings.TrimSuffix(host, ".")); h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return bad("must not point at localhost")
	}
	return u.String(), nil
}

// webhookAddrAllowed refuses loopback, private, link-local, unspecified,
// multicast and other special addresses unless an allowed network holds
// them.
func webhookAddrAllowed(a netip.Addr, allowed []netip.Prefix) bool {
	a = a.Unmap()
	for _, p := range allowed {
		if p.Contains(a) {
			return true
		}
	}
	if a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified() || !a.IsGlobalUnicast() {
		return false
	}
	for _, p := range specialNets {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// specialNets are global-looking ranges that are not the internet:
// carrier-grade NAT, benchmarking, IETF protocol assignments, NAT64 and
// documentation ranges, and the "this network" block.
var specialNets = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("64:ff9b::/96"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("2001:db8::/32"),
}

// errRefusedAddress is returned when a webhook would connect to an
// address it may not reach.
var errRefusedAddress = errors.New("webhook: refusing to connect to a loopback, private or link-local address")

// NewWebhookClient returns the HTTP client that delivers webhooks: it
// checks every address it connects to (after DNS resolution, so a name
// that resolves to an internal address is refused too), uses no proxy and
// follows no redirects.
func NewWebhookClient(cfg WebhookConfig) *http.Client {
	d := &net.Dialer{
		Timeout: cfg.Timeout,
		Control: func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("webhook: unreadable address %q: %w", address, err)
			}
			if !webhookAddrAllowed(ap.Addr(), cfg.AllowedNets) {
				return errRefusedAddress
			}
			return nil
		},
	}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           d.DialContext,
		TLSHandshakeTimeout:   cfg.Timeout,
		ResponseHeaderTimeout: cfg.Timeout,
		MaxIdleConns:          10,
		IdleConnTimeout:       30 * time.Second,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   cfg.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// WebhookDelivery is one delivery due, as the store hands it out.
type WebhookDelivery struct {
	ID         int64
	Transition DebtTransition
	URL        string
	Secret     string
	// Attempts counts this attempt too.
	Attempts int
}

// deliverWebhook sends one delivery and returns the HTTP status (0 when
// none came back) and an error unless the endpoint answered 2xx.
func deliverWebhook(ctx context.Context, c *http.Client, d WebhookDelivery, now time.Time) (int, error) {
	body, err := json.Marshal(NewWebhookPayload(d.Transition))
	if err != nil {
		return 0, fmt.Errorf("encoding webhook payload: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.URL, strings.NewReader(string(body)))
	if err != nil {
		return 0, fmt.Errorf("building webhook request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Tenantplane-Webhooks/1")
	req.Header.Set(WebhookEventHeader, fmt.Sprintf("evt_debt_%d", d.Transition.ID))
	req.Header.Set(WebhookSignatureHeader, SignWebhook(d.Secret, now, body))
	resp, err := c.Do(req)
	if err != nil {
		return 0, fmt.Errorf("posting webhook: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, fmt.Errorf("webhook endpoint answered %d", resp.StatusCode)
	}
	return resp.StatusCode, nil
}

// WebhookBackoff is the wait after a failed attempt (attempts counts it):
// RetryBase doubled per earlier attempt, at most RetryMax.
func WebhookBackoff(attempts int, cfg WebhookConfig) time.Duration {
	d := cfg.RetryBase
	for i := 1; i < attempts && d < cfg.RetryMax; i++ {
		d *= 2
	}
	return min(d, cfg.RetryMax)
}
