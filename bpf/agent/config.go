package agent

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"path"
	"slices"
	"time"
)

// ClassInternet is the class of a remote address in no configured prefix.
const ClassInternet = "internet"

// Prefix is a range of cluster addresses and the class its traffic is
// billed as, such as "cluster"; a later zone class is a prefix with a class
// of its own.
type Prefix struct {
	Prefix netip.Prefix `json:"prefix"`
	Class  string       `json:"class"`
}

// Config configures a node's agent. The zero values of the optional fields
// are replaced by the defaults named on each.
type Config struct {
	// NodeName is the Kubernetes Node whose pods are metered. Required.
	NodeName string `json:"nodeName"`
	// IngestURL is the usage ingest endpoint, POST /v1/usage. Required.
	IngestURL string `json:"ingestURL"`
	// TokenFile holds the ServiceAccount token sent as the bearer token; it
	// is read before each push, so rotated tokens are picked up. Default
	// /var/run/secrets/kubernetes.io/serviceaccount/token.
	TokenFile string `json:"tokenFile"`
	// StateDir is a folder on the node (a hostPath) for the state file:
	// what was already counted into a batch, the batches not yet sent and
	// the endpoints. Required.
	StateDir string `json:"stateDir"`
	// PinPath is the bpffs folder of the maps and links. Default
	// /sys/fs/bpf/tenantplane.
	PinPath string `json:"pinPath"`
	// NetNS is the path of the network namespace with the host side of the
	// pods' veths. Default: the agent's own (a hostNetwork pod).
	NetNS string `json:"netNS"`
	// Prefixes are the cluster's prefixes (pods, Services, nodes, load
	// balancers) with their classes; an address in none is internet. At
	// least one.
	Prefixes []Prefix `json:"prefixes"`
	// InterfacePattern, when set, is a glob (path.Match) that the host-side
	// interface of a pod must match, such as "cali*" or "lxc*"; the
	// interface is the one the node routes the pod's address to, and it
	// must be a veth.
	InterfacePattern string `json:"interfacePattern"`
	// ExcludeNamespaces are namespaces whose pods are not metered, such as
	// kube-system.
	ExcludeNamespaces []string `json:"excludeNamespaces"`
	// Interval is how often counters are read into a batch and batches are
	// sent. Default 1 minute.
	Interval time.Duration `json:"interval"`
	// EndGrace is how long after a pod ends its counters are read a last
	// time and dropped. Default 1 second.
	EndGrace time.Duration `json:"endGrace"`
	// MaxEndpoints bounds the pod addresses in the kernel; default 16,384.
	MaxEndpoints int `json:"maxEndpoints"`
	// MaxCounters bounds the (endpoint, direction, class) counters in the
	// kernel; default 65,536. Packets whose counter does not fit are
	// counted as insert errors.
	MaxCounters int `json:"maxCounters"`
	// MaxPendingBatches bounds the batches kept while the ingest API is
	// unreachable; default 1,440 (a day of minutes). When it is reached
	// no batch is cut: the bytes stay in the kernel counters and go into
	// the next batch cut, so none is lost, only billed later.
	MaxPendingBatches int `json:"maxPendingBatches"`
	// MaxEventsPerRequest bounds one request's events; default 5,000.
	MaxEventsPerRequest int `json:"maxEventsPerRequest"`
	// BootIDFile identifies this boot of the node. Default
	// /proc/sys/kernel/random/boot_id.
	BootIDFile string `json:"bootIDFile"`
	// HTTPTimeout bounds one push request; default 30 seconds.
	HTTPTimeout time.Duration `json:"httpTimeout"`
}

func (c *Config) withDefaults() error {
	if c.TokenFile == "" {
		c.TokenFile = "/var/run/secrets/kubernetes.io/serviceaccount/token"
	}
	if c.PinPath == "" {
		c.PinPath = "/sys/fs/bpf/tenantplane"
	}
	if c.Interval == 0 {
		c.Interval = time.Minute
	}
	if c.EndGrace == 0 {
		c.EndGrace = time.Second
	}
	if c.MaxEndpoints == 0 {
		c.MaxEndpoints = 16384
	}
	if c.MaxCounters == 0 {
		c.MaxCounters = 65536
	}
	if c.MaxPendingBatches == 0 {
		c.MaxPendingBatches = 1440
	}
	if c.MaxEventsPerRequest == 0 {
		c.MaxEventsPerRequest = 5000
	}
	if c.BootIDFile == "" {
		c.BootIDFile = "/proc/sys/kernel/random/boot_id"
	}
	if c.HTTPTimeout == 0 {
		c.HTTPTimeout = 30 * time.Second
	}
	switch {
	case c.NodeName == "":
		return errors.New("node name is required")
	case c.StateDir == "":
		return errors.New("state folder is required")
	case len(c.Prefixes) == 0:
		return errors.New("at least one cluster prefix is required")
	case c.Interval < 10*time.Millisecond || c.EndGrace < 0 || c.HTTPTimeout < 0:
		return errors.New("interval must be at least 10ms, grace and timeout not negative")
	case c.MaxEndpoints < 1 || c.MaxCounters < 1 || c.MaxPendingBatches < 1 || c.MaxEventsPerRequest < 1:
		return errors.New("limits must be positive")
	}
	u, err := url.Parse(c.IngestURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("ingest URL %q is not an http(s) URL", c.IngestURL)
	}
	if c.InterfacePattern != "" {
		if _, err := path.Match(c.InterfacePattern, ""); err != nil {
			return fmt.Errorf("interface pattern %q: %w", c.InterfacePattern, err)
		}
	}
	seen := map[netip.Prefix]bool{}
	for _, p := range c.Prefixes {
		if !p.Prefix.IsValid() {
			return fmt.Errorf("prefix %v is not valid", p.Prefix)
		}
		if !validClass(p.Class) || p.Class == ClassInternet {
			return fmt.Errorf("prefix %s: class %q must be 1 to 32 of a-z, 0-9, '-', '_', starting with a letter, and not %q", p.Prefix, p.Class, ClassInternet)
		}
		if seen[p.Prefix.Masked()] {
			return fmt.Errorf("prefix %s is given twice", p.Prefix)
		}
		seen[p.Prefix.Masked()] = true
	}
	if c.MaxPrefixes() > 1<<16-1 {
		return errors.New("too many prefixes")
	}
	return nil
}

// MaxPrefixes is the size of the kernel's class trie: room for the
// configured prefixes and as many again.
func (c *Config) MaxPrefixes() int { return max(2*len(c.Prefixes), 64) }

func (c *Config) excluded(namespace string) bool {
	return slices.Contains(c.ExcludeNamespaces, namespace)
}

// validClass reports whether s can be a class and the middle part of a
// resource name: 1 to 32 lower-case letters, digits, '-' and '_', starting
// with a letter.
func validClass(s string) bool {
	if len(s) == 0 || len(s) > 32 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Resource is the usage resource of a class and direction:
// network.<class>.<egress|ingress>, in bytes.
func Resource(class, direction string) string {
	return "network." + class + "." + direction
}
