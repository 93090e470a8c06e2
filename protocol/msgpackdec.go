package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
	"unicode/utf8"
)

// decodeMsgpack decodes data like Python's msgpack.unpackb(raw=False) as
// kombu calls it: str must be UTF-8, bin becomes []byte, map keys must be
// str or bin (strict_map_key), extra trailing bytes are an error. The
// timestamp extension (-1) becomes time.Time; other extensions are
// refused because there is no value to map them to.
//
// It is hand-written rather than built on a generic msgpack library so
// that length prefixes are checked against the input before allocating.
func decodeMsgpack(data []byte) (any, error) {
	d := msgpackDecoder{data: data}
	v, err := d.value(0)
	if err != nil {
		return nil, err
	}
	if d.pos != len(d.data) {
		return nil, fmt.Errorf("msgpack: %d bytes of extra data", len(d.data)-d.pos)
	}
	return v, nil
}

var errMsgpackShort = errors.New("msgpack: unexpected end of data")

type msgpackDecoder struct {
	data []byte
	pos  int
}

func (d *msgpackDecoder) take(n uint64) ([]byte, error) {
	if n > uint64(len(d.data)-d.pos) {
		return nil, errMsgpackShort
	}
	b := d.data[d.pos : d.pos+int(n)]
	d.pos += int(n)
	return b, nil
}

func (d *msgpackDecoder) uint(size int) (uint64, error) {
	b, err := d.take(uint64(size))
	if err != nil {
		return 0, err
	}
	switch size {
	case 1:
		return uint64(b[0]), nil
	case 2:
		return uint64(binary.BigEndian.Uint16(b)), nil
	case 4:
		return uint64(binary.BigEndian.Uint32(b)), nil
	default:
		return binary.BigEndian.Uint64(b), nil
	}
}

func (d *msgpackDecoder) value(depth int) (any, error) {
	if d.pos >= len(d.data) {
		return nil, errMsgpackShort
	}
	c := d.data[d.pos]
	d.pos++
	switch {
	case c <= 0x7f:
		return int64(c), nil
	case c >= 0xe0:
		return int64(int8(c)), nil
	case c >= 0x80 && c <= 0x8f:
		return d.mapN(uint64(c&0x0f), depth)
	case c >= 0x90 && c <= 0x9f:
		return d.arrayN(uint64(c&0x0f), depth)
	case c >= 0xa0 && c <= 0xbf:
		return d.strN(uint64(c & 0x1f))
	}
	switch c {
	case 0xc0:
		return nil, nil
	case 0xc2:
		return false, nil
	case 0xc3:
		return true, nil
	case 0xc4, 0xc5, 0xc6: // bin 8/16/32
		n, err := d.uint(1 << (c - 0xc4))
		if err != nil {
			return nil, err
		}
		b, err := d.take(n)
		if err != nil {
			return nil, err
		}
		return append([]byte(nil), b...), nil
	case 0xc7, 0xc8, 0xc9: // ext 8/16/32
		n, err := d.uint(1 << (c - 0xc7))
		if err != nil {
			return nil, err
		}
		return d.ext(n)
	case 0xca, 0xcb, 0xcc, 0xcd, 0xce, 0xcf, 0xd0, 0xd1, 0xd2, 0xd3:
		return d.number(c)
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1..16
		return d.ext(1 << (c - 0xd4))
	case 0xd9, 0xda, 0xdb: // str 8/16/32
		n, err := d.uint(1 << (c - 0xd9))
		if err != nil {
			return nil, err
		}
		return d.strN(n)
	case 0xdc, 0xdd: // array 16/32
		n, err := d.uint(2 << (c - 0xdc))
		if err != nil {
			return nil, err
		}
		return d.arrayN(n, depth)
	case 0xde, 0xdf: // map 16/32
		n, err := d.uint(2 << (c - 0xde))
		if err != nil {
			return nil, err
		}
		return d.mapN(n, depth)
	}
	return nil, fmt.Errorf("msgpack: invalid type byte 0x%02x", c)
}

// number reads the fixed-width float, uint and int types (0xca..0xd3).
func (d *msgpackDecoder) number(c byte) (any, error) {
	switch c {
	case 0xca:
		n, err := d.uint(4)
		return float64(math.Float32frombits(uint32(n))), err
	case 0xcb:
		n, err := d.uint(8)
		return math.Float64frombits(n), err
	case 0xcc, 0xcd, 0xce, 0xcf: // uint 8..64
		n, err := d.uint(1 << (c - 0xcc))
		if err != nil {
			return nil, err
		}
		return normUint(n), nil
	case 0xd0:
		n, err := d.uint(1)
		return int64(int8(n)), err
	case 0xd1:
		n, err := d.uint(2)
		return int64(int16(n)), err
	case 0xd2:
		n, err := d.uint(4)
		return int64(int32(n)), err
	}
	n, err := d.uint(8) // 0xd3
	return int64(n), err
}

func (d *msgpackDecoder) strN(n uint64) (any, error) {
	s, err := d.str(n)
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (d *msgpackDecoder) str(n uint64) (string, error) {
	b, err := d.take(n)
	if err != nil {
		return "", err
	}
	if !utf8.Valid(b) {
		return "", errors.New("msgpack: str is not valid UTF-8")
	}
	if s, ok := internKey(b); ok {
		return s, nil
	}
	return string(b), nil
}

func (d *msgpackDecoder) arrayN(n uint64, depth int) (any, error) {
	if depth >= maxDepth {
		return nil, errors.New("msgpack: nesting too deep")
	}
	// Every element takes at least one byte: a bigger count is a lie and
	// must not drive the allocation.
	if n > uint64(len(d.data)-d.pos) {
		return nil, errMsgpackShort
	}
	a := make([]any, n)
	for i := range a {
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		a[i] = v
	}
	return a, nil
}

func (d *msgpackDecoder) mapN(n uint64, depth int) (any, error) {
	if depth >= maxDepth {
		return nil, errors.New("msgpack: nesting too deep")
	}
	if n > uint64(len(d.data)-d.pos)/2 {
		return nil, errMsgpackShort
	}
	m := make(map[string]any, n)
	for range n {
		if d.pos >= len(d.data) {
			return nil, errMsgpackShort
		}
		k, err := d.key()
		if err != nil {
			return nil, err
		}
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		m[k] = v
	}
	return m, nil
}

// key reads a map key without boxing it: str, or bin (which Python's
// strict_map_key also allows).
func (d *msgpackDecoder) key() (string, error) {
	c := d.data[d.pos]
	d.pos++
	var n uint64
	var err error
	switch {
	case c >= 0xa0 && c <= 0xbf:
		n = uint64(c & 0x1f)
	case c >= 0xd9 && c <= 0xdb:
		n, err = d.uint(1 << (c - 0xd9))
	case c >= 0xc4 && c <= 0xc6:
		if n, err = d.uint(1 << (c - 0xc4)); err != nil {
			return "", err
		}
		b, err := d.take(n)
		return string(b), err
	default:
		return "", fmt.Errorf("msgpack: map key type byte 0x%02x is not str or bin", c)
	}
	if err != nil {
		return "", err
	}
	return d.str(n)
}

func (d *msgpackDecoder) ext(n uint64) (any, error) {
	t, err := d.take(1)
	if err != nil {
		return nil, err
	}
	b, err := d.take(n)
	if err != nil {
		return nil, err
	}
	if int8(t[0]) != -1 {
		return nil, fmt.Errorf("msgpack: unsupported extension type %d", int8(t[0]))
	}
	switch len(b) {
	case 4:
		return time.Unix(int64(binary.BigEndian.Uint32(b)), 0).UTC(), nil
	case 8:
		v := binary.BigEndian.Uint64(b)
		return time.Unix(int64(v&(1<<34-1)), int64(v>>34)).UTC(), nil
	case 12:
		ns := binary.BigEndian.Uint32(b)
		sec := int64(binary.BigEndian.Uint64(b[4:]))
		return time.Unix(sec, int64(ns)).UTC(), nil
	}
	return nil, fmt.Errorf("msgpack: timestamp extension of %d bytes", len(b))
}
