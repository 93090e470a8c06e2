package prefetch

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
)

// fieldFixConn sits under amqp091-go and rewrites, in the content-header frames the
// broker sends, the field type 'L' to 'l'. py-amqp (every Python Celery client) writes
// 64-bit integers in message headers as 'L'; RabbitMQ passes them through unchanged, and
// amqp091-go knows only 'l', so such a message would fail to parse, close the
// connection, and come back on every reconnect: one Python header like {'n': 2**40}
// would wedge the queue. Both are 8-byte signed integers (py-amqp packs '>q'), so the
// rewrite changes nothing else. Anything that does not parse as the frames it expects is
// passed through untouched.
//
// Frames are read through a buffer: amqp091-go buffers above this conn, but reading
// frame by frame from the socket would cost three read calls a frame, nine a message.
//
// With wrap set (the task consumer's connection), a valid headers table is also handed to
// amqp091 unparsed: wrapped as the one byte-array entry rawHeadersKey, which the consumer
// decodes itself (rawheaders.go). amqp091 parses a table field by field through
// encoding/binary into a map it grows entry by entry: 23 % of a worker's CPU on a noop
// load went there.
type fieldFixConn struct {
	net.Conn
	in    *bufio.Reader // the socket, buffered
	buf   []byte        // frame bytes ready for the reader
	spare []byte        // the other frame buffer, for a wrapped header frame
	off   int
	raw   bool // gave up on framing: pass everything through
	wrap  bool // hand header tables over unparsed
	// frameMax is the broker's frame_max from connection.tune, which amqp091 adopts and
	// enforces on every frame it reads (0: no limit); tuned says it was seen. A wrapped
	// header frame is longer: it must still fit.
	frameMax uint32
	tuned    bool
	head     [7]byte
}

// readBuffer is the socket read buffer: many frames of small messages a read call.
const readBuffer = 64 << 10

func newFieldFixConn(c net.Conn, wrap bool) *fieldFixConn {
	return &fieldFixConn{Conn: c, in: bufio.NewReaderSize(c, readBuffer), wrap: wrap}
}

const (
	frameMethod = 1
	frameHeader = 2    // content header frame
	frameEnd    = 0xCE // every frame ends with it
	maxFrame    = 1 << 24
)

func (c *fieldFixConn) Read(p []byte) (int, error) {
	if c.raw && c.off >= len(c.buf) {
		return c.in.Read(p)
	}
	if c.off >= len(c.buf) {
		if err := c.nextFrame(); err != nil {
			return 0, err
		}
	}
	n := copy(p, c.buf[c.off:])
	c.off += n
	return n, nil
}

// nextFrame reads one whole frame into buf, fixing it if it is a content header.
func (c *fieldFixConn) nextFrame() error {
	if _, err := io.ReadFull(c.in, c.head[:1]); err != nil {
		return err
	}
	switch c.head[0] {
	case 1, 2, 3, 8: // method, header, body, heartbeat
	default:
		// Not a frame (e.g. the broker's protocol header refusing our version).
		c.raw, c.buf, c.off = true, append(c.buf[:0], c.head[0]), 0
		return nil
	}
	if _, err := io.ReadFull(c.in, c.head[1:]); err != nil {
		return err
	}
	size := binary.BigEndian.Uint32(c.head[3:7])
	if size > maxFrame {
		c.raw, c.buf, c.off = true, append(c.buf[:0], c.head[:]...), 0
		return nil
	}
	total := 7 + int(size) + 1
	if cap(c.buf) < total {
		c.buf = make([]byte, total)
	}
	c.buf = c.buf[:total]
	copy(c.buf, c.head[:])
	if _, err := io.ReadFull(c.in, c.buf[7:]); err != nil {
		return err
	}
	c.off = 0
	if c.buf[total-1] != frameEnd {
		return nil
	}
	switch c.head[0] {
	case frameMethod:
		c.noteTune(c.buf[1:3], c.buf[7:total-1])
	case frameHeader:
		at, n, ok := fixHeaderFrame(c.buf[7 : total-1])
		if ok && c.wrap && n > 0 && c.fits(total+wrapGrowth) {
			c.wrapTable(7+at, n)
		}
	}
	return nil
}

// noteTune records frame_max from the broker's connection.tune (channel 0, class 10,
// method 30: channel-max, frame-max, heartbeat).
func (c *fieldFixConn) noteTune(channel, p []byte) {
	if binary.BigEndian.Uint16(channel) == 0 && len(p) >= 12 &&
		binary.BigEndian.Uint16(p[0:2]) == 10 && binary.BigEndian.Uint16(p[2:4]) == 30 {
		c.frameMax, c.tuned = binary.BigEndian.Uint32(p[6:10]), true
	}
}

// fits says whether amqp091 accepts a frame of total bytes (header, payload and end).
func (c *fieldFixConn) fits(total int) bool {
	return c.tuned && (c.frameMax == 0 || uint64(total) <= uint64(c.frameMax))
}

// wrapGrowth is what wrapping adds to a header frame: the entry's key, type and length.
const wrapGrowth = 1 + len(rawHeadersKey) + 1 + 4

// wrapTable rewrites the header frame in buf, whose headers table (its 4-byte length at
// buf[at:]) is n bytes, so that the table holds one entry: rawHeadersKey, a byte array of
// the original table.
func (c *fieldFixConn) wrapTable(at, n int) {
	out := c.spare[:0]
	out = append(out, c.buf[:at]...)
	out = binary.BigEndian.AppendUint32(out, uint32(wrapGrowth+n))
	out = append(out, byte(len(rawHeadersKey)))
	out = append(out, rawHeadersKey...)
	out = append(out, 'x')
	out = binary.BigEndian.AppendUint32(out, uint32(n))
	out = append(out, c.buf[at+4:]...)
	binary.BigEndian.PutUint32(out[3:7], uint32(len(out)-8))
	c.buf, c.spare = out, c.buf
}

// fixHeaderFrame walks a content header payload (class, weight, body size, property
// flags, then the properties in flag order) to its headers table and fixes it in place.
// ok says the payload has a headers table at p[at:] (its 4-byte length, then n bytes)
// that parses as amqp091 parses tables: known types, at most maxTableDepth deep, at most
// maxTableEntries entries in each table and array.
func fixHeaderFrame(p []byte) (at, n int, ok bool) {
	if len(p) < 14 {
		return 0, 0, false
	}
	flags := binary.BigEndian.Uint16(p[12:14])
	i := 14
	for more := flags&1 != 0; more && i+2 <= len(p); i += 2 { // continued flag words
		more = binary.BigEndian.Uint16(p[i:i+2])&1 != 0
	}
	for _, bit := range []uint16{1 << 15, 1 << 14} { // content-type, content-encoding
		if flags&bit != 0 {
			if i >= len(p) {
				return 0, 0, false
			}
			i += 1 + int(p[i])
		}
	}
	if flags&(1<<13) == 0 || i+4 > len(p) {
		return 0, 0, false
	}
	n = int(binary.BigEndian.Uint32(p[i : i+4]))
	if i+4+n > len(p) || n < 0 {
		return 0, 0, false
	}
	return i, n, fixTable(p[i+4:i+4+n], 0)
}

// amqp091's limits (read.go): a deeper or larger table is a syntax error there, so such a
// table is left for amqp091 to refuse.
const (
	maxTableDepth   = 32
	maxTableEntries = 8192
)

// fixTable rewrites 'L' field types in a table's entries (and nested tables and arrays)
// and reports whether the table parses.
func fixTable(t []byte, depth int) bool {
	if depth > maxTableDepth {
		return false
	}
	entries := 0
	for i := 0; i < len(t); {
		k := int(t[i])
		i += 1 + k
		if i >= len(t) {
			return false
		}
		next, ok := fixValue(t, i, depth)
		if !ok {
			return false
		}
		i = next
		if entries++; entries > maxTableEntries {
			return false
		}
	}
	return true
}

// fixValue fixes the value whose type byte is at t[i] and returns the index after it.
func fixValue(t []byte, i, depth int) (int, bool) {
	typ := t[i]
	i++
	if n := fixedSize(typ); n >= 0 {
		if typ == 'L' {
			t[i-1] = 'l'
		}
		return i + n, i+n <= len(t)
	}
	if i+4 > len(t) {
		return 0, false
	}
	n := int(binary.BigEndian.Uint32(t[i : i+4]))
	end := i + 4 + n
	if end > len(t) || n < 0 {
		return 0, false
	}
	switch typ {
	case 'S', 'x':
	case 'F':
		if !fixTable(t[i+4:end], depth+1) {
			return 0, false
		}
	case 'A':
		if depth+1 > maxTableDepth {
			return 0, false
		}
		elements := 0
		for j := i + 4; j < end; {
			next, ok := fixValue(t[:end], j, depth+1)
			if !ok {
				return 0, false
			}
			j = next
			if elements++; elements > maxTableEntries {
				return 0, false
			}
		}
	default:
		return 0, false
	}
	return end, true
}

// fixedSize is the size of a fixed-size field value of type typ, or -1: the types amqp091
// reads, and py-amqp's 'L' (amqp091 refuses the others, 'U' among them).
func fixedSize(typ byte) int {
	switch typ {
	case 'V':
		return 0
	case 't', 'b', 'B':
		return 1
	case 'u', 's':
		return 2
	case 'I', 'i', 'f':
		return 4
	case 'D':
		return 5
	case 'l', 'L', 'd', 'T':
		return 8
	}
	return -1
}
