package authz

import (
	"context"
	"testing"

	"github.com/casbin/casbin/v2/model"
	"github.com/stretchr/testify/require"
)

// oneLine serves one permission and one assignment.
type oneLine struct{}

func (oneLine) LoadPolicy(m model.Model) error {
	if err := m.AddPolicy("p", "p", []string{"viewer", "namespace", "read"}); err != nil {
		return err
	}
	return m.AddPolicy("g", "g", []string{"user:1", "viewer", "ns:1"})
}
func (oneLine) LoadFilteredPolicy(model.Model, any) error                 { return nil }
func (oneLine) IsFiltered() bool                                          { return false }
func (oneLine) SavePolicy(model.Model) error                              { return nil }
func (oneLine) AddPolicy(string, string, []string) error                  { return nil }
func (oneLine) RemovePolicy(string, string, []string) error               { return nil }
func (oneLine) RemoveFilteredPolicy(string, string, int, ...string) error { return nil }

func TestMemoResetKeepsDecisions(t *testing.T) {
	t.Parallel()
	a, err := New(context.Background(), Config{Adapter: oneLine{}})
	require.NoError(t, err)
	a.rm.setGrants(nil) // every check goes to the enforcer, whose memo this is
	ctx := context.Background()
	require.True(t, a.Can(ctx, 1, NamespaceRead, NamespaceDomain(1)))
	require.False(t, a.Can(ctx, 2, NamespaceRead, NamespaceDomain(1)))
	a.resetMemo()
	require.True(t, a.Can(ctx, 1, NamespaceRead, NamespaceDomain(1)))
	require.False(t, a.Can(ctx, 2, NamespaceRead, NamespaceDomain(1)))
	a.checks.Store(memoLimit - 1)
	require.True(t, a.Can(ctx, 1, NamespaceRead, NamespaceDomain(1)), "the check that resets the memo still decides")
}
