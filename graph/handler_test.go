package graph_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/graph"
	"github.com/tenantplane/tenantplane/graph/graphtest"
	"github.com/tenantplane/tenantplane/tenancy"
)

func get(t *testing.T, e *graphtest.Env, token, query string, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.Server.URL+"?query="+url.QueryEscape(query), nil)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := e.Client.Do(req)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(body)
}

func TestQueriesOverGETButNoMutations(t *testing.T) {
	t.Parallel()
	e := graphtest.New(t)
	u := e.SignUp(t, "get@example.com")
	resp, body := get(t, e, u.Token, `{ me { email } }`, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, `"email":"get@example.com"`)

	resp, body = get(t, e, u.Token, `mutation { logOut }`, nil)
	require.NotEqual(t, http.StatusOK, resp.StatusCode, body)
	require.Contains(t, body, `"code":"BAD_USER_INPUT"`)
	r := e.Do(t, u.Token, `{ me { id } }`, nil)
	require.Empty(t, r.Errors, "the GET mutation did not log out")
}

func TestBadTokensAreUnauthenticatedWithARequestID(t *testing.T) {
	t.Parallel()
	e := graphtest.New(t)
	for _, h := range []string{"Bearer tps_nonsense", "Basic abc", "Bearer "} {
		req, err := http.NewRequest(http.MethodPost, e.Server.URL, strings.NewReader(`{"query":"{ me { id } }"}`))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", h)
		req.Header.Set(graph.RequestIDHeader, "req-42")
		resp, err := e.Client.Do(req)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode, h)
		require.Contains(t, string(body), `"code":"UNAUTHENTICATED"`)
		require.Contains(t, string(body), `"requestId":"req-42"`)
		require.Equal(t, "req-42", resp.Header.Get(graph.RequestIDHeader))
	}
	r := e.Do(t, "", `{ me { id } }`, nil)
	require.Equal(t, "UNAUTHENTICATED", r.Errors[0].Code())
}

func TestDisabledUsersTokensStopAtOnce(t *testing.T) {
	t.Parallel()
	e := graphtest.New(t)
	u := e.SignUp(t, "gone@example.com")
	e.MustDo(t, u.Token, `{ me { id } }`, nil)
	require.NoError(t, e.Service.DisableUser(e.System(), u.ID))
	r := e.Do(t, u.Token, `{ me { id } }`, nil)
	require.Equal(t, http.StatusUnauthorized, r.Status)
}

func TestDepthComplexityAndIntrospectionLimits(t *testing.T) {
	t.Parallel()
	e := graphtest.New(t, func(g *graph.Config, _ *tenancy.Config) {
		g.Introspection = false
		g.MaxDepth = 6
		g.MaxComplexity = 1000
	})
	u := e.SignUp(t, "limits@example.com")

	r := e.Do(t, u.Token, `{ __schema { types { name } } }`, nil)
	require.NotEmpty(t, r.Errors, "introspection is off")
	require.Equal(t, "BAD_USER_INPUT", r.Errors[0].Code())

	deep := `{ me { orgs { nodes { namespaces { nodes { members { nodes { user { email } } } } } } } } }`
	r = e.Do(t, u.Token, deep, nil)
	require.NotEmpty(t, r.Errors)
	require.Equal(t, "BAD_USER_INPUT", r.Errors[0].Code())
	require.Contains(t, r.Errors[0].Message, "nests")

	// A fragment does not hide depth.
	r = e.Do(t, u.Token, `{ me { ...O } } fragment O on User { orgs { nodes { namespaces { nodes { members { nodes { role } } } } } } }`, nil)
	require.NotEmpty(t, r.Errors)
	require.Contains(t, r.Errors[0].Message, "nests")

	r = e.Do(t, u.Token, `{ me { orgs(first: 100) { nodes { namespaces(first: 100) { nodes { id } } } } } }`, nil)
	require.NotEmpty(t, r.Errors, "100 × 100 items exceed the complexity limit")
	require.Equal(t, "BAD_USER_INPUT", r.Errors[0].Code())

	r = e.Do(t, u.Token, `{ me { orgs(first: 100) { nodes { namespaces(first: 100) { nodes { id } } } } } }`, nil)
	require.NotEmpty(t, r.Errors, "a remembered complexity is still refused")

	// The same text with other variables has another complexity.
	vars := `query($n: Int) { me { orgs(first: $n) { nodes { namespaces(first: $n) { nodes { id } } } } } }`
	r = e.Do(t, u.Token, vars, map[string]any{"n": 5})
	require.Empty(t, r.Errors)
	r = e.Do(t, u.Token, vars, map[string]any{"n": 100})
	require.NotEmpty(t, r.Errors, "100 × 100 items through variables")
	require.Equal(t, "BAD_USER_INPUT", r.Errors[0].Code())

	e.MustDo(t, u.Token, `{ me { orgs { nodes { namespaces { nodes { id } } } } } }`, nil)
}

func TestIntrospectionWhenEnabled(t *testing.T) {
	t.Parallel()
	e := graphtest.New(t)
	r := e.MustDo(t, "", `{ __schema { queryType { name } } }`, nil)
	require.Contains(t, string(r.Data), `"Query"`)
}

func TestGraphiQLOnlyInDevMode(t *testing.T) {
	t.Parallel()
	dev := graphtest.New(t, func(g *graph.Config, _ *tenancy.Config) { g.Dev = true })
	resp, body := get(t, dev, "", "", map[string]string{"Accept": "text/html"})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, strings.ToLower(body), "graphiql")

	prod := graphtest.New(t)
	resp, body = get(t, prod, "", "", map[string]string{"Accept": "text/html"})
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.NotContains(t, strings.ToLower(body), "graphiql")
}

// TestInternalErrorsDoNotLeak breaks the database under the service: the
// client learns a request id, never the SQL error.
func TestInternalErrorsDoNotLeak(t *testing.T) {
	t.Parallel()
	e := graphtest.New(t)
	u := e.SignUp(t, "leak@example.com")
	_, err := e.DB.Pool.Exec(context.Background(), `ALTER TABLE namespace_members RENAME TO namespace_members_gone`)
	require.NoError(t, err)

	req, err := http.NewRequest(http.MethodPost, e.Server.URL,
		strings.NewReader(`{"query":"{ me { namespaces { nodes { id } } } }"}`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+u.Token)
	req.Header.Set(graph.RequestIDHeader, "req-leak")
	resp, err := e.Client.Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	require.Contains(t, string(body), `"code":"INTERNAL"`)
	require.Contains(t, string(body), "internal error (request id req-leak)")
	for _, leak := range []string{"namespace_members", "SQLSTATE", "relation", "pgx", "select", "SELECT"} {
		require.NotContains(t, string(body), leak)
	}
}

// TestNestedFieldsAreAuthorized covers rules below the root: another
// user's lists and an org's namespaces as a plain org member.
func TestNestedFieldsAreAuthorized(t *testing.T) {
	t.Parallel()
	e := graphtest.New(t)
	a := e.SignUp(t, "a@example.com")
	b := e.SignUp(t, "b@example.com")
	_, err := e.Service.AddMember(e.As(a.ID, false), a.NamespaceID, b.ID, tenancy.RoleViewer)
	require.NoError(t, err)
	_, err = e.Service.AddOrgMember(e.As(a.ID, false), a.OrgID, b.ID, tenancy.OrgRoleMember)
	require.NoError(t, err)
	e.SyncAuthz(t)

	// b sees a as a fellow member, but not a's other orgs and namespaces.
	r := e.Do(t, b.Token, `query($ns: ID!) { members(namespaceId: $ns) { nodes { user { email orgs { nodes { id } } } } } }`,
		map[string]any{"ns": a.NamespaceID})
	require.NotEmpty(t, r.Errors)
	require.Contains(t, string(r.Data), "a@example.com", "errors: %v", r.Errors)
	for _, er := range r.Errors {
		require.Equal(t, "FORBIDDEN", er.Code(), er.Message)
	}
	// A plain org member may read the org but not list its namespaces.
	r = e.Do(t, b.Token, `query($o: ID!) { org(id: $o) { name namespaces { nodes { id } } } }`, map[string]any{"o": a.OrgID})
	require.Len(t, r.Errors, 1)
	require.Equal(t, "FORBIDDEN", r.Errors[0].Code())
	// The org owner may.
	e.MustDo(t, a.Token, `query($o: ID!) { org(id: $o) { name namespaces { nodes { id } } members { nodes { role } } } }`,
		map[string]any{"o": a.OrgID})
}
