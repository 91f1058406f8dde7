// Package bpf holds the eBPF program that counts each pod's network bytes
// by direction and class (meter.c), its bpf2go output (committed, so that
// building needs no clang), and the Linux loader: Load creates or reuses the
// pinned maps, Attach and Detach put the program on the host side of a
// pod's veth with TCX, and Counters reads what it counted. The node agent
// built on it is the agent subpackage.
//
// It imports nothing else of tenantplane, and it never decides what a byte
// costs or whom to bill: it counts per endpoint id and class id, and user
// space gives those their meaning.
package bpf
