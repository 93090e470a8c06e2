package control

import (
	"context"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/ccworker/ccworker/internal/testenv"
)

// One connection for every session; the last to let go closes it; a lost one is dialled
// again by the next session that asks.
func TestSharedConnRefCounts(t *testing.T) {
	url := testenv.AMQPURL(t)
	dials := 0
	s := NewSharedConn(func(ctx context.Context) (*amqp.Connection, error) {
		dials++
		return dialer(url)(ctx)
	})
	ctx := context.Background()
	a, err := s.connect(ctx)
	require.NoError(t, err)
	b, err := s.connect(ctx)
	require.NoError(t, err)
	require.Same(t, a, b)
	require.Equal(t, 1, dials)

	s.release(a)
	require.False(t, b.IsClosed(), "still used by the other session")
	s.release(b)
	require.True(t, b.IsClosed(), "the last user closes it")

	c, err := s.connect(ctx)
	require.NoError(t, err)
	require.NotSame(t, a, c)
	require.Equal(t, 2, dials)
	_ = c.Close() // lost
	d, err := s.connect(ctx)
	require.NoError(t, err)
	require.NotSame(t, c, d, "a closed connection is dialled again")
	s.release(c) // the old one's user lets go: d stays
	require.False(t, d.IsClosed())
	s.release(d)
	require.True(t, d.IsClosed())
}

// Events and remote control on one connection: the mailbox stopping first (as the worker
// stops it) leaves the events their connection, so worker-offline still goes out.
func TestSharedConnMailboxStopsFirst(t *testing.T) {
	url := testenv.AMQPURL(t)
	nodeName := testenv.Name(t, "w") + "@ccworker-test"
	shared := NewSharedConn(dialer(url))
	ev, err := NewEvents(nil, EventsConfig{NodeName: nodeName, Shared: shared, Logger: zaptest.NewLogger(t)})
	require.NoError(t, err)
	require.NoError(t, ev.Start(context.Background()))
	m, err := NewMailbox(nil, MailboxConfig{NodeName: nodeName, Worker: newFakeWorker(nodeName), Events: ev,
		Shared: shared, Logger: zaptest.NewLogger(t), Version: "test"})
	require.NoError(t, err)
	require.NoError(t, m.Start(context.Background()))
	select {
	case <-m.Ready():
	case <-time.After(30 * time.Second):
		t.Fatal("mailbox not consuming")
	}
	refs := func() int {
		shared.mu.Lock()
		defer shared.mu.Unlock()
		return shared.refs
	}
	require.Eventually(t, func() bool { return refs() == 2 }, 30*time.Second, 10*time.Millisecond,
		"events and mailbox on the same connection")
	shared.mu.Lock()
	conn := shared.conn
	shared.mu.Unlock()

	require.NoError(t, m.Stop(context.Background()))
	require.False(t, conn.IsClosed(), "the events still use it")
	require.NoError(t, ev.Stop(context.Background()))
	require.True(t, conn.IsClosed())
}
