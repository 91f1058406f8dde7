package tenancy

// OIDCIdentity is what a verified OpenID Connect ID token says of the person
// logging in. An identity (Issuer, Subject) links to exactly one user.
type OIDCIdentity struct {
	Issuer        string
	Subject       string
	Email         string
	EmailVerified bool
	Name          string
}
