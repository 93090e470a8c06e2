package prefetch

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap"
)

// Failover strategies: kombu's broker_failover_strategy values.
const (
	RoundRobin = "round-robin" // the list in order, from the start (the default)
	Shuffle    = "shuffle"     // a random order
)

// ErrFailoverStrategy is returned for a broker_failover_strategy ccworker cannot follow.
var ErrFailoverStrategy = errors.New("unknown broker_failover_strategy")

// CheckStrategy accepts "" (round-robin), RoundRobin and Shuffle.
func CheckStrategy(s string) error {
	switch s {
	case "", RoundRobin, Shuffle:
		return nil
	}
	return fmt.Errorf("%w %q (want %q or %q)", ErrFailoverStrategy, s, RoundRobin, Shuffle)
}

// Dialer opens the connections of one long-lived AMQP client (the task consumer, the event
// dispatcher, the remote-control mailbox) from the failover list of its Config, as kombu's
// Connection does with its alternates: each Dial is one round that tries every URL once,
// without waiting between URLs; the caller waits its backoff between rounds. A round
// starts with the URL after the one of the previous connection (round-robin), or in a new
// random order with the previous one last (shuffle), so a connection lost with its node
// moves to a live node at once instead of waiting for the dead one's timeout.
//
// A Dialer is safe for concurrent use, but each client should have its own (NewDialer or
// With), so that its place in the list is its own.
type Dialer struct {
	cfg Config
	log *zap.Logger

	mu   sync.Mutex
	last int // index of the URL of the last connection opened; -1 before the first
}

// NewDialer checks cfg's URLs and failover strategy.
func NewDialer(cfg Config) (*Dialer, error) {
	if len(cfg.URLs) == 0 {
		return nil, errors.New("prefetch: no broker URL")
	}
	for _, u := range cfg.URLs {
		if _, err := amqp.ParseURI(u); err != nil {
			return nil, fmt.Errorf("prefetch: broker URL: %w", err)
		}
	}
	if err := CheckStrategy(cfg.FailoverStrategy); err != nil {
		return nil, fmt.Errorf("prefetch: %w", err)
	}
	cfg.setDefaults()
	return &Dialer{cfg: cfg, log: cfg.Logger, last: -1}, nil
}

// With returns a new Dialer for another connection of the same worker, named name in
// the broker's connection list, starting at the head of the list.
func (d *Dialer) With(name string) *Dialer {
	cfg := d.cfg
	cfg.ConnectionName = name
	return &Dialer{cfg: cfg, log: d.log, last: -1}
}

// order is this round's sequence of URL indexes.
func (d *Dialer) order() []int {
	n := len(d.cfg.URLs)
	out := make([]int, 0, n)
	if d.cfg.FailoverStrategy == Shuffle {
		for _, i := range rand.Perm(n) {
			if i != d.last {
				out = append(out, i)
			}
		}
		if d.last >= 0 {
			out = append(out, d.last)
		}
		return out
	}
	for k := 1; k <= n; k++ {
		out = append(out, (d.last+k+n)%n) // last = -1: 0, 1, ...
	}
	return out
}

// Dial runs one round: it returns the first connection opened, or every URL's error.
// The error wraps ErrPermanent only when every URL failed permanently (a node that is
// down must not hide that the others refuse the credentials, and vice versa).
func (d *Dialer) Dial(ctx context.Context) (*amqp.Connection, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	permanent := 0
	first := d.last < 0
	for _, i := range d.order() {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		conn, err := Dial(d.cfg.URLs[i], d.cfg)
		if err == nil {
			// Said once per failover (and at start when the first broker did not answer).
			if len(errs) > 0 || (!first && i != d.last) {
				d.log.Info("connected to the broker", zap.String("connection", d.cfg.ConnectionName),
					zap.String("broker", Address(d.cfg.URLs[i])))
			}
			d.last = i
			return conn, nil
		}
		if errors.Is(err, ErrPermanent) {
			permanent++
		}
		errs = append(errs, fmt.Errorf("%s: %w", Address(d.cfg.URLs[i]), err))
	}
	err := errors.Join(errs...)
	if len(errs) == 1 {
		err = errs[0]
	}
	if permanent == len(d.cfg.URLs) {
		return nil, err // already wraps ErrPermanent
	}
	return nil, transient{err}
}

// transient hides ErrPermanent from errors.Is when only some URLs failed permanently,
// while keeping the message.
type transient struct{ err error }

func (t transient) Error() string { return t.err.Error() }

// Address is a broker URL without its credentials: "host:port/vhost".
func Address(url string) string {
	u, err := amqp.ParseURI(url)
	if err != nil {
		return "(bad URL)"
	}
	return fmt.Sprintf("%s:%d/%s", u.Host, u.Port, u.Vhost)
}
