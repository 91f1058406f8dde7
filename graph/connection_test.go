package graph_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/graph/graphtest"
	"github.com/tenantplane/tenantplane/tenancy"
)

type connPage struct {
	Edges []struct {
		Cursor string
		Node   struct{ ID string }
	}
	Nodes    []struct{ ID string }
	PageInfo *struct {
		HasNextPage bool
		StartCursor *string
		EndCursor   *string
	}
}

// TestConnectionsPageThroughEveryShape pages through a list held in
// memory (an org's namespaces, below the tree of me) and one a store
// reads (a namespace's members) with edges, nodes and page info asked
// for directly, through fragments, or not at all.
func TestConnectionsPageThroughEveryShape(t *testing.T) {
	t.Parallel()
	e := graphtest.New(t)
	u := e.SignUp(t, "pager@example.com")
	ctx := e.As(u.ID, false)
	for i := range 4 {
		_, err := e.Service.CreateNamespace(ctx, u.OrgID, fmt.Sprintf("pager-%d", i))
		require.NoError(t, err)
		m := e.SignUp(t, fmt.Sprintf("pagee-%d@example.com", i))
		_, err = e.Service.AddMember(ctx, u.NamespaceID, m.ID, tenancy.RoleViewer)
		require.NoError(t, err)
	}
	e.SyncAuthz(t)

	const (
		// A page of namespaces below me's orgs: cut in memory.
		nsDirect = `query($after: String) { me { orgs { nodes { namespaces(first: 2, after: $after) {
			edges { cursor node { id } } nodes { id } pageInfo { hasNextPage startCursor endCursor } } } } } }`
		nsFragments = `query($after: String) { me { orgs { nodes { namespaces(first: 2, after: $after) { ...Page } } } } }
			fragment Page on NamespaceConnection { ... on NamespaceConnection { edges { cursor node { id } } } nodes { id } ...Info }
			fragment Info on NamespaceConnection { pageInfo { hasNextPage startCursor endCursor } }`
		nsNodes = `query($after: String) { me { orgs { nodes { namespaces(first: 2, after: $after) { nodes { id } } } } } }`
		// A page of members, read by the store.
		membersDirect = `query($ns: ID!, $after: String) { members(namespaceId: $ns, first: 2, after: $after) {
			edges { cursor node { user { id } } } pageInfo { hasNextPage endCursor } } }`
	)
	pageNamespaces := func(query string, after *string) connPage {
		vars := map[string]any{}
		if after != nil {
			vars["after"] = *after
		}
		var out struct {
			Me struct {
				Orgs struct {
					Nodes []struct{ Namespaces connPage }
				}
			}
		}
		e.MustDo(t, u.Token, query, vars).Decode(t, &out)
		require.Len(t, out.Me.Orgs.Nodes, 1)
		return out.Me.Orgs.Nodes[0].Namespaces
	}
	for _, query := range []string{nsDirect, nsFragments} {
		var ids []string
		var after *string
		for range 3 {
			p := pageNamespaces(query, after)
			require.NotNil(t, p.PageInfo)
			require.Len(t, p.Edges, len(p.Nodes))
			for i, edge := range p.Edges {
				require.Equal(t, p.Nodes[i].ID, edge.Node.ID)
				require.NotEmpty(t, edge.Cursor)
				ids = append(ids, edge.Node.ID)
			}
			if len(p.Edges) > 0 {
				require.Equal(t, p.Edges[0].Cursor, *p.PageInfo.StartCursor)
				require.Equal(t, p.Edges[len(p.Edges)-1].Cursor, *p.PageInfo.EndCursor)
			} else {
				require.Nil(t, p.PageInfo.EndCursor)
			}
			if !p.PageInfo.HasNextPage {
				break
			}
			after = p.PageInfo.EndCursor
		}
		require.Len(t, ids, 5, "the personal namespace and four more, each once")
		for i := 1; i < len(ids); i++ {
			require.NotEqual(t, ids[i-1], ids[i])
		}
	}

	// Only nodes asked for: no edges or page info in the answer.
	p := pageNamespaces(nsNodes, nil)
	require.Len(t, p.Nodes, 2)
	require.Nil(t, p.Edges)
	require.Nil(t, p.PageInfo)

	var members []string
	vars := map[string]any{"ns": fmt.Sprint(u.NamespaceID)}
	for {
		var out struct {
			Members struct {
				Edges []struct {
					Cursor string
					Node   struct{ User struct{ ID string } }
				}
				PageInfo struct {
					HasNextPage bool
					EndCursor   *string
				}
			}
		}
		e.MustDo(t, u.Token, membersDirect, vars).Decode(t, &out)
		for _, edge := range out.Members.Edges {
			require.NotEmpty(t, edge.Cursor)
			members = append(members, edge.Node.User.ID)
		}
		if !out.Members.PageInfo.HasNextPage {
			break
		}
		vars["after"] = *out.Members.PageInfo.EndCursor
	}
	require.Len(t, members, 5, "the owner and four viewers")
}
