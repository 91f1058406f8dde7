package isolation_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tenantplane/tenantplane/isolation"
)

// TestGuardsTypeCheck shows that the API server compiles every guard and
// its type checker finds nothing wrong with any expression.
func TestGuardsTypeCheck(t *testing.T) {
	t.Parallel()
	e := setup(t, setupOptions{noRun: true})
	for _, g := range isolation.Guards(e.cfg) {
		name := *g.Policy.Name
		eventually(t, 30*time.Second, "type checking of "+name, func(ctx context.Context) (bool, error) {
			p, err := e.kube.AdmissionregistrationV1().ValidatingAdmissionPolicies().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			if p.Status.ObservedGeneration != p.Generation || p.Status.TypeChecking == nil {
				return false, nil
			}
			require.Empty(t, p.Status.TypeChecking.ExpressionWarnings, "policy %s", name)
			return true, nil
		})
	}
}
