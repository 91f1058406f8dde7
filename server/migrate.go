package server

import (
	"fmt"
	"strconv"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tenantplane/tenantplane/schema/dbmigrate"
)

func newMigrateCommand() *cobra.Command {
	var dbURL, logLevel string
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply, revert or show the database migrations",
	}
	flags := func(fs *pflag.FlagSet) {
		fs.StringVar(&dbURL, "database-url", "", "PostgreSQL connection URL (also DATABASE_URL)")
		fs.StringVar(&logLevel, "log-level", "info", "log level")
	}
	open := func(cmd *cobra.Command) (*dbmigrate.Migrator, error) {
		if err := applyEnv(cmd); err != nil {
			return nil, err
		}
		if dbURL == "" {
			return nil, &configError{"--database-url (TENANTPLANE_DATABASE_URL)", "is required"}
		}
		return dbmigrate.New(dbURL, newLogger(cmd.ErrOrStderr(), logLevel))
	}

	up := &cobra.Command{
		Use:   "up",
		Short: "Apply every pending migration",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, err := open(cmd)
			if err != nil {
				return err
			}
			defer func() { _ = m.Close() }()
			return m.Up(cmd.Context())
		},
	}
	var all bool
	down := &cobra.Command{
		Use:   "down [N]",
		Short: "Revert the last N migrations (1 by default), or all with --all",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			steps := 1
			if len(args) == 1 {
				n, err := strconv.Atoi(args[0])
				if err != nil || n < 1 {
					return &configError{"N", fmt.Sprintf("%q is not a positive number of migrations", args[0])}
				}
				steps = n
			}
			if all {
				steps = 0
			}
			m, err := open(cmd)
			if err != nil {
				return err
			}
			defer func() { _ = m.Close() }()
			return m.Down(cmd.Context(), steps)
		},
	}
	down.Flags().BoolVar(&all, "all", false, "revert every migration")
	status := &cobra.Command{
		Use:   "status",
		Short: "Show the applied version and what is pending",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, err := open(cmd)
			if err != nil {
				return err
			}
			defer func() { _ = m.Close() }()
			st, err := m.Status(cmd.Context())
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "current: %d\ndirty: %t\nlatest: %d\npending: %v\n", st.Current, st.Dirty, st.Latest, st.Pending)
			return err
		},
	}
	for _, c := range []*cobra.Command{up, down, status} {
		flags(c.Flags())
		cmd.AddCommand(c)
	}
	return cmd
}
