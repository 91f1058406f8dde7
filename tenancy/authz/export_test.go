package authz

// EnforcerDecides asks the Casbin enforcer itself, bypassing the grants,
// what Can would answer.
func EnforcerDecides(a *Authorizer, userID int64, action Action, domain Domain) bool {
	obj, act := action.Split()
	ec, ok := enforceContexts[obj]
	if !ok || userID <= 0 {
		return false
	}
	ok, err := a.e.Enforce(ec, Subject(userID), string(domain), obj, act)
	return ok && err == nil
}

// EnforcerChecks counts the checks Can has left to the enforcer.
func EnforcerChecks(a *Authorizer) int64 { return a.checks.Load() }
