package collectors

import (
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"github.com/tenantplane/tenantplane/collectors/usage"
)

// pvcRecord is what the storage collector keeps of a volume claim.
type pvcRecord struct {
	namespace string
	class     string
	bytes     int64
	// start is when it was first known bound; zero while it is not.
	start time.Time
	end   time.Time
}

// storageMeter meters the capacity of bound PersistentVolumeClaims per
// storage class. Claims count whatever the state of their namespace, so a
// suspended tenant's volumes keep counting.
type storageMeter struct {
	now func() time.Time

	mu     sync.Mutex
	pvcs   map[types.UID]*pvcRecord
	synced time.Time
}

func newStorageMeter(now func() time.Time) *storageMeter {
	return &storageMeter{now: now, pvcs: map[types.UID]*pvcRecord{}}
}

func (s *storageMeter) source() string { return usage.SourceStorage }

func (s *storageMeter) handler() cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.upsert(obj, true) },
		UpdateFunc: func(_, obj any) { s.upsert(obj, false) },
		DeleteFunc: s.remove,
	}
}

func (s *storageMeter) upsert(obj any, added bool) {
	pvc, ok := obj.(*corev1.PersistentVolumeClaim)
	if !ok {
		return
	}
	now := s.now().UTC()
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.pvcs[pvc.UID]
	if r == nil {
		r = &pvcRecord{namespace: pvc.Namespace}
		s.pvcs[pvc.UID] = r
	}
	if pvc.Spec.StorageClassName != nil {
		r.class = *pvc.Spec.StorageClassName
	}
	q := pvc.Status.Capacity[corev1.ResourceStorage]
	r.bytes = q.Value()
	if pvc.Status.Phase == corev1.ClaimBound && r.start.IsZero() {
		// A claim already bound when first listed counts from its
		// creation; one seen binding counts from then.
		r.start = now
		if added && s.synced.IsZero() {
			r.start = pvc.CreationTimestamp.UTC()
		}
	}
	if pvc.DeletionTimestamp != nil && r.end.IsZero() && !r.start.IsZero() {
		r.end = pvc.DeletionTimestamp.UTC()
	}
}

func (s *storageMeter) remove(obj any) {
	seen := s.now().UTC()
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	pvc, ok := obj.(*corev1.PersistentVolumeClaim)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.pvcs[pvc.UID]
	if r != nil && r.start.IsZero() {
		delete(s.pvcs, pvc.UID) // never bound: nothing to meter
		return
	}
	if r != nil && r.end.IsZero() {
		r.end = seen
		if dt := pvc.DeletionTimestamp; dt != nil && dt.Time.Before(seen) {
			r.end = dt.UTC()
		}
	}
}

func (s *storageMeter) markSynced(t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.synced.IsZero() {
		s.synced = t
	}
}

func (s *storageMeter) observedSince() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.synced
}

func (s *storageMeter) sample(m time.Time, tenants map[string]int64) ([]usage.Sample, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var reasons []string
	if s.synced.IsZero() || s.synced.After(m) {
		reasons = append(reasons, usage.GapNotObserved)
	}
	type key struct {
		id    int64
		class string
	}
	acc := map[key]int64{}
	for _, r := range s.pvcs {
		secs := overlapSeconds(r.start, r.end, m)
		if secs == 0 || r.bytes <= 0 {
			continue
		}
		id, ok := tenants[r.namespace]
		if !ok {
			continue
		}
		acc[key{id, r.class}] += r.bytes * secs
	}
	out := make([]usage.Sample, 0, len(acc))
	for k, v := range acc {
		if q := perMinute(v, 1<<20); q > 0 {
			out = append(out, usage.Sample{NamespaceID: k.id, Resource: usage.Storage, Class: k.class, Minute: m, Quantity: q})
		}
	}
	return out, reasons
}

func (s *storageMeter) prune(t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for uid, r := range s.pvcs {
		if !r.end.IsZero() && r.end.Before(t) {
			delete(s.pvcs, uid)
		}
	}
}
