package cli

import (
	"bufio"
	"errors"
	"fmt"
	"strings"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/spf13/cobra"
)

type purgeOptions struct {
	conn    connOptions
	force   bool
	exclude []string
}

func newPurgeCommand() *cobra.Command {
	o := &purgeOptions{}
	cmd := &cobra.Command{
		Use:   "purge [-Q q1,q2] [-f]",
		Short: "Delete every waiting message of the task queues (celery purge)",
		Long: `purge deletes all messages waiting in the queues named by -Q (default: the queues a
worker with this configuration consumes: task_queues or task_default_queue), like
'celery purge'. It asks for confirmation unless -f is given. Queues that do not exist
count as empty and are not created.

Exit status: 0 purged (or nothing to purge), 1 not confirmed or a broker error, 2 bad usage.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd) },
	}
	o.conn.bind(cmd)
	f := cmd.Flags()
	f.StringSliceVarP(&o.conn.wo.queues, "queues", "Q", nil, "queues to purge, comma separated")
	f.StringSliceVarP(&o.exclude, "exclude-queues", "X", nil, "queues not to purge, comma separated")
	f.BoolVarP(&o.force, "force", "f", false, "do not ask for confirmation")
	return cmd
}

func (o *purgeOptions) run(cmd *cobra.Command) error {
	o.conn.wo.excludeQueues = o.exclude
	s, err := o.conn.settings(cmd)
	if err != nil {
		return err
	}
	var names []string
	for _, q := range s.queues {
		names = append(names, q.Name)
	}
	out := cmd.OutOrStdout()
	if !o.force {
		fmt.Fprintf(out, "You are about to purge %d %s: %s.\nAre you sure you want to delete all tasks (yes/NO)? ",
			len(names), pluralize(len(names), "queue"), strings.Join(names, ", "))
		line, _ := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(line)); a != "yes" && a != "y" {
			return runError{errors.New("purge not confirmed: nothing deleted (use -f to skip the question)")}
		}
	}
	conn, err := dialBroker(s, "ccworker-purge")
	if err != nil {
		return err
	}
	defer conn.Close()
	total := 0
	var ch *amqp.Channel
	for _, name := range names {
		if ch == nil || ch.IsClosed() {
			if ch, err = conn.Channel(); err != nil {
				return runError{err}
			}
		}
		n, err := ch.QueuePurge(name, false)
		if err != nil {
			var aerr *amqp.Error
			if errors.As(err, &aerr) && aerr.Code == amqp.NotFound {
				continue // like Celery: a missing queue has nothing to purge
			}
			return runError{fmt.Errorf("purge %q: %w", name, err)}
		}
		total += n
	}
	if ch != nil && !ch.IsClosed() {
		_ = ch.Close()
	}
	if total == 0 {
		fmt.Fprintf(out, "No messages purged from %d %s.\n", len(names), pluralize(len(names), "queue"))
	} else {
		fmt.Fprintf(out, "Purged %d %s from %d known task %s.\n", total, pluralize(total, "message"),
			len(names), pluralize(len(names), "queue"))
	}
	return nil
}
