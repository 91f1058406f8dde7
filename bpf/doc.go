// Package bpf holds the eBPF program that counts each pod's network bytes
// by direction and class, its bpf2go output (committed, so building needs
// no clang), and the Linux loader used by the node agent.
//
// It imports nothing else of tenantplane.
package bpf
