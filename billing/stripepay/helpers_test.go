package stripepay_test

import (
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

func itoa[T int64 | int](v T) string { return strconv.FormatInt(int64(v), 10) }

// metricValue returns the value of the first series of the named counter
// or gauge in b's registry.
func metricValue(t testing.TB, b *bundle, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := b.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					found = found || (lp.GetName() == labels[i] && lp.GetValue() == labels[i+1])
				}
				if !found {
					continue series
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s%v not found", name, labels)
	return 0
}
