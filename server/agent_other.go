//go:build !linux

package server

import (
	"errors"

	"github.com/spf13/cobra"
)

// newAgentCommand is the node agent, which needs Linux (eBPF, TCX).
func newAgentCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "agent",
		Short: "Meter the network bytes of the pods of this node (Linux only)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return errors.New("the node agent runs on Linux only")
		},
	}
}
