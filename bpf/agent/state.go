package agent

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// stateVersion is the layout of the state file.
const stateVersion = 1

// Direction names, as in resource names.
const (
	egress  = "egress"
	ingress = "ingress"
)

// counterID names one kernel counter: endpoint, direction (0 egress, 1
// ingress) and class id.
type counterID struct {
	Endpoint  uint32
	Direction uint8
	Class     uint16
}

// MarshalText writes "endpoint/direction/class", for JSON map keys.
func (c counterID) MarshalText() ([]byte, error) {
	return fmt.Appendf(nil, "%d/%d/%d", c.Endpoint, c.Direction, c.Class), nil
}

// UnmarshalText reads what MarshalText writes.
func (c *counterID) UnmarshalText(b []byte) error {
	parts := strings.Split(string(b), "/")
	if len(parts) != 3 {
		return fmt.Errorf("counter id %q is not endpoint/direction/class", b)
	}
	ep, err1 := strconv.ParseUint(parts[0], 10, 32)
	d, err2 := strconv.ParseUint(parts[1], 10, 8)
	cl, err3 := strconv.ParseUint(parts[2], 10, 16)
	if err := errors.Join(err1, err2, err3); err != nil {
		return fmt.Errorf("counter id %q: %w", b, err)
	}
	*c = counterID{Endpoint: uint32(ep), Direction: uint8(d), Class: uint16(cl)}
	return nil
}

// reading is one kernel counter's wire bytes, summed over the CPUs.
type reading struct {
	ID        counterID
	WireBytes uint64
}

// endpoint is a pod as the kernel knows it: its addresses map to ID.
type endpoint struct {
	ID        uint32       `json:"id"`
	PodUID    string       `json:"podUID"`
	Namespace string       `json:"namespace"`
	Pod       string       `json:"pod"`
	Addrs     []netip.Addr `json:"addrs"`
	// Ifindex is the host-side interface the program is attached to; 0
	// while it is not found.
	Ifindex int `json:"ifindex,omitempty"`
	// EndedAt is when the pod was seen gone and its interface detached;
	// its counters are read a last time once EndGrace has passed.
	EndedAt time.Time `json:"endedAt,omitzero"`
}

// Event is one usage event as the ingest API takes it.
type Event struct {
	Namespace string `json:"namespace"`
	Resource  string `json:"resource"`
	Class     string `json:"class"`
	Quantity  int64  `json:"quantity"`
	// Time is RFC 3339 with nanoseconds, UTC.
	Time string `json:"time"`
	// Key is the idempotency key: node, boot and state, endpoint and
	// batch sequence.
	Key string `json:"key"`
}

// batch is the deltas of one reading of the counters.
type batch struct {
	Seq    uint64  `json:"seq"`
	Events []Event `json:"events"`
}

// state is what the agent keeps across restarts. Its invariant: for every
// counter, Sent is what has been put into batches, and the batches not yet
// acknowledged are in Pending; the kernel's counter minus Sent is what no
// batch holds yet.
type state struct {
	Version int `json:"version"`
	// Nonce is drawn when the state is created: keys of a state that was
	// lost and made anew never meet the old ones.
	Nonce string `json:"nonce"`
	// BootID and CountersID say which kernel counters Sent refers to.
	BootID       string               `json:"bootID"`
	CountersID   uint32               `json:"countersID"`
	NextEndpoint uint32               `json:"nextEndpoint"`
	Seq          uint64               `json:"seq"`
	Classes      map[string]uint16    `json:"classes"`
	Endpoints    map[uint32]*endpoint `json:"endpoints"`
	Sent         map[counterID]uint64 `json:"sent"`
	Pending      []batch              `json:"pending"`
	byClassID    map[uint16]string    // derived from Classes
	keyPrefix    string               // derived from the node, BootID and Nonce
}

func newState() (*state, error) {
	nonce := make([]byte, 8)
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("draw state nonce: %w", err)
	}
	return &state{
		Version:      stateVersion,
		Nonce:        hex.EncodeToString(nonce),
		NextEndpoint: 1,
		Classes:      map[string]uint16{},
		Endpoints:    map[uint32]*endpoint{},
		Sent:         map[counterID]uint64{},
	}, nil
}

// resetKernel forgets what referred to kernel objects that are gone (a
// reboot, or maps made anew): the counters, and with them the endpoints,
// which the pod watch makes again. Pending batches, the sequence and the
// endpoint ids go on.
func (s *state) resetKernel(bootID string, countersID uint32) {
	s.BootID, s.CountersID = bootID, countersID
	s.Endpoints = map[uint32]*endpoint{}
	s.Sent = map[counterID]uint64{}
}

// classIDs gives every class a small id for the kernel: the ids of known
// classes never change, new classes get new ones.
func (s *state) classIDs(prefixes []Prefix) error {
	names := make([]string, 0, len(prefixes))
	for _, p := range prefixes {
		names = append(names, p.Class)
	}
	sort.Strings(names)
	for _, n := range names {
		if _, ok := s.Classes[n]; ok {
			continue
		}
		next := uint16(1)
		for _, id := range s.Classes {
			next = max(next, id+1)
		}
		if next == 0 {
			return errors.New("class ids are used up")
		}
		s.Classes[n] = next
	}
	return nil
}

func (s *state) derive(node string) {
	s.byClassID = map[uint16]string{}
	for n, id := range s.Classes {
		s.byClassID[id] = n
	}
	h := sha256.Sum256([]byte(node + "\x00" + s.BootID + "\x00" + s.Nonce))
	s.keyPrefix = hex.EncodeToString(h[:12])
}

func (s *state) className(id uint16) string {
	if id == 0 {
		return ClassInternet
	}
	if n, ok := s.byClassID[id]; ok {
		return n
	}
	return "class-" + strconv.Itoa(int(id))
}

// cutResult says what a cut did.
type cutResult struct {
	// Cut is false when the pending batches are at their bound and nothing
	// was taken from the counters.
	Cut bool
	// Batched is true when a batch was appended to Pending.
	Batched bool
	// Finalized are the endpoints whose last counts were taken: their
	// kernel counters may go once the state is saved.
	Finalized []uint32
	// Unattributed are the wire bytes counted for addresses of no
	// endpoint (endpoint 0): never billed.
	Unattributed uint64
	// Backwards counts counters found lower than what was sent, which
	// only a reset of the kernel map can cause; they count from zero.
	Backwards int
}

// cut takes the deltas of readings since the last cut into a batch with
// one event per endpoint, resource and class, and ends the endpoints whose
// grace has passed. It changes s; the caller saves it before it sends the
// batch or drops kernel counters.
func (s *state) cut(readings []reading, now time.Time, grace time.Duration, maxPending int) cutResult {
	var res cutResult
	for _, r := range readings {
		if r.ID.Endpoint == 0 {
			res.Unattributed += r.WireBytes
		}
	}
	if len(s.Pending) >= maxPending {
		return res
	}
	res.Cut = true
	type eventKey struct {
		endpoint        uint32
		resource, class string
	}
	sums := map[eventKey]int64{}
	for _, r := range readings {
		ep := s.Endpoints[r.ID.Endpoint]
		if ep == nil {
			// Endpoint 0, or one whose last counts were taken already.
			continue
		}
		sent := s.Sent[r.ID]
		if r.WireBytes < sent {
			res.Backwards++
			sent = 0
		}
		if r.WireBytes == sent {
			continue
		}
		s.Sent[r.ID] = r.WireBytes
		dir := egress
		if r.ID.Direction == 1 {
			dir = ingress
		}
		class := s.className(r.ID.Class)
		sums[eventKey{ep.ID, Resource(class, dir), class}] += int64(r.WireBytes - sent)
	}
	if len(sums) > 0 {
		s.Seq++
		b := batch{Seq: s.Seq}
		at := now.UTC().Format(time.RFC3339Nano)
		for k, q := range sums {
			b.Events = append(b.Events, Event{
				Namespace: s.Endpoints[k.endpoint].Namespace,
				Resource:  k.resource,
				Class:     k.class,
				Quantity:  q,
				Time:      at,
				Key:       fmt.Sprintf("%s-%d-%d", s.keyPrefix, k.endpoint, s.Seq),
			})
		}
		sort.Slice(b.Events, func(i, j int) bool {
			a, c := b.Events[i], b.Events[j]
			if a.Key != c.Key {
				return a.Key < c.Key
			}
			return a.Resource < c.Resource
		})
		s.Pending = append(s.Pending, b)
		res.Batched = true
	}
	for id, ep := range s.Endpoints {
		if !ep.EndedAt.IsZero() && now.Sub(ep.EndedAt) >= grace {
			delete(s.Endpoints, id)
			res.Finalized = append(res.Finalized, id)
		}
	}
	if len(res.Finalized) > 0 {
		sort.Slice(res.Finalized, func(i, j int) bool { return res.Finalized[i] < res.Finalized[j] })
		for k := range s.Sent {
			if _, ok := s.Endpoints[k.Endpoint]; !ok {
				delete(s.Sent, k)
			}
		}
	}
	return res
}

// pendingTotals returns the events and the quantity in pending batches.
func (s *state) pendingTotals() (events int, quantity int64) {
	for _, b := range s.Pending {
		events += len(b.Events)
		for _, e := range b.Events {
			quantity += e.Quantity
		}
	}
	return events, quantity
}

// stateFile is the state's file in dir.
func stateFile(dir string) string { return filepath.Join(dir, "state.json") }

// loadState reads the state file; a missing file is (nil, nil).
func loadState(dir string) (*state, error) {
	b, err := os.ReadFile(stateFile(dir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state: %w", err)
	}
	s := &state{}
	if err := json.Unmarshal(b, s); err != nil {
		return nil, fmt.Errorf("parse state %s: %w", stateFile(dir), err)
	}
	if s.Version != stateVersion {
		return nil, fmt.Errorf("state %s has version %d, this agent knows %d", stateFile(dir), s.Version, stateVersion)
	}
	if s.Classes == nil {
		s.Classes = map[string]uint16{}
	}
	if s.Endpoints == nil {
		s.Endpoints = map[uint32]*endpoint{}
	}
	if s.Sent == nil {
		s.Sent = map[counterID]uint64{}
	}
	return s, nil
}

// save writes the state to a new file and renames it over the old one,
// syncing both, so a crash leaves the old state or the new one whole.
func (s *state) save(dir string) error {
	b, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "state-*.tmp")
	if err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("write state: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("sync state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	if err := os.Rename(tmp.Name(), stateFile(dir)); err != nil {
		return fmt.Errorf("replace state: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync state folder: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync state folder: %w", err)
	}
	return nil
}

// snapshot and restore undo changes to s that could not be saved.
func (s *state) snapshot() []byte {
	b, err := json.Marshal(s)
	if err != nil {
		panic(fmt.Sprintf("encode state: %v", err)) // maps of plain types always encode
	}
	return b
}

func (s *state) restore(b []byte, node string) {
	fresh := &state{}
	if err := json.Unmarshal(b, fresh); err != nil {
		panic(fmt.Sprintf("decode state snapshot: %v", err))
	}
	*s = *fresh
	s.derive(node)
}
