package prefetch

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"

	"github.com/stretchr/testify/require"
)

// headerFrame builds a content-header frame with content type, encoding and a headers
// table, as py-amqp sends one (with its 'L' for a 64-bit int).
func headerFrame(table []byte) []byte {
	var p bytes.Buffer
	binary.Write(&p, binary.BigEndian, uint16(60)) // class basic
	binary.Write(&p, binary.BigEndian, uint16(0))  // weight
	binary.Write(&p, binary.BigEndian, uint64(3))  // body size
	binary.Write(&p, binary.BigEndian, uint16(1<<15|1<<14|1<<13))
	for _, s := range []string{"application/json", "utf-8"} {
		p.WriteByte(byte(len(s)))
		p.WriteString(s)
	}
	binary.Write(&p, binary.BigEndian, uint32(len(table)))
	p.Write(table)
	var f bytes.Buffer
	f.WriteByte(2)
	binary.Write(&f, binary.BigEndian, uint16(1))
	binary.Write(&f, binary.BigEndian, uint32(p.Len()))
	f.Write(p.Bytes())
	f.WriteByte(frameEnd)
	return f.Bytes()
}

func entry(name string, typ byte, value []byte) []byte {
	return append(append([]byte{byte(len(name))}, name...), append([]byte{typ}, value...)...)
}

// readThrough writes data from the broker's end of a pipe and returns what a fieldFixConn
// (wrapping header tables when wrap is set) hands to amqp091.
func readThrough(t *testing.T, wrap bool, data ...[]byte) []byte {
	t.Helper()
	server, client := net.Pipe()
	go func() {
		for _, d := range data {
			_, _ = server.Write(d)
		}
		_ = server.Close()
	}()
	out, err := io.ReadAll(newFieldFixConn(client, wrap))
	require.NoError(t, err)
	return out
}

func TestFieldFixRewritesPyAmqpLongs(t *testing.T) {
	big := make([]byte, 8)
	binary.BigEndian.PutUint64(big, 1<<40)
	str := append(binary.BigEndian.AppendUint32(nil, 2), 'L', 'L') // a string containing 'L's
	var nested []byte
	nested = append(nested, entry("n", 'L', big)...)
	arr := append([]byte{'L'}, big...)
	table := bytes.Join([][]byte{
		entry("task", 'S', str),
		entry("big", 'L', big),
		entry("small", 'I', []byte{0, 0, 0, 5}),
		entry("stamps", 'F', append(binary.BigEndian.AppendUint32(nil, uint32(len(nested))), nested...)),
		entry("list", 'A', append(binary.BigEndian.AppendUint32(nil, uint32(len(arr))), arr...)),
		entry("none", 'V', nil),
	}, nil)
	in := headerFrame(table)
	heartbeat := []byte{8, 0, 0, 0, 0, 0, 0, frameEnd}
	out := readThrough(t, false, in, heartbeat)
	require.Len(t, out, len(in)+len(heartbeat))
	require.Equal(t, bytes.Count(in, []byte("L")), bytes.Count(out, []byte("L"))+3, "three 'L' types fixed")
	require.Equal(t, 1, bytes.Count(out, []byte("LL")), "the string's bytes untouched")
	require.Equal(t, heartbeat, out[len(in):])
}

func TestFieldFixPassesNonFramesThrough(t *testing.T) {
	refusal := []byte("AMQP\x00\x00\x09\x01")
	require.Equal(t, refusal, readThrough(t, false, refusal))
}

// countingConn counts the read calls that reach the socket.
type countingConn struct {
	net.Conn
	reads int
}

func (c *countingConn) Read(p []byte) (int, error) {
	c.reads++
	return c.Conn.Read(p)
}

// TestFieldFixReadsTheSocketInBulk: a burst of frames (100 messages: method, header and
// body frames each) is read from the socket in a few calls, not three a frame.
func TestFieldFixReadsTheSocketInBulk(t *testing.T) {
	var burst []byte
	method := []byte{1, 0, 1, 0, 0, 0, 4, 0, 60, 0, 60, frameEnd}
	body := []byte{3, 0, 1, 0, 0, 0, 3, 'a', 'b', 'c', frameEnd}
	for range 100 {
		burst = append(burst, method...)
		burst = append(burst, headerFrame(entry("n", 'L', make([]byte, 8)))...)
		burst = append(burst, body...)
	}
	server, client := net.Pipe()
	go func() {
		_, _ = server.Write(burst) // net.Pipe hands over at most what each Read asks for
		_ = server.Close()
	}()
	conn := &countingConn{Conn: client}
	out, err := io.ReadAll(bufio.NewReader(newFieldFixConn(conn, false)))
	require.NoError(t, err)
	require.Len(t, out, len(burst))
	require.Less(t, conn.reads, 10, "read calls on the socket for 300 frames")
}
