package graph_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/graph/graphtest"
	"github.com/tenantplane/tenantplane/internal/testenv"
	"github.com/tenantplane/tenantplane/tenancy"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const meQuery = `{ me { id email orgs { nodes { id name viewerRole namespaces { nodes { id name viewerRole
	members { nodes { role user { id email } } } } } } } } }`

func TestSignUpLogInAndMe(t *testing.T) {
	t.Parallel()
	e := graphtest.New(t)

	r := e.MustDo(t, "", `mutation($in: SignUpInput!) { signUp(input: $in) { id email status } }`,
		map[string]any{"in": map[string]any{"email": "Ada@Example.com", "password": "correct horse battery"}})
	var signUp struct {
		SignUp struct{ ID, Email, Status string }
	}
	r.Decode(t, &signUp)
	require.Equal(t, "ada@example.com", signUp.SignUp.Email)
	require.Equal(t, "PENDING", signUp.SignUp.Status)

	r = e.MustDo(t, "", `mutation { logIn(input: {email: "ada@example.com", password: "correct horse battery"}) { token } }`, nil)
	var logIn struct{ LogIn struct{ Token string } }
	r.Decode(t, &logIn)
	require.True(t, strings.HasPrefix(logIn.LogIn.Token, tenancy.SessionTokenPrefix))

	r = e.MustDo(t, logIn.LogIn.Token, meQuery, nil)
	var me struct {
		Me struct {
			ID, Email string
			Orgs      struct {
				Nodes []struct {
					Name, ViewerRole string
					Namespaces       struct {
						Nodes []struct {
							Name, ViewerRole string
							Members          struct {
								Nodes []struct {
									Role string
									User struct{ ID, Email string }
								}
							}
						}
					}
				}
			}
		}
	}
	r.Decode(t, &me)
	require.Equal(t, signUp.SignUp.ID, me.Me.ID)
	require.Len(t, me.Me.Orgs.Nodes, 1)
	org := me.Me.Orgs.Nodes[0]
	require.Equal(t, "OWNER", org.ViewerRole)
	require.Len(t, org.Namespaces.Nodes, 1)
	ns := org.Namespaces.Nodes[0]
	require.True(t, strings.HasPrefix(ns.Name, "ns-"))
	require.Equal(t, "OWNER", ns.ViewerRole)
	require.Len(t, ns.Members.Nodes, 1)
	require.Equal(t, "ada@example.com", ns.Members.Nodes[0].User.Email)

	e.MustDo(t, logIn.LogIn.Token, `mutation { logOut }`, nil)
	r = e.Do(t, logIn.LogIn.Token, `{ me { id } }`, nil)
	require.Equal(t, http.StatusUnauthorized, r.Status)
	require.Equal(t, "UNAUTHENTICATED", r.Errors[0].Code())
}

// listedQuery reaches the same lists as meQuery, but each under a list
// of the level above, where the dataloaders batch them.
const listedQuery = `{ namespaces { nodes { id org { id namespaces { nodes { id
	members { nodes { role user { id email } } } } } } } } }`

// fragmentQuery asks for the tree of meQuery through named fragments at
// every level, an inline fragment and edges { node }.
const fragmentQuery = `query { me { ...Me } }
fragment Me on User { orgs { ...Orgs } }
fragment Orgs on OrgConnection { edges { node { ...Org } } }
fragment Org on Org { id namespaces { ... on NamespaceConnection {
	nodes { id members { nodes { user { email } } } } } } }`

// backRefQuery goes down the tree and back up to objects it holds.
const backRefQuery = `{ me { orgs { nodes { id namespaces { nodes { name org { id }
	members { nodes { namespace { name } } } } } } } } }`

// TestNestedListsUseAFixedNumberOfQueries counts the statements of
// me { orgs { namespaces { members { user } } } } for a small and a large
// tenant: the dataloaders make the count independent of the sizes.
func TestNestedListsUseAFixedNumberOfQueries(t *testing.T) {
	t.Parallel()
	e := graphtest.New(t)
	count := func(u graphtest.User, query string) int64 {
		e.SyncAuthz(t)
		e.MustDo(t, u.Token, query, nil) // stamps the token's last use once
		before := e.Queries()
		e.MustDo(t, u.Token, query, nil)
		return e.Queries() - before
	}

	small := e.SignUp(t, "small@example.com")
	other := e.SignUp(t, "other@example.com")
	_, err := e.Service.AddMember(e.As(small.ID, false), small.NamespaceID, other.ID, tenancy.RoleViewer)
	require.NoError(t, err)
	big := e.SignUp(t, "big@example.com")
	ctx := e.As(big.ID, false)
	for i := range 3 {
		org, err := e.Service.CreateOrg(ctx, fmt.Sprintf("big-%d", i), "")
		require.NoError(t, err)
		for j := range 3 {
			ns, err := e.Service.CreateNamespace(ctx, org.ID, fmt.Sprintf("big-%d-%d", i, j))
			require.NoError(t, err)
			for k := range 4 {
				m := e.SignUp(t, fmt.Sprintf("m-%d-%d-%d@example.com", i, j, k))
				_, err := e.Service.AddMember(ctx, ns.ID, m.ID, tenancy.RoleViewer)
				require.NoError(t, err)
			}
		}
	}
	nSmall, nBig := count(small, meQuery), count(big, meQuery)
	t.Logf("queries: %d for 1 org, 1 namespace, 2 members; %d for 4 orgs, 10 namespaces, 37 members", nSmall, nBig)
	require.Equal(t, nSmall, nBig, "the number of queries must not grow with the data")
	// The tree below the caller's orgs (orgs, namespaces, members, their
	// users) and the caller's namespace roles; the token (and me with it)
	// is remembered from the first request.
	require.Equal(t, int64(2), nBig)

	// Fragments and edges { node } reach the tree just the same: one
	// query.
	nSmall, nBig = count(small, fragmentQuery), count(big, fragmentQuery)
	require.Equal(t, int64(1), nSmall)
	require.Equal(t, int64(1), nBig)
	var plain, viaFragments struct {
		Me struct {
			Orgs struct {
				Nodes []struct {
					ID         string
					Namespaces struct {
						Nodes []struct {
							ID      string
							Members struct {
								Nodes []struct{ User struct{ Email string } }
							}
						}
					}
				}
			}
		}
	}
	e.MustDo(t, big.Token, `{ me { orgs { nodes { id namespaces { nodes { id members { nodes { user { email } } } } } } } } }`, nil).
		Decode(t, &plain)
	r := e.MustDo(t, big.Token, fragmentQuery, nil)
	var edges struct {
		Me struct {
			Orgs struct {
				Edges []struct {
					Node json.RawMessage
				}
			}
		}
	}
	r.Decode(t, &edges)
	for _, e := range edges.Me.Orgs.Edges {
		var org struct {
			ID         string
			Namespaces struct {
				Nodes []struct {
					ID      string
					Members struct {
						Nodes []struct{ User struct{ Email string } }
					}
				}
			}
		}
		require.NoError(t, json.Unmarshal(e.Node, &org))
		viaFragments.Me.Orgs.Nodes = append(viaFragments.Me.Orgs.Nodes, org)
	}
	require.Len(t, plain.Me.Orgs.Nodes, 4)
	require.Equal(t, plain, viaFragments)

	// Below the tree, the objects it holds come from it too.
	nSmall, nBig = count(small, backRefQuery), count(big, backRefQuery)
	require.Equal(t, int64(1), nSmall)
	require.Equal(t, int64(1), nBig)
	var back struct {
		Me struct {
			Orgs struct {
				Nodes []struct {
					ID         string
					Namespaces struct {
						Nodes []struct {
							Name    string
							Org     struct{ ID string }
							Members struct {
								Nodes []struct {
									Namespace struct{ Name string }
								}
							}
						}
					}
				}
			}
		}
	}
	e.MustDo(t, big.Token, backRefQuery, nil).Decode(t, &back)
	seen := 0
	for _, o := range back.Me.Orgs.Nodes {
		for _, n := range o.Namespaces.Nodes {
			require.Equal(t, o.ID, n.Org.ID)
			for _, m := range n.Members.Nodes {
				require.Equal(t, n.Name, m.Namespace.Name)
				seen++
			}
		}
	}
	require.Equal(t, 1+9*5, seen, "the personal namespace's owner; nine namespaces' owner and four members")

	nSmall, nBig = count(small, listedQuery), count(big, listedQuery)
	t.Logf("listed: %d queries for the small tenant, %d for the big one", nSmall, nBig)
	require.Equal(t, nSmall, nBig, "the number of queries must not grow with the data")
	// The caller's namespaces, their orgs, the orgs' namespaces, members,
	// their users (the token is remembered).
	require.Equal(t, int64(5), nBig)
}
