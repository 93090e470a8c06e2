package cli

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/spf13/cobra"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/ccworker/ccworker/prefetch"
	"github.com/ccworker/ccworker/protocol"
	"github.com/ccworker/ccworker/results"
)

type callOptions struct {
	conn      connOptions
	args      string
	kwargs    string
	queue     string
	countdown float64
	wait      bool
	timeout   float64
	count     int
}

func newCallCommand() *cobra.Command {
	o := &callOptions{}
	cmd := &cobra.Command{
		Use:   "call TASK",
		Short: "Send a task (Celery protocol 2, JSON) and optionally wait for its result",
		Long: `call sends TASK as Celery's apply_async would (protocol 2, JSON), to the default exchange
with the queue name as routing key, declaring the queue as Celery does; ccworker and Python
Celery workers both run it. It prints the task id, or with --wait the result as JSON, read
from the result backend (MongoDB) as AsyncResult.get does.

With -n COUNT it sends COUNT copies; with --wait it prints each result (one JSON per line,
in send order) and a progress line with rate and ETA on stderr (rewritten in place when
stdout is a terminal, every 2 s otherwise).

Exit status: 0 sent (and with --wait: every task succeeded), 1 a task failed or was
revoked, --timeout passed, or the broker/backend failed, 2 bad usage.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return o.run(cmd, args[0]) },
	}
	o.conn.bind(cmd)
	f := cmd.Flags()
	f.StringVarP(&o.args, "args", "a", "[]", "positional arguments, a JSON list")
	f.StringVarP(&o.kwargs, "kwargs", "k", "{}", "keyword arguments, a JSON object")
	f.StringVar(&o.queue, "queue", "", "queue to send to (default: task_default_queue)")
	f.Float64Var(&o.countdown, "countdown", 0, "run no earlier than this many seconds from now (sets eta)")
	f.BoolVar(&o.wait, "wait", false, "wait for the result(s) and print them as JSON")
	f.Float64Var(&o.timeout, "timeout", 0, "with --wait: give up (exit 1) after this many seconds; 0 = wait forever")
	f.IntVarP(&o.count, "count", "n", 1, "send this many copies of the task")
	return cmd
}

// decodeJSONArg decodes a JSON flag keeping integers integers (Python must see 2, not 2.0).
func decodeJSONArg(s string) (any, error) {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("trailing data")
	}
	return fixNumbers(v), nil
}

func fixNumbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		f, _ := x.Float64()
		return f
	case []any:
		for i := range x {
			x[i] = fixNumbers(x[i])
		}
	case map[string]any:
		for k := range x {
			x[k] = fixNumbers(x[k])
		}
	}
	return v
}

func (o *callOptions) run(cmd *cobra.Command, task string) error {
	args, kwargs, err := o.arguments()
	if err != nil {
		return err
	}
	s, err := o.conn.settings(cmd)
	if err != nil {
		return err
	}
	queue := o.queue
	if queue == "" {
		queue = s.cfg.TaskDefaultQueue
	}
	qs, err := queues(s.cfg, []string{queue}, nil)
	if err != nil {
		return usageError{err}
	}
	var store *results.MongoStore
	if o.wait {
		var disconnect func()
		if store, disconnect, err = resultStore(s); err != nil {
			return err
		}
		defer disconnect()
	}

	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	if o.wait && o.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, seconds(o.timeout))
		defer cancel()
	}
	conn, err := dialBroker(s, "ccworker-call")
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := prefetch.Declare(conn, qs); err != nil {
		return runError{err}
	}
	ids, msgs, err := o.messages(task, args, kwargs)
	if err != nil {
		return err
	}
	if err := publishConfirmed(ctx, conn, queue, msgs); err != nil {
		return runError{err}
	}
	if !o.wait {
		for _, id := range ids {
			fmt.Fprintln(cmd.OutOrStdout(), id)
		}
		return nil
	}
	var prog *progress
	if o.count > 1 {
		prog = newProgress(cmd.ErrOrStderr(), o.count, isTerminal(os.Stdout))
	}
	got, err := waitResults(ctx, store, ids, prog)
	return o.report(cmd, task, ids, got, err)
}

// arguments checks --args, --kwargs and -n.
func (o *callOptions) arguments() ([]any, map[string]any, error) {
	a, err := decodeJSONArg(o.args)
	args, ok := a.([]any)
	if err != nil || !ok {
		return nil, nil, usageError{fmt.Errorf("--args %q: not a JSON list", o.args)}
	}
	k, err := decodeJSONArg(o.kwargs)
	kwargs, ok := k.(map[string]any)
	if err != nil || !ok {
		return nil, nil, usageError{fmt.Errorf("--kwargs %q: not a JSON object", o.kwargs)}
	}
	if o.count < 1 {
		return nil, nil, usageError{fmt.Errorf("-n %d: must be at least 1", o.count)}
	}
	return args, kwargs, nil
}

// resultStore connects to the result backend for --wait.
func resultStore(s *settings) (*results.MongoStore, func(), error) {
	if s.mongo == nil {
		return nil, nil, usageError{errors.New("--wait needs a result backend (result_backend, CELERY_RESULT_BACKEND or --result-backend)")}
	}
	client, err := mongo.Connect(options.Client().ApplyURI(s.mongo.URI).SetAppName("ccworker-call"))
	if err != nil {
		return nil, nil, usageError{fmt.Errorf("result backend %s: %w", s.mongo.Redacted(), err)}
	}
	store := &results.MongoStore{Coll: client.Database(s.mongo.Database).Collection(s.mongo.Collection)}
	return store, func() { _ = client.Disconnect(context.Background()) }, nil
}

// messages encodes the -n task messages, each with a new id.
func (o *callOptions) messages(task string, args []any, kwargs map[string]any) ([]string, []amqp.Publishing, error) {
	host, _ := os.Hostname()
	origin := fmt.Sprintf("gen%d@%s", os.Getpid(), host)
	var eta time.Time
	if o.countdown > 0 {
		eta = time.Now().Add(seconds(o.countdown)).UTC()
	}
	ids := make([]string, o.count)
	msgs := make([]amqp.Publishing, o.count)
	for i := range ids {
		ids[i] = uuid4()
		m, err := protocol.EncodeV2(&protocol.Request{ID: ids[i], Task: task, Args: cloneSlice(args), Kwargs: kwargs,
			ETA: eta, Origin: origin})
		if err != nil {
			return nil, nil, usageError{err}
		}
		msgs[i] = amqp.Publishing{Headers: prefetch.Table(m.Headers), ContentType: m.ContentType,
			ContentEncoding: m.ContentEncoding, DeliveryMode: amqp.Persistent, CorrelationId: m.CorrelationID,
			ReplyTo: m.ReplyTo, Priority: m.Priority, Body: m.Body}
	}
	return ids, msgs, nil
}

// report prints each result (stdout) or failure (stderr) in id order and
// turns failures and timeouts into the exit status.
func (o *callOptions) report(cmd *cobra.Command, task string, ids []string, got map[string]results.Stored, err error) error {
	failed := 0
	for _, id := range ids {
		st, ok := got[id]
		if !ok {
			continue
		}
		if st.Status == results.StatusSuccess {
			b, jerr := json.Marshal(st.Result)
			if jerr != nil {
				b = []byte(fmt.Sprintf("%q", fmt.Sprint(st.Result)))
			}
			fmt.Fprintln(cmd.OutOrStdout(), string(b))
			continue
		}
		failed++
		fmt.Fprintf(cmd.ErrOrStderr(), "%s[%s] %s: %s\n", task, id, st.Status, formatException(st.Result))
	}
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return runError{fmt.Errorf("timeout: %d of %d task(s) not ready after %gs", len(ids)-len(got), len(ids), o.timeout)}
		}
		return runError{err}
	}
	if failed > 0 {
		return runError{fmt.Errorf("%d of %d task(s) failed", failed, len(ids))}
	}
	return nil
}

func cloneSlice(a []any) []any { return append([]any(nil), a...) }

// publishConfirmed publishes msgs to the default exchange with routing key queue on a
// confirm-mode channel and waits until the broker has confirmed all of them.
func publishConfirmed(ctx context.Context, conn *amqp.Connection, queue string, msgs []amqp.Publishing) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	if err := ch.Confirm(false); err != nil {
		return err
	}
	const window = 1000
	var pending []*amqp.DeferredConfirmation
	flush := func() error {
		for _, dc := range pending {
			ok, err := dc.WaitContext(ctx)
			if err != nil {
				return fmt.Errorf("publish to %q: %w", queue, err)
			}
			if !ok {
				return fmt.Errorf("publish to %q: %w", queue, prefetch.ErrNacked)
			}
		}
		pending = pending[:0]
		return nil
	}
	for _, m := range msgs {
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", queue, false, false, m)
		if err != nil {
			return fmt.Errorf("publish to %q: %w", queue, err)
		}
		pending = append(pending, dc)
		if len(pending) >= window {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// readyStates end a task (celery.states.READY_STATES).
var readyStates = map[string]bool{results.StatusSuccess: true, results.StatusFailure: true, results.StatusRevoked: true}

// waitResults polls the result collection by _id (as AsyncResult.get does, 0.5 s at
// most between polls) until every id is ready or ctx ends; it returns the ready ones.
func waitResults(ctx context.Context, store *results.MongoStore, ids []string, prog *progress) (map[string]results.Stored, error) {
	done := make(map[string]results.Stored, len(ids))
	pending := append([]string(nil), ids...)
	failed := 0
	delay := 50 * time.Millisecond
	for {
		got, err := store.Results(ctx, pending)
		if err != nil {
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			return done, err
		}
		next := pending[:0]
		for _, id := range pending {
			if st, ok := got[id]; ok && readyStates[st.Status] {
				done[id] = st
				if st.Status != results.StatusSuccess {
					failed++
				}
				continue
			}
			next = append(next, id)
		}
		pending = next
		if prog != nil {
			prog.update(len(done), failed)
		}
		if len(pending) == 0 {
			if prog != nil {
				prog.finish(len(done), failed)
			}
			return done, nil
		}
		select {
		case <-ctx.Done():
			if prog != nil {
				prog.finish(len(done), failed)
			}
			return done, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(delay*2, 500*time.Millisecond)
	}
}

// formatException renders a stored exception {"exc_type", "exc_message", "exc_module"}
// as Python prints it: "TypeError: unsupported operand ...".
func formatException(v any) string {
	m, ok := v.(map[string]any)
	if !ok {
		b, _ := json.Marshal(v)
		return string(b)
	}
	typ, _ := m["exc_type"].(string)
	var msg string
	switch x := m["exc_message"].(type) {
	case []any:
		parts := make([]string, len(x))
		for i, p := range x {
			if s, ok := p.(string); ok {
				parts[i] = s
			} else {
				b, _ := json.Marshal(p)
				parts[i] = string(b)
			}
		}
		msg = strings.Join(parts, ", ")
	case string:
		msg = x
	case nil:
	default:
		b, _ := json.Marshal(x)
		msg = string(b)
	}
	if typ == "" {
		b, _ := json.Marshal(v)
		return string(b)
	}
	if mod, _ := m["exc_module"].(string); mod != "" && mod != "builtins" && mod != "celery.exceptions" {
		typ = mod + "." + typ
	}
	if msg == "" {
		return typ
	}
	return typ + ": " + msg
}

func uuid4() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
