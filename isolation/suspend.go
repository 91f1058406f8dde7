package isolation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/tenantplane/tenantplane/internal/errcode"
	"github.com/tenantplane/tenantplane/tenancy"
)

// SuspenderFieldManager changes workloads and the suspension marker. It is
// not FieldManager, so applying the desired objects never undoes it.
const SuspenderFieldManager = "tenantplane-suspender"

// Suspender suspends and resumes tenant namespaces: billing calls it for
// debt, the GraphQL layer for platform admins. Both record the new state
// in Postgres; the reconciler then makes Kubernetes follow, exactly.
type Suspender interface {
	// Suspend suspends an active namespace. Suspending a suspended one
	// changes nothing; a namespace being deleted is CONFLICT.
	Suspend(ctx context.Context, namespaceID int64, reason string) error
	// Resume resumes a suspended namespace. Resuming an active one changes
	// nothing; a namespace being deleted is CONFLICT.
	Resume(ctx context.Context, namespaceID int64) error
}

// StateChanger records namespace states; *tenancy.Service is one. The
// caller's context carries the tenancy.Actor (billing uses a system actor).
type StateChanger interface {
	SuspendNamespace(ctx context.Context, nsID int64, reason string) (tenancy.Namespace, error)
	ResumeNamespace(ctx context.Context, nsID int64, reason string) (tenancy.Namespace, error)
}

// Suspension is the Suspender: it records the state through the tenancy
// service (state, audit and outbox rows in one transaction) and nudges the
// reconciler, which does the Kubernetes side:
//
// Suspend marks the namespace, adds a ResourceQuota that allows no pods,
// reduces every member's RoleBinding to viewer, scales every Deployment,
// StatefulSet and ownerless ReplicaSet to zero with its replica count saved
// in an annotation, suspends every CronJob and unfinished Job with its
// previous flag saved, and deletes the remaining pods. Resume restores the
// roles, removes the quota, restores every saved value exactly and removes
// the mark last. Both are idempotent; a crash halfway is finished by the
// outbox retry or the next resync.
type Suspension struct {
	states StateChanger
	rec    *Reconciler
}

var _ Suspender = (*Suspension)(nil)

// NewSuspension returns a Suspension. rec may be nil (on a replica that
// does not run the reconciler); the outbox carries the change anyway.
func NewSuspension(states StateChanger, rec *Reconciler) (*Suspension, error) {
	if states == nil {
		return nil, errors.New("isolation: suspension needs a StateChanger")
	}
	return &Suspension{states: states, rec: rec}, nil
}

// Suspend implements Suspender.
func (s *Suspension) Suspend(ctx context.Context, namespaceID int64, reason string) error {
	if _, err := s.states.SuspendNamespace(ctx, namespaceID, reason); err != nil {
		return fmt.Errorf("suspending namespace %d: %w", namespaceID, err)
	}
	s.nudge(namespaceID)
	return nil
}

// Resume implements Suspender.
func (s *Suspension) Resume(ctx context.Context, namespaceID int64) error {
	return s.ResumeWithReason(ctx, namespaceID, "")
}

// ResumeWithReason is Resume with a reason for the audit log, such as a
// platform admin's.
func (s *Suspension) ResumeWithReason(ctx context.Context, namespaceID int64, reason string) error {
	if _, err := s.states.ResumeNamespace(ctx, namespaceID, reason); err != nil {
		return fmt.Errorf("resuming namespace %d: %w", namespaceID, err)
	}
	s.nudge(namespaceID)
	return nil
}

func (s *Suspension) nudge(id int64) {
	if s.rec != nil {
		s.rec.Enqueue(tenancy.NamespaceKey(id))
	}
}

// metaPatch is the metadata part of a merge patch: annotations to set (or,
// with a nil value, remove) and the resourceVersion the change is based
// on, so that a concurrent change makes the patch fail instead of being
// overwritten.
type metaPatch struct {
	Annotations     map[string]*string `json:"annotations,omitempty"`
	ResourceVersion string             `json:"resourceVersion"`
}

type patcher func(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, sub ...string) error

func (r *Reconciler) patch(ctx context.Context, p patcher, name string, meta metaPatch, spec any) error {
	body, err := json.Marshal(map[string]any{"metadata": meta, "spec": spec})
	if err != nil {
		return err
	}
	return p(ctx, name, types.MergePatchType, body, metav1.PatchOptions{FieldManager: SuspenderFieldManager})
}

func ptr[T any](v T) *T { return &v }

// scalable is a Deployment, StatefulSet or ReplicaSet as suspension sees it.
type scalable struct {
	kind     string
	meta     metav1.ObjectMeta
	replicas *int32
	patch    patcher
}

// toggled is a CronJob or Job as suspension sees it.
type toggled struct {
	kind    string
	meta    metav1.ObjectMeta
	suspend *bool
	patch   patcher
}

// workloads lists what suspension touches in namespace ns, live from the
// API server.
func (r *Reconciler) workloads(ctx context.Context, ns string) ([]scalable, []toggled, error) {
	apps, batch := r.kube.AppsV1(), r.kube.BatchV1()
	var s []scalable
	var t []toggled
	deps, err := apps.Deployments(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("listing deployments: %w", err)
	}
	for _, d := range deps.Items {
		s = append(s, scalable{"Deployment", d.ObjectMeta, d.Spec.Replicas, discard(apps.Deployments(ns).Patch)})
	}
	sts, err := apps.StatefulSets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("listing statefulsets: %w", err)
	}
	for _, d := range sts.Items {
		s = append(s, scalable{"StatefulSet", d.ObjectMeta, d.Spec.Replicas, discard(apps.StatefulSets(ns).Patch)})
	}
	rss, err := apps.ReplicaSets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("listing replicasets: %w", err)
	}
	for _, d := range rss.Items {
		if len(d.OwnerReferences) == 0 {
			s = append(s, scalable{"ReplicaSet", d.ObjectMeta, d.Spec.Replicas, discard(apps.ReplicaSets(ns).Patch)})
		}
	}
	cjs, err := batch.CronJobs(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("listing cronjobs: %w", err)
	}
	for _, c := range cjs.Items {
		t = append(t, toggled{"CronJob", c.ObjectMeta, c.Spec.Suspend, discard(batch.CronJobs(ns).Patch)})
	}
	jobs, err := batch.Jobs(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("listing jobs: %w", err)
	}
	for _, j := range jobs.Items {
		if _, saved := j.Annotations[AnnotationSavedSuspend]; !saved && jobFinished(&j) {
			continue // nothing left to run
		}
		t = append(t, toggled{"Job", j.ObjectMeta, j.Spec.Suspend, discard(batch.Jobs(ns).Patch)})
	}
	return s, t, nil
}

// discard drops the returned object of a typed client's Patch.
func discard[T any](f func(context.Context, string, types.PatchType, []byte, metav1.PatchOptions, ...string) (T, error)) patcher {
	return func(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, sub ...string) error {
		_, err := f(ctx, name, pt, data, opts, sub...)
		return err
	}
}

func jobFinished(j *batchv1.Job) bool {
	for _, c := range j.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// suspendWorkloads scales to zero and suspends everything in namespace ns,
// saving what it changes, then deletes the remaining pods. Values already
// saved are never overwritten, so a second run changes nothing.
func (r *Reconciler) suspendWorkloads(ctx context.Context, ns string) error {
	scal, togg, err := r.workloads(ctx, ns)
	if err != nil {
		return fmt.Errorf("suspending %s: %w", ns, err)
	}
	var errs []error
	for _, w := range scal {
		cur := int32(1)
		if w.replicas != nil {
			cur = *w.replicas
		}
		_, saved := w.meta.Annotations[AnnotationSavedReplicas]
		if saved && cur == 0 {
			continue
		}
		mp := metaPatch{ResourceVersion: w.meta.ResourceVersion}
		if !saved {
			mp.Annotations = map[string]*string{AnnotationSavedReplicas: ptr(strconv.Itoa(int(cur)))}
		}
		if err := r.patch(ctx, w.patch, w.meta.Name, mp, map[string]any{"replicas": 0}); err != nil {
			errs = append(errs, fmt.Errorf("scaling %s %s/%s to zero: %w", w.kind, ns, w.meta.Name, err))
			continue
		}
		r.m.suspendedObject.WithLabelValues("suspend", w.kind).Inc()
	}
	for _, w := range togg {
		cur := w.suspend != nil && *w.suspend
		_, saved := w.meta.Annotations[AnnotationSavedSuspend]
		if saved && cur {
			continue
		}
		mp := metaPatch{ResourceVersion: w.meta.ResourceVersion}
		if !saved {
			mp.Annotations = map[string]*string{AnnotationSavedSuspend: ptr(strconv.FormatBool(cur))}
		}
		if err := r.patch(ctx, w.patch, w.meta.Name, mp, map[string]any{"suspend": true}); err != nil {
			errs = append(errs, fmt.Errorf("suspending %s %s/%s: %w", w.kind, ns, w.meta.Name, err))
			continue
		}
		r.m.suspendedObject.WithLabelValues("suspend", w.kind).Inc()
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	// Nothing can start new pods now: the quota allows none and every
	// controller wants none. What still runs goes.
	if err := r.kube.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
		return fmt.Errorf("deleting pods of %s: %w", ns, err)
	}
	return nil
}

// resumeWorkloads restores every value suspendWorkloads saved in namespace
// ns and removes the saved annotations, one object at a time, so that a
// second run finishes what a first left.
func (r *Reconciler) resumeWorkloads(ctx context.Context, ns string) error {
	scal, togg, err := r.workloads(ctx, ns)
	if err != nil {
		return fmt.Errorf("resuming %s: %w", ns, err)
	}
	var errs []error
	for _, w := range scal {
		saved, ok := w.meta.Annotations[AnnotationSavedReplicas]
		if !ok {
			continue
		}
		mp := metaPatch{ResourceVersion: w.meta.ResourceVersion, Annotations: map[string]*string{AnnotationSavedReplicas: nil}}
		spec := map[string]any{}
		if n, err := strconv.ParseInt(saved, 10, 32); err == nil && n >= 0 {
			spec["replicas"] = n
		} else {
			r.log.Error("dropping unreadable saved replica count", "namespace", ns, "kind", w.kind, "name", w.meta.Name, "value", saved)
		}
		if err := r.patch(ctx, w.patch, w.meta.Name, mp, spec); err != nil {
			errs = append(errs, fmt.Errorf("restoring %s %s/%s: %w", w.kind, ns, w.meta.Name, err))
			continue
		}
		r.m.suspendedObject.WithLabelValues("resume", w.kind).Inc()
	}
	for _, w := range togg {
		saved, ok := w.meta.Annotations[AnnotationSavedSuspend]
		if !ok {
			continue
		}
		mp := metaPatch{ResourceVersion: w.meta.ResourceVersion, Annotations: map[string]*string{AnnotationSavedSuspend: nil}}
		spec := map[string]any{}
		if b, err := strconv.ParseBool(saved); err == nil {
			spec["suspend"] = b
		} else {
			r.log.Error("dropping unreadable saved suspend flag", "namespace", ns, "kind", w.kind, "name", w.meta.Name, "value", saved)
		}
		if err := r.patch(ctx, w.patch, w.meta.Name, mp, spec); err != nil {
			errs = append(errs, fmt.Errorf("restoring %s %s/%s: %w", w.kind, ns, w.meta.Name, err))
			continue
		}
		r.m.suspendedObject.WithLabelValues("resume", w.kind).Inc()
	}
	return errors.Join(errs...)
}

// errNamespaceDeleting refuses work on a namespace being deleted.
var errNamespaceDeleting = errcode.New(errcode.Conflict, "namespace is being deleted")
