package usage

import (
	"fmt"
	"strings"
	"time"

	"github.com/tenantplane/tenantplane/internal/errcode"
)

// The resources the collectors record, with their units.
const (
	// CPU is in millicore-minutes.
	CPU = "cpu"
	// Memory is in MiB-minutes.
	Memory = "memory"
	// GPU is in device-minutes; the class is the extended resource name,
	// such as nvidia.com/gpu.
	GPU = "gpu"
	// Storage is in MiB-minutes; the class is the storage class.
	Storage = "storage"
	// NetworkPrefix starts the network resources, in bytes:
	// network.<class>.<egress|ingress> (NetworkResource), whose class is
	// also the sample's class.
	NetworkPrefix = "network."
)

// The network resources that the node agents push: bytes that a pod sent
// (egress) or received (ingress), to or from the internet or inside the
// cluster. The class of each sample is the class in its name ("internet",
// "cluster"); a class of the agents' own (a zone) follows the same form.
// Billing prices these names; cluster traffic is free by default.
const (
	NetworkInternetEgress  = "network.internet.egress"
	NetworkInternetIngress = "network.internet.ingress"
	NetworkClusterEgress   = "network.cluster.egress"
	NetworkClusterIngress  = "network.cluster.ingress"
)

// The network classes that the agents tell apart by default, and the two
// directions.
const (
	NetworkInternet = "internet"
	NetworkCluster  = "cluster"
	Egress          = "egress"
	Ingress         = "ingress"
)

// NetworkResource returns the resource of network bytes of class in
// direction (Egress or Ingress): network.<class>.<direction>.
func NetworkResource(class, direction string) string {
	return NetworkPrefix + class + "." + direction
}

// ValidNetwork reports whether a resource under NetworkPrefix is
// network.<class>.<egress|ingress> with class, the sample's class, not
// empty and without a dot. Resources outside NetworkPrefix are not its
// concern: it reports true for them.
func ValidNetwork(resource, class string) bool {
	rest, ok := strings.CutPrefix(resource, NetworkPrefix)
	if !ok {
		return true
	}
	if class == "" || strings.Contains(class, ".") {
		return false
	}
	return rest == class+"."+Egress || rest == class+"."+Ingress
}

// The sources that collectors write as; an ingest meter writes under its
// own name.
const (
	SourceCompute = "compute"
	SourceStorage = "storage"
)

// Sample is one integer quantity of one resource and class used by one
// namespace during one UTC minute.
type Sample struct {
	NamespaceID int64
	Resource    string
	Class       string
	// Minute is the start of the minute, UTC, whole minutes.
	Minute   time.Time
	Quantity int64
	// Key is the idempotency key of an ingested event; it is "" for the
	// collectors' samples, which are unique by namespace, resource, class,
	// minute and source.
	Key string
}

// Unit returns the unit in which quantities of resource are counted.
func Unit(resource string) string {
	switch {
	case resource == CPU:
		return "millicore-minutes"
	case resource == Memory, resource == Storage:
		return "MiB-minutes"
	case resource == GPU:
		return "device-minutes"
	case strings.HasPrefix(resource, NetworkPrefix):
		return "bytes"
	}
	return "units"
}

// The checks below are loops rather than regular expressions: the ingest
// API runs them on every event.

// ValidResource reports whether s is a well-formed resource name: lower
// case letters, digits, '_', '.', '-', starting with a letter, at most 63
// characters.
func ValidResource(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-'
		if !ok {
			return false
		}
	}
	return true
}

// ValidSource reports whether s is a well-formed source (collector or meter)
// name; the rules are those of resources.
func ValidSource(s string) bool { return ValidResource(s) }

// ValidClass reports whether s is a well-formed class: empty, or up to 253
// characters of letters, digits, '_', '.', '/', '-', starting with a
// letter or digit.
func ValidClass(s string) bool {
	if len(s) > 253 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '_' && c != '.' && c != '/' && c != '-') {
			return false
		}
	}
	return true
}

// ValidKey reports whether s is a well-formed idempotency key: 1 to 128
// printable ASCII characters without spaces.
func ValidKey(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// Validate checks a sample before it is written.
func (s Sample) Validate() error {
	switch {
	case s.NamespaceID <= 0:
		return errcode.Invalid("namespaceId", "must be positive")
	case !ValidResource(s.Resource):
		return errcode.Invalid("resource", fmt.Sprintf("%q is not a resource name", s.Resource))
	case !ValidClass(s.Class):
		return errcode.Invalid("class", fmt.Sprintf("%q is not a class name", s.Class))
	case !ValidNetwork(s.Resource, s.Class):
		return errcode.Invalid("resource", fmt.Sprintf("%q of class %q is not network.<class>.<egress|ingress> of its class", s.Resource, s.Class))
	case s.Quantity < 0:
		return errcode.Invalid("quantity", "must not be negative")
	case !IsMinute(s.Minute):
		return errcode.Invalid("minute", "must be a whole UTC minute")
	case s.Key != "" && !ValidKey(s.Key):
		return errcode.Invalid("key", "must be 1 to 128 printable characters without spaces")
	}
	return nil
}

// IsMinute reports whether t is a whole minute in UTC.
func IsMinute(t time.Time) bool {
	return t.Location() == time.UTC && t.Equal(t.Truncate(time.Minute))
}

// Granularity is the width of the points of a usage series.
type Granularity string

// The granularities the usage API offers.
const (
	ByMinute Granularity = "minute"
	ByHour   Granularity = "hour"
	ByDay    Granularity = "day"
)

// Step returns the width of one point.
func (g Granularity) Step() time.Duration {
	switch g {
	case ByMinute:
		return time.Minute
	case ByHour:
		return time.Hour
	case ByDay:
		return 24 * time.Hour
	}
	return 0
}

// Valid reports whether g is one of the granularities.
func (g Granularity) Valid() bool { return g.Step() > 0 }
