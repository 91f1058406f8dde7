//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Direction is the way traffic goes, from the pod's point of view.
type Direction uint8

// The directions.
const (
	// Egress is what the pod sends: TCX ingress of the host-side veth.
	Egress Direction = 0
	// Ingress is what the pod receives: TCX egress of the host-side veth.
	Ingress Direction = 1
)

// String returns "egress" or "ingress".
func (d Direction) String() string {
	if d == Ingress {
		return "ingress"
	}
	return "egress"
}

// ClassInternet is the class id of a remote address that matches no prefix
// of the class trie.
const ClassInternet uint16 = 0

// Config sizes the maps and says where they are pinned.
type Config struct {
	// PinPath is a folder in a bpffs where the maps and the TCX links are
	// pinned, so that they, and the counting, outlive the process. Empty
	// means nothing is pinned: closing the Meter detaches and frees
	// everything.
	PinPath string
	// MaxEndpoints bounds the pod addresses in the endpoint map; default
	// 16,384.
	MaxEndpoints int
	// MaxCounters bounds the (endpoint, direction, class) counters; default
	// 65,536. A packet whose counter cannot be inserted counts as an
	// insert error (Errors).
	MaxCounters int
	// MaxPrefixes bounds the prefixes of the class trie; default 1,024.
	MaxPrefixes int
}

func (c *Config) withDefaults() error {
	if c.MaxEndpoints == 0 {
		c.MaxEndpoints = 16384
	}
	if c.MaxCounters == 0 {
		c.MaxCounters = 65536
	}
	if c.MaxPrefixes == 0 {
		c.MaxPrefixes = 1024
	}
	if c.MaxEndpoints < 1 || c.MaxCounters < 1 || c.MaxPrefixes < 1 {
		return errors.New("map sizes must be positive")
	}
	if c.PinPath != "" && !filepath.IsAbs(c.PinPath) {
		return fmt.Errorf("pin path %q is not absolute", c.PinPath)
	}
	return nil
}

// Counter is the monotonic count of one (endpoint, direction, class),
// summed over the CPUs.
type Counter struct {
	Endpoint  uint32
	Direction Direction
	Class     uint16
	// Bytes are IP bytes of the packets as the host saw them (a TSO/GSO
	// packet once), as netfilter counts them.
	Bytes uint64
	// WireBytes are IP bytes with each TSO/GSO segment's own IP and L4
	// headers, as the packets leave the node.
	WireBytes uint64
	// Packets are segments on the wire.
	Packets uint64
}

// Errors are the program's error counters, summed over the CPUs.
type Errors struct {
	// CounterInserts counts packets not counted because their counter
	// could not be inserted (the counter map is full).
	CounterInserts uint64
	// Malformed counts IP packets too short for their headers or with a
	// header length or version that does not fit their EtherType.
	Malformed uint64
}

// Meter is the loaded program and its maps. It owns them: Close releases
// what is not pinned. Its methods are safe for concurrent use.
type Meter struct {
	cfg  Config
	objs meterObjects
	ids  [2]ebpf.ProgramID // by Direction

	mu    sync.Mutex
	links map[int][2]link.Link // by ifindex; the unpinned ones, or the pins opened
}

// Load loads the program and creates its maps, or reuses the ones pinned
// under cfg.PinPath (which must be in a bpffs) when they are compatible.
func Load(cfg Config) (*Meter, error) {
	if err := cfg.withDefaults(); err != nil {
		return nil, fmt.Errorf("meter config: %w", err)
	}
	spec, err := loadMeter()
	if err != nil {
		return nil, err
	}
	sizes := map[string]int{
		meterMapTpEndpoints4: cfg.MaxEndpoints,
		meterMapTpEndpoints6: cfg.MaxEndpoints,
		meterMapTpCounters:   cfg.MaxCounters,
		meterMapTpClasses4:   cfg.MaxPrefixes,
		meterMapTpClasses6:   cfg.MaxPrefixes,
	}
	for name, n := range sizes {
		spec.Maps[name].MaxEntries = uint32(n)
	}
	opts := &ebpf.CollectionOptions{}
	if cfg.PinPath == "" {
		for _, m := range spec.Maps {
			m.Pinning = ebpf.PinNone
		}
	} else {
		if err := os.MkdirAll(filepath.Join(cfg.PinPath, "links"), 0o700); err != nil {
			return nil, fmt.Errorf("create pin folder: %w", err)
		}
		opts.Maps.PinPath = cfg.PinPath
	}
	m := &Meter{cfg: cfg, links: map[int][2]link.Link{}}
	if err := spec.LoadAndAssign(&m.objs, opts); err != nil {
		return nil, fmt.Errorf("load meter program: %w", err)
	}
	for d, p := range []*ebpf.Program{m.objs.MeterPodEgress, m.objs.MeterPodIngress} {
		info, err := p.Info()
		if err != nil {
			_ = m.objs.Close()
			return nil, fmt.Errorf("meter program info: %w", err)
		}
		id, _ := info.ID()
		m.ids[d] = id
	}
	return m, nil
}

// Close releases the program, the maps and the links held by this process.
// Pinned maps and links stay, and so does the counting on pinned links.
func (m *Meter) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	for ifindex, ls := range m.links {
		for _, l := range ls {
			if l != nil {
				errs = append(errs, l.Close())
			}
		}
		delete(m.links, ifindex)
	}
	errs = append(errs, m.objs.Close())
	return errors.Join(errs...)
}

// Remove detaches every link, removes the pins and their folder, and closes
// the Meter: what a node needs when metering is taken off it.
func (m *Meter) Remove() error {
	ifs, err := m.Attached()
	if err != nil {
		return err
	}
	var errs []error
	for _, ifindex := range ifs {
		errs = append(errs, m.Detach(ifindex))
	}
	for _, mp := range []*ebpf.Map{m.objs.TpEndpoints4, m.objs.TpEndpoints6, m.objs.TpClasses4, m.objs.TpClasses6, m.objs.TpClassgen, m.objs.TpCounters, m.objs.TpErrors} {
		if mp.IsPinned() {
			errs = append(errs, mp.Unpin())
		}
	}
	if m.cfg.PinPath != "" {
		errs = append(errs, os.Remove(filepath.Join(m.cfg.PinPath, "links")))
		// The folder goes too, unless something else was put in it.
		if err := os.Remove(m.cfg.PinPath); err != nil && !errors.Is(err, unix.ENOTEMPTY) {
			errs = append(errs, err)
		}
	}
	errs = append(errs, m.Close())
	return errors.Join(errs...)
}

// CountersID identifies the counter map in this boot: it changes when the
// map is created anew, so a saved reading of it no longer applies.
func (m *Meter) CountersID() (uint32, error) {
	info, err := m.objs.TpCounters.Info()
	if err != nil {
		return 0, fmt.Errorf("counter map info: %w", err)
	}
	id, _ := info.ID()
	return uint32(id), nil
}

func (m *Meter) program(d Direction) *ebpf.Program {
	if d == Ingress {
		return m.objs.MeterPodIngress
	}
	return m.objs.MeterPodEgress
}

func attachType(d Direction) ebpf.AttachType {
	if d == Ingress {
		return ebpf.AttachTCXEgress
	}
	return ebpf.AttachTCXIngress
}

func (m *Meter) linkPath(ifindex int, d Direction) string {
	return filepath.Join(m.cfg.PinPath, "links", fmt.Sprintf("%d-%s", ifindex, d))
}

// Attach attaches the program to both directions of the interface, the
// host side of a pod's veth. It is idempotent: a link already pinned for
// this interface is kept (and moved to this program if it runs an older
// one), one whose interface is gone is replaced. Interface indexes are
// those of the calling thread's network namespace.
func (m *Meter) Attach(ifindex int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	ls := m.links[ifindex]
	for _, d := range []Direction{Egress, Ingress} {
		if ls[d] != nil {
			continue
		}
		l, err := m.reuse(ifindex, d)
		if err != nil {
			return err
		}
		if l == nil {
			l, err = link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: m.program(d), Attach: attachType(d)})
			if err != nil {
				return fmt.Errorf("attach %s to interface %d: %w", d, ifindex, err)
			}
			if m.cfg.PinPath != "" {
				if err := l.Pin(m.linkPath(ifindex, d)); err != nil {
					_ = l.Close()
					return fmt.Errorf("pin %s link of interface %d: %w", d, ifindex, err)
				}
			}
		}
		ls[d] = l
		m.links[ifindex] = ls
	}
	return nil
}

// reuse opens the link pinned for (ifindex, d), if any, and returns it when
// it is still attached to ifindex, running this Meter's program.
func (m *Meter) reuse(ifindex int, d Direction) (link.Link, error) {
	if m.cfg.PinPath == "" {
		return nil, nil
	}
	path := m.linkPath(ifindex, d)
	l, err := link.LoadPinnedLink(path, nil)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open pinned link %s: %w", path, err)
	}
	info, err := l.Info()
	if err != nil {
		_ = l.Close()
		return nil, fmt.Errorf("pinned link %s info: %w", path, err)
	}
	if tcx := info.TCX(); tcx == nil || int(tcx.Ifindex) != ifindex {
		// The interface went away (and its index may be another's now).
		err := errors.Join(l.Unpin(), l.Close())
		if err != nil {
			return nil, fmt.Errorf("remove stale link %s: %w", path, err)
		}
		return nil, nil
	}
	if info.Program != m.ids[d] {
		if err := l.Update(m.program(d)); err != nil {
			_ = l.Close()
			return nil, fmt.Errorf("move link %s to this program: %w", path, err)
		}
	}
	return l, nil
}

// Detach detaches the program from the interface and removes the pins. An
// interface that is gone, or was never attached, is no error.
func (m *Meter) Detach(ifindex int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	ls := m.links[ifindex]
	delete(m.links, ifindex)
	var errs []error
	for _, d := range []Direction{Egress, Ingress} {
		l := ls[d]
		path := ""
		if m.cfg.PinPath != "" {
			path = m.linkPath(ifindex, d)
		}
		if l == nil && path != "" {
			var err error
			l, err = link.LoadPinnedLink(path, nil)
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("open pinned link: %w", err))
				continue
			}
		}
		if l == nil {
			continue
		}
		// A link whose interface is gone is detached already.
		if err := l.Detach(); err != nil && !errors.Is(err, unix.ENOLINK) && !errors.Is(err, unix.ENODEV) {
			errs = append(errs, fmt.Errorf("%s: %w", d, err))
		}
		if path != "" {
			if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("unpin %s: %w", d, err))
			}
		}
		errs = append(errs, l.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("detach interface %d: %w", ifindex, err)
	}
	return nil
}

// Attached returns the interface indexes the program is attached to by
// this Meter or by the pins of an earlier process, in increasing order.
func (m *Meter) Attached() ([]int, error) {
	m.mu.Lock()
	seen := map[int]bool{}
	for ifindex := range m.links {
		seen[ifindex] = true
	}
	m.mu.Unlock()
	if m.cfg.PinPath != "" {
		entries, err := os.ReadDir(filepath.Join(m.cfg.PinPath, "links"))
		if err != nil {
			return nil, fmt.Errorf("list pinned links: %w", err)
		}
		for _, e := range entries {
			n, _, ok := strings.Cut(e.Name(), "-")
			if i, err := strconv.Atoi(n); ok && err == nil {
				seen[i] = true
			}
		}
	}
	out := make([]int, 0, len(seen))
	for i := range seen {
		out = append(out, i)
	}
	sort.Ints(out)
	return out, nil
}

// endpointMap returns the endpoint map of a's family and a's key in it.
func (m *Meter) endpointMap(a netip.Addr) (*ebpf.Map, any) {
	a = a.Unmap()
	if a.Is4() {
		return m.objs.TpEndpoints4, a.As4()
	}
	return m.objs.TpEndpoints6, meterIn6{B: a.As16()}
}

// SetEndpoint maps a pod address to its endpoint id, replacing what the
// address mapped to before.
func (m *Meter) SetEndpoint(a netip.Addr, id uint32) error {
	mp, k := m.endpointMap(a)
	if err := mp.Update(k, id, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("set endpoint of %s: %w", a, err)
	}
	return nil
}

// DeleteEndpoint removes a pod address; an address not there is no error.
func (m *Meter) DeleteEndpoint(a netip.Addr) error {
	mp, k := m.endpointMap(a)
	err := mp.Delete(k)
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete endpoint of %s: %w", a, err)
	}
	return nil
}

// Endpoints returns the address to endpoint map.
func (m *Meter) Endpoints() (map[netip.Addr]uint32, error) {
	out := map[netip.Addr]uint32{}
	var k4 [4]byte
	var k6 meterIn6
	var v uint32
	it := m.objs.TpEndpoints4.Iterate()
	for it.Next(&k4, &v) {
		out[netip.AddrFrom4(k4)] = v
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("list IPv4 endpoints: %w", err)
	}
	it = m.objs.TpEndpoints6.Iterate()
	for it.Next(&k6, &v) {
		out[netip.AddrFrom16(k6.B)] = v
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("list IPv6 endpoints: %w", err)
	}
	return out, nil
}

// SetClasses makes the class tries hold exactly classes: each prefix with
// its class id (not ClassInternet, which is what no match means).
func (m *Meter) SetClasses(classes map[netip.Prefix]uint16) error {
	want4 := map[meterLpm4Key]uint32{}
	want6 := map[meterLpm6Key]uint32{}
	for p, c := range classes {
		if !p.IsValid() {
			return fmt.Errorf("class prefix %v is not valid", p)
		}
		if c == ClassInternet {
			return fmt.Errorf("prefix %s: class id %d is reserved for the internet", p, c)
		}
		if p.Addr().Is4In6() {
			if p.Bits() < 96 {
				return fmt.Errorf("class prefix %s mixes IPv4-mapped and IPv6 addresses", p)
			}
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		p = p.Masked()
		if p.Addr().Is4() {
			want4[meterLpm4Key{Prefixlen: uint32(p.Bits()), Addr: p.Addr().As4()}] = uint32(c)
		} else {
			want6[meterLpm6Key{Prefixlen: uint32(p.Bits()), Addr: p.Addr().As16()}] = uint32(c)
		}
	}
	if err := syncTrie(m.objs.TpClasses4, want4); err != nil {
		return fmt.Errorf("IPv4 classes: %w", err)
	}
	if err := syncTrie(m.objs.TpClasses6, want6); err != nil {
		return fmt.Errorf("IPv6 classes: %w", err)
	}
	// A new generation empties the programs' class caches.
	var gen uint32
	if err := m.objs.TpClassgen.Lookup(uint32(0), &gen); err != nil {
		return fmt.Errorf("read class generation: %w", err)
	}
	if err := m.objs.TpClassgen.Update(uint32(0), gen+1, ebpf.UpdateExist); err != nil {
		return fmt.Errorf("bump class generation: %w", err)
	}
	return nil
}

// syncTrie makes trie hold exactly want.
func syncTrie[K comparable](trie *ebpf.Map, want map[K]uint32) error {
	var stale []K
	var k K
	var v uint32
	it := trie.Iterate()
	for it.Next(&k, &v) {
		if _, ok := want[k]; !ok {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("list prefixes: %w", err)
	}
	for k, v := range want {
		if err := trie.Update(k, v, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("set prefix: %w", err)
		}
	}
	for _, k := range stale {
		if err := trie.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete prefix: %w", err)
		}
	}
	return nil
}

// Counters returns every counter, summed over the CPUs.
func (m *Meter) Counters() ([]Counter, error) {
	var out []Counter
	var k meterCounterKey
	var vs []meterCounterValue
	it := m.objs.TpCounters.Iterate()
	for it.Next(&k, &vs) {
		c := Counter{Endpoint: k.Endpoint, Direction: Direction(k.Direction), Class: k.ClassId}
		for _, v := range vs {
			c.Bytes += v.Bytes
			c.WireBytes += v.WireBytes
			c.Packets += v.Packets
		}
		out = append(out, c)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read counters: %w", err)
	}
	return out, nil
}

// DeleteCounters removes every counter of the endpoints for which drop
// returns true.
func (m *Meter) DeleteCounters(drop func(endpoint uint32) bool) error {
	var keys []meterCounterKey
	var k meterCounterKey
	var vs []meterCounterValue
	it := m.objs.TpCounters.Iterate()
	for it.Next(&k, &vs) {
		if drop(k.Endpoint) {
			keys = append(keys, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("list counters: %w", err)
	}
	for _, k := range keys {
		if err := m.objs.TpCounters.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete counter of endpoint %d: %w", k.Endpoint, err)
		}
	}
	return nil
}

// Errors returns the program's error counters.
func (m *Meter) Errors() (Errors, error) {
	var e Errors
	for slot, dst := range map[uint32]*uint64{0: &e.CounterInserts, 1: &e.Malformed} {
		var vs []uint64
		if err := m.objs.TpErrors.Lookup(slot, &vs); err != nil {
			return Errors{}, fmt.Errorf("read error counter %d: %w", slot, err)
		}
		for _, v := range vs {
			*dst += v
		}
	}
	return e, nil
}
