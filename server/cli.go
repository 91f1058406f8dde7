package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// Main runs the tenantplane command line with args (without the program
// name) and returns the process exit code.
func Main(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return execute(ctx, args, os.Stdout, os.Stderr)
}

// execute runs the command line with the given output streams.
func execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCommand()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		_, _ = fmt.Fprintln(stderr, "tenantplane:", err)
		var ce *configError
		if errors.As(err, &ce) {
			return 2
		}
		return 1
	}
	return 0
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "tenantplane",
		Short:         "The control plane of a public, multi-tenant Kubernetes cloud",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newVersionCommand(), newServeCommand(), newMigrateCommand(), newDevCommand(), newAgentCommand(),
		newBillingCommand(), newExportCommand())
	return root
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of this binary",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), BuildInfo())
			return err
		},
	}
}

// configError is a setting that is missing or wrong; it exits with code 2.
type configError struct {
	setting string
	msg     string
}

func (e *configError) Error() string { return fmt.Sprintf("setting %s: %s", e.setting, e.msg) }
