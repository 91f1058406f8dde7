package tenancy

import (
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Mail kinds, recorded in the mail outbox.
const (
	mailVerify     = "verify_email"
	mailReset      = "reset_password"
	mailInvitation = "invitation"
)

// link returns BaseURL + path with the token as query parameter.
func (s *Service) link(path, token string) string {
	return strings.TrimRight(s.cfg.BaseURL, "/") + path + "?token=" + url.QueryEscape(token)
}

func (s *Service) verificationMail(to, token string, ttl time.Duration) OutgoingMail {
	return OutgoingMail{
		Kind: mailVerify, To: to, At: s.now(),
		Subject: "Verify your email address",
		Text: fmt.Sprintf("Welcome to Tenantplane.\n\nConfirm your email address by opening this link within %s:\n\n%s\n\n"+
			"If you did not sign up, ignore this message.\n", humanDuration(ttl), s.link("/verify-email", token)),
	}
}

func (s *Service) resetMail(to, token string, ttl time.Duration) OutgoingMail {
	return OutgoingMail{
		Kind: mailReset, To: to, At: s.now(),
		Subject: "Reset your password",
		Text: fmt.Sprintf("Someone asked to reset the password of your Tenantplane account.\n\n"+
			"Choose a new password by opening this link within %s:\n\n%s\n\n"+
			"If it was not you, ignore this message; your password stays as it is.\n",
			humanDuration(ttl), s.link("/reset-password", token)),
	}
}

func (s *Service) invitationMail(to, inviter, namespace string, role Role, token string, ttl time.Duration) OutgoingMail {
	return OutgoingMail{
		Kind: mailInvitation, To: to, At: s.now(),
		Subject: fmt.Sprintf("You are invited to namespace %s", namespace),
		Text: fmt.Sprintf("%s invites you to the Tenantplane namespace %s as %s.\n\n"+
			"Accept within %s by opening this link (log in or sign up first):\n\n%s\n",
			inviter, namespace, role, humanDuration(ttl), s.link("/invitations/accept", token)),
	}
}

// humanDuration renders whole days or hours.
func humanDuration(d time.Duration) string {
	switch {
	case d >= 48*time.Hour && d%(24*time.Hour) == 0:
		return fmt.Sprintf("%d days", d/(24*time.Hour))
	case d >= 2*time.Hour && d%time.Hour == 0:
		return fmt.Sprintf("%d hours", d/time.Hour)
	case d == time.Hour:
		return "1 hour"
	}
	return d.String()
}
