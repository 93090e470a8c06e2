package canvas

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/ccworker/ccworker/config"
	"github.com/ccworker/ccworker/internal/fnmatch"
)

// ErrQueueNotFound is returned when a task is routed to a queue that is not in
// task_queues while task_create_missing_queues is off (Celery's QueueNotFound).
var ErrQueueNotFound = errors.New("canvas: queue missing from task_queues")

// ErrUnsupported is returned for canvas constructs or settings that ccworker
// cannot reproduce (router classes named by string, chords as callbacks, ...).
var ErrUnsupported = errors.New("canvas: unsupported")

// Route is where a task message is published, as kombu computes it in
// AMQP.send_task_message.
type Route struct {
	Queue      string // the destination queue's name
	Exchange   string // "" (the default exchange) for direct exchanges
	RoutingKey string // the queue name for direct exchanges
	Priority   uint8  // the AMQP priority property (0 when none is given)
}

// Router resolves task names and signature options to a Route like Celery's
// app.amqp.router (celery/app/routes.py). It is immutable and safe for
// concurrent use.
type Router struct {
	routes        []mapRoute
	queues        map[string]config.Queue
	createMissing bool
	defaultQueue  string
	defaultEx     string
	defaultRK     string
}

// mapRoute is one MapRoute: exact names first, then glob patterns in order.
type mapRoute struct {
	exact    map[string]any
	patterns []pattern
}

type pattern struct {
	re    *regexp.Regexp
	route any
}

// NewRouter builds a Router from the configuration and the raw value of the
// task_routes setting as config/pyliteral.Parse returns it (nil when unset).
//
// task_routes may be a dict {name or glob: route} or a list/tuple whose items
// are such dicts or lists of (key, route) pairs; the first MapRoute that
// matches wins. A route is a dict with queue, exchange, routing_key,
// priority... or a plain queue name. Keys containing "*" are fnmatch
// patterns. Python keeps a dict's source order when several patterns match;
// the config reader does not, so patterns of one dict are tried in sorted
// order (use a list of dicts for a defined precedence). Router classes
// (strings naming a class) and compiled regexes give ErrUnsupported.
func NewRouter(cfg *config.Config, taskRoutes any) (*Router, error) {
	r := &Router{
		queues:        make(map[string]config.Queue),
		createMissing: cfg.TaskCreateMissingQueues,
		defaultQueue:  cfg.TaskDefaultQueue,
		defaultEx:     cfg.TaskDefaultExchange,
		defaultRK:     cfg.TaskDefaultRoutingKey,
	}
	if r.defaultEx == "" {
		r.defaultEx = r.defaultQueue
	}
	if r.defaultRK == "" {
		r.defaultRK = r.defaultQueue
	}
	if len(cfg.TaskQueues) == 0 && cfg.TaskDefaultQueue != "" {
		r.queues[cfg.TaskDefaultQueue] = config.Queue{
			Name:         cfg.TaskDefaultQueue,
			Exchange:     r.defaultEx,
			ExchangeType: cfg.TaskDefaultExchangeType,
			RoutingKey:   r.defaultRK,
		}
	}
	for _, q := range cfg.TaskQueues {
		r.queues[q.Name] = q
	}
	var items []any
	switch v := taskRoutes.(type) {
	case nil:
	case []any:
		items = v
	default:
		items = []any{v}
	}
	for i, it := range items {
		m, err := newMapRoute(it)
		if err != nil {
			return nil, fmt.Errorf("canvas: task_routes[%d]: %w", i, err)
		}
		r.routes = append(r.routes, m)
	}
	return r, nil
}

func newMapRoute(v any) (mapRoute, error) {
	m := mapRoute{exact: map[string]any{}}
	add := func(k string, route any) error {
		switch route.(type) {
		case string, map[string]any:
		default:
			return fmt.Errorf("route for %q is %T, not a dict or a queue name: %w", k, route, ErrUnsupported)
		}
		if !strings.Contains(k, "*") {
			m.exact[k] = route
			return nil
		}
		re, err := fnmatch.Compile(k)
		if err != nil {
			return fmt.Errorf("pattern %q: %w", k, err)
		}
		m.patterns = append(m.patterns, pattern{re, route})
		return nil
	}
	switch v := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if err := add(k, v[k]); err != nil {
				return m, err
			}
		}
	case []any:
		for _, p := range v {
			pair, ok := p.([]any)
			if !ok || len(pair) != 2 {
				return m, fmt.Errorf("item %v is not a (key, route) pair: %w", p, ErrUnsupported)
			}
			k, ok := pair[0].(string)
			if !ok {
				return m, fmt.Errorf("key %v is not a string: %w", pair[0], ErrUnsupported)
			}
			if err := add(k, pair[1]); err != nil {
				return m, err
			}
		}
	case string:
		return m, fmt.Errorf("router class %q: %w", v, ErrUnsupported)
	default:
		return m, fmt.Errorf("router of type %T: %w", v, ErrUnsupported)
	}
	return m, nil
}

func (m *mapRoute) lookup(name string) (any, bool) {
	if r, ok := m.exact[name]; ok {
		return r, true
	}
	for _, p := range m.patterns {
		if p.re.MatchString(name) {
			return p.route, true
		}
	}
	return nil, false
}

// lookup returns the first matching route, nil when none matches.
func (r *Router) lookup(name string) any {
	for i := range r.routes {
		if v, ok := r.routes[i].lookup(name); ok {
			return v
		}
	}
	return nil
}

// Route returns where a message for task name with the given signature
// options is published. The options queue, exchange, routing_key,
// exchange_type and priority win over a matching route; without a queue
// the task goes to task_default_queue.
func (r *Router) Route(name string, options map[string]any) (Route, error) {
	merged := map[string]any{}
	switch v := r.lookup(name).(type) {
	case string:
		merged["queue"] = v
	case map[string]any:
		for k, x := range v {
			merged[k] = x
		}
	}
	for _, k := range []string{"queue", "exchange", "routing_key", "exchange_type", "priority"} {
		if v, ok := options[k]; ok && v != nil {
			merged[k] = v
		}
	}
	qname, err := optString(merged, "queue")
	if err != nil {
		return Route{}, err
	}
	if qname == "" {
		qname = r.defaultQueue
	}
	q, ok := r.queues[qname]
	if !ok {
		if !r.createMissing {
			return Route{}, fmt.Errorf("%w: %q", ErrQueueNotFound, qname)
		}
		q = config.Queue{Name: qname, Exchange: qname, ExchangeType: "direct", RoutingKey: qname}
	}
	exchange, err := optString(merged, "exchange")
	if err != nil {
		return Route{}, err
	}
	rk, err := optString(merged, "routing_key")
	if err != nil {
		return Route{}, err
	}
	typ, err := optString(merged, "exchange_type")
	if err != nil {
		return Route{}, err
	}
	if typ == "" {
		typ = q.ExchangeType
	}
	if typ == "" {
		typ = "direct"
	}
	out := Route{Queue: q.Name}
	switch {
	case (exchange == "" || rk == "") && typ == "direct":
		out.Exchange, out.RoutingKey = "", q.Name
	case exchange == "":
		out.Exchange = q.Exchange
		if out.Exchange == "" {
			out.Exchange = r.defaultEx
		}
		out.RoutingKey = firstNonEmpty(rk, q.RoutingKey, r.defaultRK)
	default:
		out.Exchange, out.RoutingKey = exchange, rk
	}
	if p, ok := merged["priority"]; ok && p != nil {
		n, ok := toInt(p)
		if !ok || n < 0 || n > 255 {
			return Route{}, fmt.Errorf("canvas: priority %v is not an int in 0..255", p)
		}
		out.Priority = uint8(n)
	}
	return out, nil
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

func optString(m map[string]any, k string) (string, error) {
	switch v := m[k].(type) {
	case nil:
		return "", nil
	case string:
		return v, nil
	default:
		return "", fmt.Errorf("canvas: option %s is %T, not a string: %w", k, v, ErrUnsupported)
	}
}
