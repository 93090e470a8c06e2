package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ccworker/ccworker/control"
)

// remoteOptions are the flags of `inspect` and `control`.
type remoteOptions struct {
	conn        connOptions
	destination []string
	timeout     float64
	json        bool
}

func (r *remoteOptions) bind(cmd *cobra.Command) {
	r.conn.bind(cmd)
	f := cmd.Flags()
	f.StringSliceVarP(&r.destination, "destination", "d", nil, "node names to ask, comma separated (default: every node)")
	f.Float64VarP(&r.timeout, "timeout", "t", 1.0, "seconds to wait for replies")
	f.BoolVarP(&r.json, "json", "j", false, "print the replies as one JSON object {node: reply}")
}

// inspectMethods are the read-only requests `ccworker inspect` sends, with the arguments
// Celery's Inspect sends for them.
var inspectMethods = map[string]func(args []string) (map[string]any, error){
	"ping":          noArgs,
	"stats":         noArgs,
	"active":        func(a []string) (map[string]any, error) { return map[string]any{"safe": nil}, need(a, 0) },
	"reserved":      func(a []string) (map[string]any, error) { return map[string]any{"safe": nil}, need(a, 0) },
	"scheduled":     func(a []string) (map[string]any, error) { return map[string]any{"safe": nil}, need(a, 0) },
	"revoked":       noArgs,
	"registered":    func(a []string) (map[string]any, error) { return map[string]any{"taskinfoitems": a}, nil },
	"active_queues": noArgs,
	"conf":          func(a []string) (map[string]any, error) { return map[string]any{"with_defaults": false}, need(a, 0) },
	"report":        noArgs,
	"clock":         noArgs,
	"query_task": func(a []string) (map[string]any, error) {
		if len(a) == 0 {
			return nil, errors.New("query_task needs task ids")
		}
		return map[string]any{"ids": a}, nil
	},
}

func noArgs(a []string) (map[string]any, error) { return map[string]any{}, need(a, 0) }

func need(a []string, n int) error {
	if len(a) != n {
		return fmt.Errorf("takes %d argument(s), got %d", n, len(a))
	}
	return nil
}

func newInspectCommand() *cobra.Command {
	o := &remoteOptions{}
	names := make([]string, 0, len(inspectMethods))
	for k := range inspectMethods {
		names = append(names, k)
	}
	slices.Sort(names)
	cmd := &cobra.Command{
		Use:   "inspect METHOD [ARG...]",
		Short: "Ask workers (ccworker or Celery) what they are doing: " + strings.Join(names, ", "),
		Long: `inspect broadcasts a pidbox request to the workers listening on the broker (ccworker
and Python Celery alike) and prints their replies, like 'celery inspect'.

Exit status: 0 when at least one node replied (and none with an error), 1 when no node
replied within --timeout (or one replied with an error), 2 for bad usage.`,
		Args:      cobra.MinimumNArgs(1),
		ValidArgs: names,
		RunE: func(cmd *cobra.Command, args []string) error {
			mk, ok := inspectMethods[args[0]]
			if !ok {
				return usageError{fmt.Errorf("inspect: unknown method %q (one of %s)", args[0], strings.Join(names, ", "))}
			}
			arguments, err := mk(args[1:])
			if err != nil {
				return usageError{fmt.Errorf("inspect %s: %w", args[0], err)}
			}
			return o.broadcast(cmd, args[0], arguments, true)
		},
	}
	o.bind(cmd)
	return cmd
}

func newControlCommand() *cobra.Command {
	o := &remoteOptions{}
	var terminate bool
	var signal string
	cmd := &cobra.Command{
		Use:   "control COMMAND [ARG...]",
		Short: "Send remote-control commands to workers: revoke, shutdown, add_consumer, cancel_consumer, ...",
		Long: `control sends a remote-control command to workers (ccworker and Python Celery alike),
like 'celery control':

  revoke ID... [--terminate [--signal SIGTERM]]
  shutdown                          (warm shutdown; asks the nodes that answer a ping)
  add_consumer QUEUE [EXCHANGE [EXCHANGE_TYPE [ROUTING_KEY]]]
  cancel_consumer QUEUE
  rate_limit TASK RATE              (e.g. 10/m)
  time_limit TASK SOFT [HARD]
  enable_events | disable_events

Exit status: 0 when at least one node acknowledged (none with an error), 1 when no node
replied within --timeout (or one replied with an error), 2 for bad usage.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			method, rest := args[0], args[1:]
			if method == "shutdown" {
				if len(rest) != 0 {
					return usageError{fmt.Errorf("control shutdown: takes no arguments")}
				}
				return o.shutdown(cmd)
			}
			arguments, err := controlArguments(method, rest, terminate, signal)
			if err != nil {
				return err
			}
			return o.broadcast(cmd, method, arguments, false)
		},
	}
	o.bind(cmd)
	cmd.Flags().BoolVar(&terminate, "terminate", false, "revoke: also stop the task if it is running")
	cmd.Flags().StringVar(&signal, "signal", "SIGTERM", "revoke --terminate: the signal (Celery workers; ccworker cancels the task either way)")
	return cmd
}

func jsonNumberOrString(s string) any {
	var f float64
	if _, err := fmt.Sscan(s, &f); err == nil {
		return f
	}
	return s
}

// client connects and returns a pidbox client and a cleanup function.
func (o *remoteOptions) client(cmd *cobra.Command) (*control.Client, func(), error) {
	s, err := o.conn.settings(cmd)
	if err != nil {
		return nil, nil, err
	}
	conn, err := dialBroker(s, "ccworker-cli")
	if err != nil {
		return nil, nil, err
	}
	c := control.NewClient(conn, control.ClientOptions{} /* control_exchange "celery", as the worker */)
	return c, func() { _ = c.Close(); _ = conn.Close() }, nil
}

func (o *remoteOptions) timeoutDuration() time.Duration {
	return time.Duration(o.timeout * float64(time.Second))
}

//lint:ignore ST1005 Celery's own wording, which scripts grep for
var errNoReply = errors.New("No nodes replied within time constraint")

// broadcast sends method, prints the replies and picks the exit status.
func (o *remoteOptions) broadcast(cmd *cobra.Command, method string, args map[string]any, nodeCount bool) error {
	c, done, err := o.client(cmd)
	if err != nil {
		return err
	}
	defer done()
	replies, err := c.Broadcast(cmd.Context(), method, args, o.destination, o.timeoutDuration(), 0)
	if err != nil {
		return runError{err}
	}
	if len(replies) == 0 {
		return runError{errNoReply}
	}
	out := cmd.OutOrStdout()
	if o.json {
		b, err := json.Marshal(replies)
		if err != nil {
			return runError{err}
		}
		fmt.Fprintln(out, string(b))
	} else {
		printReplies(out, replies)
		if nodeCount {
			fmt.Fprintf(out, "\n%d %s online.\n", len(replies), pluralize(len(replies), "node"))
		}
	}
	var failed []string
	for _, node := range sortedNodes(replies) {
		var v map[string]json.RawMessage
		if json.Unmarshal(replies[node], &v) == nil {
			if _, bad := v["error"]; bad {
				failed = append(failed, node)
			}
		}
	}
	if len(failed) > 0 {
		return runError{fmt.Errorf("%s: error reply from %s", method, strings.Join(failed, ", "))}
	}
	return nil
}

// shutdown pings the nodes first, so it can say who was asked to stop (Celery workers
// never answer shutdown itself), then sends shutdown to exactly those nodes.
func (o *remoteOptions) shutdown(cmd *cobra.Command) error {
	c, done, err := o.client(cmd)
	if err != nil {
		return err
	}
	defer done()
	ctx := cmd.Context()
	replies, err := c.Broadcast(ctx, "ping", nil, o.destination, o.timeoutDuration(), 0)
	if err != nil {
		return runError{err}
	}
	if len(replies) == 0 {
		return runError{errNoReply}
	}
	nodes := sortedNodes(replies)
	if err := c.Cast(ctx, "shutdown", map[string]any{}, nodes); err != nil {
		return runError{err}
	}
	out := cmd.OutOrStdout()
	if o.json {
		m := map[string]any{}
		for _, n := range nodes {
			m[n] = map[string]any{"ok": "shutdown requested"}
		}
		b, _ := json.Marshal(m)
		fmt.Fprintln(out, string(b))
		return nil
	}
	for _, n := range nodes {
		fmt.Fprintf(out, "->  %s: OK\n        shutdown requested\n", n)
	}
	return nil
}

func sortedNodes(m map[string]json.RawMessage) []string {
	nodes := make([]string, 0, len(m))
	for n := range m {
		nodes = append(nodes, n)
	}
	slices.Sort(nodes)
	return nodes
}

func pluralize(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

// printReplies prints replies as Celery's CLI does (say_remote_command_reply): a
// "->  node: OK" line and the reply pretty-printed below it, indented.
func printReplies(w io.Writer, replies map[string]json.RawMessage) {
	for _, node := range sortedNodes(replies) {
		var v any
		dec := json.NewDecoder(bytes.NewReader(replies[node]))
		dec.UseNumber()
		if err := dec.Decode(&v); err != nil {
			v = string(replies[node])
		}
		status, text := pretty(v)
		fmt.Fprintf(w, "->  %s: %s\n", node, status)
		if text != "" {
			fmt.Fprintln(w, indent(text, 4))
		}
	}
}

// pretty is celery.bin.base.CLIContext.pretty.
func pretty(v any) (status, text string) {
	switch x := v.(type) {
	case []any:
		if len(x) == 0 {
			return "OK", "- empty -"
		}
		lines := make([]string, len(x))
		for i, item := range x {
			lines[i] = "* " + itemString(item)
		}
		return "OK", strings.Join(lines, "\n")
	case map[string]any:
		if ok, has := x["ok"]; has {
			_, t := pretty(ok)
			return "OK", indent(t, 4)
		}
		if e, has := x["error"]; has {
			_, t := pretty(e)
			return "ERROR", indent(t, 4)
		}
		b, _ := json.MarshalIndent(x, "", "    ") // encoding/json sorts map keys, like sort_keys=True
		return "OK", string(b)
	case string:
		return "OK", x
	case nil:
		return "OK", "None"
	}
	b, _ := json.Marshal(v)
	return "OK", string(b)
}

func itemString(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func indent(s string, n int) string {
	pad := strings.Repeat(" ", n)
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = pad + l
	}
	return strings.Join(lines, "\n")
}

// controlArguments checks a control command's arguments and builds the
// arguments mapping Celery's handlers take.
func controlArguments(method string, rest []string, terminate bool, signal string) (map[string]any, error) {
	bad := func(format string, a ...any) error {
		return usageError{fmt.Errorf("control %s: "+format, append([]any{method}, a...)...)}
	}
	switch method {
	case "revoke":
		if len(rest) == 0 {
			return nil, bad("needs task ids")
		}
		return map[string]any{"task_id": rest, "terminate": terminate, "signal": signal}, nil
	case "add_consumer":
		if len(rest) < 1 || len(rest) > 4 {
			return nil, bad("needs QUEUE [EXCHANGE [EXCHANGE_TYPE [ROUTING_KEY]]]")
		}
		arguments := map[string]any{"queue": rest[0], "exchange": nil, "exchange_type": "direct", "routing_key": nil}
		for i, k := range []string{"exchange", "exchange_type", "routing_key"} {
			if len(rest) > i+1 {
				arguments[k] = rest[i+1]
			}
		}
		return arguments, nil
	case "cancel_consumer":
		if len(rest) != 1 {
			return nil, bad("needs QUEUE")
		}
		return map[string]any{"queue": rest[0]}, nil
	case "rate_limit":
		if len(rest) != 2 {
			return nil, bad("needs TASK RATE")
		}
		return map[string]any{"task_name": rest[0], "rate_limit": rest[1]}, nil
	case "time_limit":
		if len(rest) < 2 || len(rest) > 3 {
			return nil, bad("needs TASK SOFT [HARD]")
		}
		arguments := map[string]any{"task_name": rest[0], "soft": jsonNumberOrString(rest[1]), "hard": nil}
		if len(rest) == 3 {
			arguments["hard"] = jsonNumberOrString(rest[2])
		}
		return arguments, nil
	case "enable_events", "disable_events":
		if len(rest) != 0 {
			return nil, bad("takes no arguments")
		}
		return map[string]any{}, nil
	}
	return nil, usageError{fmt.Errorf("control: unknown command %q (revoke, shutdown, add_consumer, cancel_consumer, rate_limit, time_limit, enable_events, disable_events)", method)}
}
