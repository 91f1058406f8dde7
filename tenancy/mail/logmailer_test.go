package mail_test

import (
	"bytes"
	"context"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/tenancy/mail"
)

func TestLogMailerWritesTheMessage(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	var m mail.Mailer = mail.LogMailer{Log: slog.New(slog.NewTextHandler(&buf, nil))}
	require.NoError(t, m.Send(context.Background(), mail.Message{
		ID: 7, To: "a@example.com", Subject: "Verify", Text: "open https://x.test/?token=tpv_1",
	}))
	out := buf.String()
	for _, want := range []string{"id=7", "to=a@example.com", "subject=Verify", "tpv_1"} {
		require.Contains(t, out, want)
	}
}
