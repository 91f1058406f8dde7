package server

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"

	"github.com/tenantplane/tenantplane/internal/errcode"
	"github.com/tenantplane/tenantplane/tenancy"
)

// demoAccount is one account that `dev` seeds, with the password it got.
type demoAccount struct {
	Email, Password, Role string
}

// seedDemo creates a platform admin and two tenants with a few members, so
// that a frontend has something to show. It does nothing when the database
// was seeded before (dev pointed at an existing database), and returns the
// accounts it made with freshly generated passwords.
func seedDemo(ctx context.Context, svc *tenancy.Service) ([]demoAccount, error) {
	ctx = tenancy.WithActor(ctx, tenancy.Actor{System: "dev-seed"})
	type person struct {
		email, name, role string
	}
	people := []person{
		{"admin@tenantplane.localhost", "Platform Admin", "platform admin"},
		{"alice@acme.localhost", "Alice (Acme)", "owner of her personal org and namespace"},
		{"bob@acme.localhost", "Bob (Acme)", "developer in Alice's namespace"},
		{"erin@acme.localhost", "Erin (Acme)", "viewer in Alice's namespace, billing in her org"},
		{"carol@globex.localhost", "Carol (Globex)", "owner of her personal org and namespace"},
		{"dave@globex.localhost", "Dave (Globex)", "admin in Carol's namespace"},
	}
	users := map[string]tenancy.User{}
	var out []demoAccount
	for _, p := range people {
		pw, err := demoPassword()
		if err != nil {
			return nil, err
		}
		u, err := svc.SignUp(ctx, p.email, pw, p.name)
		if len(users) == 0 && errcode.Of(err) == errcode.Conflict {
			return nil, nil // seeded before
		}
		if err != nil {
			return nil, fmt.Errorf("seeding %s: %w", p.email, err)
		}
		users[p.email] = u
		out = append(out, demoAccount{Email: p.email, Password: pw, Role: p.role})
	}
	if _, err := svc.GrantPlatformAdmin(ctx, "admin@tenantplane.localhost"); err != nil {
		return nil, fmt.Errorf("seeding the platform admin: %w", err)
	}
	// Tenants act as themselves, as they would through the API.
	as := func(email string) context.Context {
		return tenancy.WithActor(ctx, tenancy.Actor{UserID: users[email].ID, RequestID: "dev-seed"})
	}
	firstNamespace := func(email string) (tenancy.Namespace, error) {
		c, err := svc.MyNamespaces(as(email), tenancy.PageArgs{First: 1})
		if err != nil || len(c.Edges) == 0 {
			return tenancy.Namespace{}, fmt.Errorf("finding the namespace of %s: %w", email, err)
		}
		return c.Edges[0].Node.Namespace, nil
	}
	acme, err := firstNamespace("alice@acme.localhost")
	if err != nil {
		return nil, err
	}
	globex, err := firstNamespace("carol@globex.localhost")
	if err != nil {
		return nil, err
	}
	for _, m := range []struct {
		owner string
		ns    tenancy.Namespace
		email string
		role  tenancy.Role
	}{
		{"alice@acme.localhost", acme, "bob@acme.localhost", tenancy.RoleDeveloper},
		{"alice@acme.localhost", acme, "erin@acme.localhost", tenancy.RoleViewer},
		{"carol@globex.localhost", globex, "dave@globex.localhost", tenancy.RoleAdmin},
	} {
		if _, err := svc.AddMember(as(m.owner), m.ns.ID, users[m.email].ID, m.role); err != nil {
			return nil, fmt.Errorf("seeding %s in %s: %w", m.email, m.ns.Name, err)
		}
	}
	if _, err := svc.AddOrgMember(as("alice@acme.localhost"), acme.OrgID, users["erin@acme.localhost"].ID, tenancy.OrgRoleBilling); err != nil {
		return nil, fmt.Errorf("seeding erin's org role: %w", err)
	}
	return out, nil
}

func demoPassword() (string, error) {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("making a demo password: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}
