package control

import (
	"context"
	"sync"

	amqp "github.com/rabbitmq/amqp091-go"
)

// SharedConn hands one broker connection to several sessions: a worker's events and its
// remote control share one, so that it holds two connections (tasks; events and control),
// not three. Both are light (task events go out in batches), and neither shares the task
// connection, whose heavy publishing (canvas) RabbitMQ's flow control may throttle: a
// throttled connection must not silence inspect or the heartbeats (bench/README.md,
// "Connections per worker").
//
// The first session that needs the connection dials it; the last one to let go closes it.
// Once it is lost every session sees it close, lets go and asks again, and the first to
// ask dials the next one.
type SharedConn struct {
	dial Dialer

	mu   sync.Mutex
	conn *amqp.Connection
	refs int
}

// NewSharedConn returns a SharedConn that dials with dial.
func NewSharedConn(dial Dialer) *SharedConn { return &SharedConn{dial: dial} }

func (s *SharedConn) connect(ctx context.Context) (*amqp.Connection, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil || s.conn.IsClosed() {
		conn, err := s.dial(ctx)
		if err != nil {
			return nil, err
		}
		s.conn, s.refs = conn, 0
	}
	s.refs++
	return s.conn, nil
}

func (s *SharedConn) release(conn *amqp.Connection) {
	s.mu.Lock()
	if conn == s.conn {
		if s.refs--; s.refs > 0 {
			s.mu.Unlock()
			return
		}
		s.conn = nil
	}
	s.mu.Unlock()
	_ = conn.Close() // the last user, or a connection already replaced (closed)
}

// connector is where a session gets its connection and gives it back.
type connector interface {
	connect(ctx context.Context) (*amqp.Connection, error)
	release(conn *amqp.Connection)
}

// ownConn is a connection of the session's own: dialled for it, closed after it.
type ownConn Dialer

func (d ownConn) connect(ctx context.Context) (*amqp.Connection, error) { return d(ctx) }
func (ownConn) release(conn *amqp.Connection)                           { _ = conn.Close() }

// connectorFor is shared when set, else a connection of the session's own from dial.
func connectorFor(dial Dialer, shared *SharedConn) connector {
	if shared != nil {
		return shared
	}
	if dial == nil {
		return nil
	}
	return ownConn(dial)
}
