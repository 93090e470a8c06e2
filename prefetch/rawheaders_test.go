package prefetch

import (
	"bytes"
	"context"
	"encoding/binary"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
)

func longstr(s string) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(s))), s...)
}

func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// TestDecodeTableTypes: every field type amqp091 reads, with the Go type it gives, and
// py-amqp's 'L'.
func TestDecodeTableTypes(t *testing.T) {
	nested := entry("n", 'L', be64(1<<40))
	arr := bytes.Join([][]byte{{'S'}, longstr("a"), {'V'}, {'t', 1}}, nil)
	table := bytes.Join([][]byte{
		entry("task", 'S', longstr("proj.add")),
		entry("big", 'L', be64(1<<40)),
		entry("neg", 'l', be64(uint64(0xFFFFFFFFFFFFFFFF))),
		entry("t", 't', []byte{1}),
		entry("b", 'b', []byte{0xFF}),
		entry("B", 'B', []byte{7}),
		entry("s", 's', []byte{0xFF, 0xFE}),
		entry("u", 'u', []byte{0xFF, 0xFE}),
		entry("I", 'I', []byte{0xFF, 0xFF, 0xFF, 0xFB}),
		entry("i", 'i', []byte{0xFF, 0xFF, 0xFF, 0xFB}),
		entry("f", 'f', binary.BigEndian.AppendUint32(nil, 0x3FC00000)),
		entry("d", 'd', be64(0x3FF8000000000000)),
		entry("D", 'D', []byte{2, 0, 0, 0x30, 0x39}),
		entry("T", 'T', be64(1700000000)),
		entry("x", 'x', longstr("\x00\x01")),
		entry("empty_x", 'x', longstr("")),
		entry("none", 'V', nil),
		entry("stamps", 'F', longstr(string(nested))),
		entry("empty_table", 'F', longstr("")),
		entry("list", 'A', longstr(string(arr))),
		entry("empty_list", 'A', longstr("")),
	}, nil)
	got, err := decodeTable(table)
	require.NoError(t, err)
	require.Equal(t, amqp.Table{
		"task": "proj.add", "big": int64(1 << 40), "neg": int64(-1), "t": true, "b": int8(-1), "B": byte(7),
		"s": int16(-2), "u": uint16(0xFFFE), "I": int32(-5), "i": uint32(0xFFFFFFFB), "f": float32(1.5), "d": 1.5,
		"D": amqp.Decimal{Scale: 2, Value: 12345}, "T": time.Unix(1700000000, 0), "x": []byte{0, 1}, "empty_x": []byte{},
		"none": nil, "stamps": amqp.Table{"n": int64(1 << 40)}, "empty_table": amqp.Table{},
		"list": []any{"a", nil, true}, "empty_list": []any(nil),
	}, got)

	for _, bad := range [][]byte{
		entry("q", 'q', nil),                          // unknown type
		entry("s", 'S', []byte{0, 0, 0, 9, 'a'}),      // string longer than the table
		append([]byte{5}, "ab"...),                    // key longer than the table
		entry("l", 'l', []byte{1, 2, 3}),              // short integer
		entry("A", 'A', longstr(string([]byte{'q'}))), // unknown type in an array
	} {
		_, err := decodeTable(bad)
		require.ErrorIs(t, err, errTable, "%q", bad)
	}
}

// tuneFrame is the broker's connection.tune with frame_max.
func tuneFrame(frameMax uint32) []byte {
	p := []byte{0, 10, 0, 30, 0, 0}
	p = binary.BigEndian.AppendUint32(p, frameMax)
	p = append(p, 0, 60)
	f := append([]byte{frameMethod, 0, 0}, binary.BigEndian.AppendUint32(nil, uint32(len(p)))...)
	return append(append(f, p...), frameEnd)
}

// TestFieldFixWrapsValidTables: on a wrapping connection a header frame's table reaches
// amqp091 as one byte-array entry holding the original (with 'L' fixed), and unwrapping
// gives the table back; an invalid or too deep table is left as it is, for amqp091 to
// refuse as before, and so is one that would no longer fit in the broker's frame_max.
func TestFieldFixWrapsValidTables(t *testing.T) {
	const frameMax = 4096
	table := bytes.Join([][]byte{entry("task", 'S', longstr("proj.add")), entry("big", 'L', be64(1<<40))}, nil)
	deep := entry("d", 'V', nil)
	for range maxTableDepth + 1 {
		deep = entry("d", 'F', longstr(string(deep)))
	}
	full := headerFrame(entry("pad", 'S', longstr(strings.Repeat("x", frameMax-len(headerFrame(entry("pad", 'S', longstr("")))))))) // exactly frameMax
	require.Len(t, full, frameMax)
	frames := [][]byte{tuneFrame(frameMax), headerFrame(table), headerFrame(entry("q", 'q', nil)), headerFrame(deep), headerFrame(nil), full}
	out := readThrough(t, true, frames...)

	out = out[len(frames[0]):] // the tune, as it was
	wrapped := headers(t, out)
	require.Len(t, wrapped, 1)
	fixed := bytes.ReplaceAll(table, []byte("L\x00\x00\x01"), []byte("l\x00\x00\x01"))
	require.Equal(t, fixed, wrapped[rawHeadersKey])
	h, err := unwrapHeaders(wrapped)
	require.NoError(t, err)
	require.Equal(t, amqp.Table{"task": "proj.add", "big": int64(1 << 40)}, h)

	rest := out[len(frames[1])+wrapGrowth:]
	require.Equal(t, bytes.Join(frames[2:], nil), rest, "unknown type, too deep, empty, at frame_max: untouched")
}

// TestFieldFixWrapsOnlyAfterTune: before the broker's connection.tune, the frame limit
// amqp091 enforces is unknown: nothing is wrapped.
func TestFieldFixWrapsOnlyAfterTune(t *testing.T) {
	frame := headerFrame(entry("task", 'S', longstr("proj.add")))
	require.Equal(t, frame, readThrough(t, true, frame))
}

// headers parses the first frame of out as a content header and returns its table the
// way amqp091 reads one, by the test's own decoder.
func headers(t *testing.T, out []byte) amqp.Table {
	t.Helper()
	size := binary.BigEndian.Uint32(out[3:7])
	at, n, ok := fixHeaderFrame(out[7 : 7+size])
	require.True(t, ok)
	tab, err := decodeTable(out[7+at+4 : 7+at+4+n])
	require.NoError(t, err)
	return tab
}

// TestWrappedHeadersEqualAmqp091s: the same messages, with headers of every type amqp091
// writes, read by a plain amqp091 consumer and by a Consumer (whose connection wraps the
// tables): the headers are equal.
func TestWrappedHeadersEqualAmqp091s(t *testing.T) {
	b := newBroker(t)
	name := b.queueName("rawhdr")
	require.NoError(t, Declare(b.conn, []Queue{CeleryQueue(name, 0)}))
	h := amqp.Table{
		"lang": "py", "task": "proj.add", "id": "6f1c", "eta": nil, "retries": int32(0), "big": int64(1 << 40),
		"timelimit": []any{nil, int64(10)}, "ignore_result": false, "f": 1.5, "b": []byte{1, 2},
		"stamps": amqp.Table{"x": []any{"a", int32(1)}}, "stamped_headers": []any{}, "dec": amqp.Decimal{Scale: 1, Value: 5},
		"ts": time.Unix(1700000000, 0), "small": int8(-3), "u8": byte(9), "i16": int16(-7), "nested": amqp.Table{},
	}
	// Confirmed: a Get on another channel must find them queued.
	ch := b.channel()
	require.NoError(t, ch.Confirm(false))
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 3))
	for range 3 {
		require.NoError(t, ch.Publish("", name, false, false, amqp.Publishing{Headers: h, Body: []byte("{}")}))
	}
	for range 3 {
		select {
		case c := <-confirms:
			require.True(t, c.Ack, "publish nacked")
		case <-time.After(10 * time.Second):
			t.Fatal("publish not confirmed in 10 s")
		}
	}

	plain := b.channel()
	d, ok, err := plain.Get(name, true)
	require.NoError(t, err)
	require.True(t, ok)
	want := d.Headers

	// A wrapping connection read by amqp091 alone: the one wrapped entry.
	conn, err := Dial(b.url, Config{rawHeaders: true})
	require.NoError(t, err)
	defer conn.Close()
	wch, err := conn.Channel()
	require.NoError(t, err)
	d, ok, err = wch.Get(name, true)
	require.NoError(t, err)
	require.True(t, ok)
	require.Len(t, d.Headers, 1)
	require.IsType(t, []byte(nil), d.Headers[rawHeadersKey])

	c := newConsumer(t, b.url, Config{Queues: []Queue{CeleryQueue(name, 0)}, Prefetch: 1})
	got := make(chan *Delivery, 1)
	require.NoError(t, c.Start(context.Background(), func(_ context.Context, d *Delivery) { d.Ack(); got <- d }))
	defer func() { require.NoError(t, c.Close()) }()
	select {
	case d := <-got:
		require.Equal(t, want, d.Headers)
		require.NotContains(t, d.Headers, rawHeadersKey)
	case <-time.After(20 * time.Second):
		t.Fatal("no delivery in 20 s")
	}
}

// FuzzHeaderTable: whatever the bytes, decodeTable does not panic, and a table the frame
// reader accepts for wrapping (fixTable) always decodes: an unwrapped delivery never
// loses its headers.
func FuzzHeaderTable(f *testing.F) {
	f.Add(bytes.Join([][]byte{entry("task", 'S', longstr("proj.add")), entry("big", 'L', be64(1<<40)),
		entry("l", 'A', longstr(string([]byte{'V', 't', 1}))), entry("s", 'F', longstr(string(entry("x", 'x', longstr("a")))))}, nil))
	f.Add(entry("q", 'q', nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = decodeTable(b)
		fixed := append([]byte(nil), b...)
		if fixTable(fixed, 0) {
			if _, err := decodeTable(fixed); err != nil {
				t.Fatalf("accepted for wrapping but does not decode: %v (%q)", err, b)
			}
		}
	})
}
