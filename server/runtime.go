package server

import (
	"fmt"
	"log/slog"
	"runtime/debug"
	"runtime/metrics"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/api/resource"
)

// RuntimeConfig tunes the Go runtime of the server process. The zero
// value leaves the runtime as the GOGC and GOMEMLIMIT environment
// variables (or their defaults) set it.
type RuntimeConfig struct {
	// GCPercent is the garbage collector's target heap growth over the
	// live heap, as GOGC: 0 keeps the runtime's own; -1 turns the
	// collector off until MemoryLimit is reached, and needs MemoryLimit.
	// A high value (400) trades memory for CPU: the API's live heap is
	// small and each request allocates about 60 kB.
	GCPercent int
	// MemoryLimit is a soft limit on the memory the Go runtime uses, as
	// GOMEMLIMIT, in Kubernetes quantity notation ("1536Mi", "2Gi"); empty
	// keeps the runtime's own. Set it below the container's memory limit,
	// so that a high GCPercent collects harder before the container is
	// killed.
	MemoryLimit string

	memoryLimit int64 // MemoryLimit in bytes, set by validate
}

func (c *RuntimeConfig) bindFlags(fs *pflag.FlagSet) {
	fs.IntVar(&c.GCPercent, "gc-percent", c.GCPercent,
		"garbage collector target heap growth in percent, as GOGC (0 keeps GOGC; -1 collects only at --memory-limit)")
	fs.StringVar(&c.MemoryLimit, "memory-limit", c.MemoryLimit,
		"soft memory limit of the Go runtime, as GOMEMLIMIT, e.g. 1536Mi (empty keeps GOMEMLIMIT)")
}

// Bounds of the runtime settings: below minGCPercent the collector runs
// nearly all the time; below minMemoryLimit the server cannot hold its
// authorization policy.
const (
	minGCPercent   = 25
	maxGCPercent   = 10_000
	minMemoryLimit = 64 << 20
)

func (c *RuntimeConfig) validate() error {
	c.memoryLimit = 0
	if c.MemoryLimit != "" {
		q, err := resource.ParseQuantity(c.MemoryLimit)
		if err != nil {
			return &configError{"--memory-limit (TENANTPLANE_MEMORY_LIMIT)", fmt.Sprintf("%q is not a quantity such as 1536Mi", c.MemoryLimit)}
		}
		n, ok := q.AsInt64()
		if !ok || n < minMemoryLimit {
			return &configError{"--memory-limit (TENANTPLANE_MEMORY_LIMIT)", fmt.Sprintf("%s is below 64Mi", c.MemoryLimit)}
		}
		c.memoryLimit = n
	}
	switch {
	case c.GCPercent == 0:
	case c.GCPercent == -1:
		if c.memoryLimit == 0 {
			return &configError{"--gc-percent (TENANTPLANE_GC_PERCENT)", "-1 (collect only at the memory limit) needs --memory-limit"}
		}
	case c.GCPercent < minGCPercent || c.GCPercent > maxGCPercent:
		return &configError{"--gc-percent (TENANTPLANE_GC_PERCENT)",
			fmt.Sprintf("%d is not -1, 0, or between %d and %d", c.GCPercent, minGCPercent, maxGCPercent)}
	}
	return nil
}

// apply sets what c asks of the runtime and logs what the runtime then
// does. It returns a function that puts the previous settings back.
func (c *RuntimeConfig) apply(log *slog.Logger) (restore func()) {
	prevGC, prevLimit := -2, int64(-1)
	if c.GCPercent != 0 {
		prevGC = debug.SetGCPercent(c.GCPercent)
	}
	if c.memoryLimit > 0 {
		prevLimit = debug.SetMemoryLimit(c.memoryLimit)
	}
	now := []metrics.Sample{{Name: "/gc/gogc:percent"}, {Name: "/gc/gomemlimit:bytes"}}
	metrics.Read(now)
	log.Info("go runtime", "gc_percent", now[0].Value.Uint64(), "memory_limit_bytes", now[1].Value.Uint64())
	return func() {
		if prevGC != -2 {
			debug.SetGCPercent(prevGC)
		}
		if prevLimit >= 0 {
			debug.SetMemoryLimit(prevLimit)
		}
	}
}
