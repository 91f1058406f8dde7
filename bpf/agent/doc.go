// Package agent is the node agent of network metering: it watches the pods
// of its node, gives each an endpoint id in the kernel's address map (so a
// reused address never bills the wrong tenant), attaches the bpf package's
// program to each pod's host-side veth and detaches it when the pod ends,
// reads the monotonic counters every interval into batches of deltas, and
// pushes them to the usage ingest API with idempotency keys made of the
// node, the boot, the endpoint and the batch.
//
// What was counted into a batch and the batches not yet accepted are saved
// in a state file before anything is sent or dropped, and the maps and
// links are pinned in bpffs, so neither a restart of the agent nor an
// outage of the ingest API loses or doubles a byte.
//
// It must not price or bill anything, and it imports no other tenantplane
// package than bpf: the usage it sends is what the ingest API validates.
package agent
