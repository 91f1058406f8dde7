package model

import (
	"encoding/json"
	"io"
	"strconv"
	"time"

	"github.com/99designs/gqlgen/graphql"

	"github.com/tenantplane/tenantplane/internal/errcode"
)

// MarshalID64 writes an ID as a GraphQL ID: a JSON string of decimal
// digits.
func MarshalID64(id int64) graphql.Marshaler {
	return graphql.WriterFunc(func(w io.Writer) {
		_, _ = io.WriteString(w, strconv.Quote(strconv.FormatInt(id, 10)))
	})
}

var errMalformedID = errcode.Invalid("id", "malformed ID")

// UnmarshalID64 reads a GraphQL ID: a string of decimal digits or an
// integer, positive. Anything else is BAD_USER_INPUT.
func UnmarshalID64(v any) (int64, error) {
	var (
		id  int64
		err error
	)
	switch v := v.(type) {
	case string:
		id, err = strconv.ParseInt(v, 10, 64)
	case int:
		id = int64(v)
	case int64:
		id = v
	case json.Number:
		id, err = strconv.ParseInt(string(v), 10, 64)
	case float64:
		id = int64(v)
		if float64(id) != v {
			err = errMalformedID
		}
	default:
		err = errMalformedID
	}
	if err != nil || id <= 0 {
		return 0, errMalformedID
	}
	return id, nil
}

// MarshalInt64String writes an Int64: a JSON string of decimal digits,
// which no client's 53-bit numbers can round.
func MarshalInt64String(v int64) graphql.Marshaler {
	return graphql.WriterFunc(func(w io.Writer) {
		_, _ = io.WriteString(w, strconv.Quote(strconv.FormatInt(v, 10)))
	})
}

// UnmarshalInt64String reads an Int64: a string of decimal digits, or an
// integer. Anything else is BAD_USER_INPUT.
func UnmarshalInt64String(v any) (int64, error) {
	switch v := v.(type) {
	case string:
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, errcode.Invalid("int64", "must be a 64-bit integer in decimal digits")
		}
		return n, nil
	case int:
		return int64(v), nil
	case int64:
		return v, nil
	case json.Number:
		n, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil {
			return 0, errcode.Invalid("int64", "must be a 64-bit integer in decimal digits")
		}
		return n, nil
	}
	return 0, errcode.Invalid("int64", "must be a 64-bit integer in decimal digits")
}

// User is a person who can log in.
type User struct {
	ID              int64
	Email           string
	DisplayName     string
	Status          UserStatus
	PlatformAdmin   bool
	EmailVerifiedAt *time.Time
	CreatedAt       time.Time
	// Partial is true when only ID, Email, Status and PlatformAdmin are
	// set (from the authenticated principal); the other fields' resolvers
	// load the rest.
	Partial bool
}

// Org is a billing account and team.
type Org struct {
	ID          int64
	Name        string
	DisplayName string
	Personal    bool
	Plan        string
	CreatedAt   time.Time
}

// OrgMember is one user's membership of an org.
type OrgMember struct {
	OrgID     int64
	UserID    int64
	Role      OrgRole
	CreatedAt time.Time
}

// Namespace is one Kubernetes namespace.
type Namespace struct {
	ID          int64
	Name        string
	State       NamespaceState
	MemberLimit int
	CreatedAt   time.Time
	// OrgID is the owning org, which the org field resolves.
	OrgID int64
}

// Member is one user's membership of a namespace.
type Member struct {
	NamespaceID int64
	UserID      int64
	Role        Role
	CreatedAt   time.Time
	// User is the member's user when the list holding the member loaded
	// it; the user field resolves it otherwise.
	User *User
}

// Invitation invites an email address into a namespace.
type Invitation struct {
	ID          int64
	Email       string
	Role        Role
	Status      InvitationStatus
	CreatedAt   time.Time
	ExpiresAt   time.Time
	NamespaceID int64
	// InvitedByID is the inviting user, which invitedBy resolves.
	InvitedByID int64
}

// APIToken describes a personal API token.
type APIToken struct {
	ID         int64
	Name       string
	CreatedAt  time.Time
	ExpiresAt  time.Time
	LastUsedAt *time.Time
	RevokedAt  *time.Time
}

// AuditEntry is one row of the audit log.
type AuditEntry struct {
	ID        int64
	At        time.Time
	Actor     string
	Action    string
	Target    string
	IP        *string
	RequestID string
	Detail    string
}
