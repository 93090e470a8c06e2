package prefetch

import (
	"encoding/binary"
	"errors"
	"math"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// rawHeadersKey is the one entry of a headers table that fieldFixConn handed to amqp091
// unparsed (wrap): a byte array holding the message's whole headers table.
const rawHeadersKey = "x-ccworker-raw-headers"

var errTable = errors.New("prefetch: malformed headers table")

// unwrapHeaders returns the headers of a delivery read through a wrapping fieldFixConn:
// the table decoded from rawHeadersKey, exactly as amqp091 would have decoded it, or h
// itself when it is not wrapped.
func unwrapHeaders(h amqp.Table) (amqp.Table, error) {
	if len(h) != 1 {
		return h, nil
	}
	raw, ok := h[rawHeadersKey].([]byte)
	if !ok {
		return h, nil
	}
	return decodeTable(raw)
}

// decodeTable decodes an AMQP field table into the values amqp091's readTable gives
// (read.go): the same Go type for every field type, 'L' read as 'l', an empty array as a
// nil []any. Without encoding/binary and with the map made at its size, it allocates
// about a third as much. fieldFixConn has checked the table's shape and limits already.
func decodeTable(b []byte) (amqp.Table, error) {
	var kv [32]tableEntry // a Celery message has about 20 headers: no growing on the heap
	entries := kv[:0]
	for i := 0; i < len(b); {
		k := int(b[i])
		if i+1+k >= len(b) {
			return nil, errTable
		}
		key := internKey(b[i+1 : i+1+k])
		v, next, err := decodeValue(b, i+1+k)
		if err != nil {
			return nil, err
		}
		entries = append(entries, tableEntry{key, v})
		i = next
	}
	t := make(amqp.Table, len(entries))
	for _, e := range entries {
		t[e.key] = e.value
	}
	return t, nil
}

type tableEntry struct {
	key   string
	value any
}

// decodeValue decodes the value whose type byte is at b[i] and returns the index after it.
func decodeValue(b []byte, i int) (any, int, error) {
	typ := b[i]
	i++
	if n := fixedSize(typ); n >= 0 {
		if i+n > len(b) {
			return nil, 0, errTable
		}
		v := b[i : i+n]
		switch typ {
		case 'V':
			return nil, i, nil
		case 't':
			return v[0] != 0, i + 1, nil
		case 'b':
			return int8(v[0]), i + 1, nil
		case 'B':
			return v[0], i + 1, nil
		case 's':
			return int16(binary.BigEndian.Uint16(v)), i + 2, nil
		case 'u':
			return binary.BigEndian.Uint16(v), i + 2, nil
		case 'I':
			return int32(binary.BigEndian.Uint32(v)), i + 4, nil
		case 'i':
			return binary.BigEndian.Uint32(v), i + 4, nil
		case 'f':
			return math.Float32frombits(binary.BigEndian.Uint32(v)), i + 4, nil
		case 'D':
			return amqp.Decimal{Scale: v[0], Value: int32(binary.BigEndian.Uint32(v[1:]))}, i + 5, nil
		case 'l', 'L':
			return int64(binary.BigEndian.Uint64(v)), i + 8, nil
		case 'd':
			return math.Float64frombits(binary.BigEndian.Uint64(v)), i + 8, nil
		case 'T':
			return time.Unix(int64(binary.BigEndian.Uint64(v)), 0), i + 8, nil
		}
	}
	if i+4 > len(b) {
		return nil, 0, errTable
	}
	n := int(binary.BigEndian.Uint32(b[i : i+4]))
	start, end := i+4, i+4+n
	if n < 0 || end > len(b) {
		return nil, 0, errTable
	}
	switch typ {
	case 'S':
		return string(b[start:end]), end, nil
	case 'x':
		return append(make([]byte, 0, n), b[start:end]...), end, nil
	case 'F':
		t, err := decodeTable(b[start:end])
		return t, end, err
	case 'A':
		var arr []any
		for j := start; j < end; {
			v, next, err := decodeValue(b[:end], j)
			if err != nil {
				return nil, 0, err
			}
			arr = append(arr, v)
			j = next
		}
		return arr, end, nil
	}
	return nil, 0, errTable
}

// internKey returns the header names Celery sends as constants: no allocation for them.
func internKey(k []byte) string {
	switch string(k) { // compiled without a conversion
	case "lang":
		return "lang"
	case "task":
		return "task"
	case "id":
		return "id"
	case "shadow":
		return "shadow"
	case "eta":
		return "eta"
	case "expires":
		return "expires"
	case "group":
		return "group"
	case "group_index":
		return "group_index"
	case "retries":
		return "retries"
	case "timelimit":
		return "timelimit"
	case "root_id":
		return "root_id"
	case "parent_id":
		return "parent_id"
	case "argsrepr":
		return "argsrepr"
	case "kwargsrepr":
		return "kwargsrepr"
	case "origin":
		return "origin"
	case "ignore_result":
		return "ignore_result"
	case "stamped_headers":
		return "stamped_headers"
	case "stamps":
		return "stamps"
	case "replaced_task_nesting":
		return "replaced_task_nesting"
	case "compression":
		return "compression"
	}
	return string(k)
}
