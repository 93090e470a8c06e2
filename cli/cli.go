// Package cli is the ccworker command line: the worker (mirroring `celery worker`) and its
// sub-commands. The stock binary is cmd/ccworker; a binary with task handlers of its own
// is the same few lines:
//
//	func main() {
//		os.Exit(cli.Main(os.Args[1:], func(reg *tasks.Registry) error {
//			return reg.Register("myapp.tasks.scale", scale)
//		}))
//	}
package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ccworker/ccworker/tasks"
)

// version is set at build time with -ldflags "-X github.com/ccworker/ccworker/cli.version=...".
var version = "dev"

// Exit codes a script can rely on.
const (
	exitOK     = 0
	exitError  = 1 // a failure while running, or a shutdown cut short
	exitConfig = 2 // bad flags or configuration: fix and run again
)

// usageError marks errors that are the caller's to fix (exit 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// runError marks failures while running (exit 1); every other error, cobra's own
// (unknown command, stray argument, bad flag) included, is a usage error.
type runError struct{ err error }

func (e runError) Error() string { return e.err.Error() }
func (e runError) Unwrap() error { return e.err }

// Register adds a binary's own task handlers to the registry, beside the built-ins.
type Register func(*tasks.Registry) error

// Main runs the command line with args (os.Args[1:]) and returns the exit code: 0 done,
// 1 failed while running, 2 bad flags or configuration. register may be nil.
func Main(args []string, register Register) int {
	return runWith(args, register)
}

func run(args []string) int { return runWith(args, nil) }

func runWith(args []string, register Register) int {
	root := newRootCommand(register)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(os.Stderr, "ccworker:", err)
	var ue usageError
	var re runError
	if errors.As(err, &re) && !errors.As(err, &ue) {
		return exitError
	}
	return exitConfig
}

func newRootCommand(register Register) *cobra.Command {
	opts := &workerOptions{register: register}
	cmd := &cobra.Command{
		Use:   "ccworker",
		Short: "A fast, wire-compatible Celery worker for RabbitMQ and MongoDB",
		Long: `ccworker runs Celery tasks from RabbitMQ and stores their results in MongoDB exactly
as a Python Celery worker does, so clients, Flower and cyberCommons cannot tell the
difference. Flags mirror 'celery worker'; settings come from celeryconfig.py.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := runWorker(cmd, opts); err != nil {
				var ue usageError
				if errors.As(err, &ue) {
					return err
				}
				return runError{err}
			}
			return nil
		},
	}
	opts.bind(cmd)
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	cmd.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print ccworker's version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "ccworker %s (Celery task protocol 1 and 2)\n", version)
		},
	})
	cmd.AddCommand(newInspectCommand(), newControlCommand(), newCallCommand(), newPurgeCommand(), newAllocateCommand())
	return cmd
}

// signalContexts returns a context cancelled by the first SIGTERM or SIGINT (warm
// shutdown) and one cancelled by a second signal, or by SIGQUIT (cold shutdown). A
// SIGTERM repeated within dupWindow of the first is taken for a duplicate, not a second
// request: resource managers such as Slurm may deliver the same TERM twice (to the job
// step and, forwarded, from the batch script), and that must not cut the drain short.
func signalContexts() (warm, cold context.Context, stop func()) {
	const dupWindow = 2 * time.Second
	warm, cancelWarm := context.WithCancel(context.Background())
	cold, cancelCold := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT)
	done := make(chan struct{})
	go func() {
		var first time.Time
		for {
			select {
			case s := <-ch:
				switch {
				case s == syscall.SIGQUIT:
					cancelWarm()
					cancelCold()
				case warm.Err() == nil:
					first = time.Now()
					cancelWarm()
				case s == syscall.SIGTERM && time.Since(first) < dupWindow:
					// a duplicate of the first TERM
				default:
					cancelCold()
				}
			case <-done:
				return
			}
		}
	}()
	return warm, cold, func() {
		signal.Stop(ch)
		close(done)
		cancelWarm()
		cancelCold()
	}
}
