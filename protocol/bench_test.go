package protocol

import (
	"math/big"
	"testing"
	"time"
)

func benchDecode(b *testing.B, name string, accept Accept) {
	m := fixtureByName(b, name).message(b)
	b.ReportAllocs()
	b.SetBytes(int64(len(m.Body)))
	for b.Loop() {
		if _, err := Decode(m, accept); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeV2JSON(b *testing.B) {
	benchDecode(b, "json-01-tasks.add", Accept{})
}

func BenchmarkDecodeV2Msgpack(b *testing.B) {
	a, err := NewAccept([]string{"msgpack"})
	if err != nil {
		b.Fatal(err)
	}
	benchDecode(b, "msgpack-07-tasks.add", a)
}

func BenchmarkAppendJSON(b *testing.B) {
	v := map[string]any{
		"result": []any{int64(1), 2.5, "héllo", nil, true, big.NewInt(7)},
		"date":   time.Date(2024, 1, 2, 3, 4, 5, 6000, time.UTC),
		"nested": map[string]any{"k": "v", "n": int64(12345)},
	}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = AppendJSON(buf[:0], v); err != nil {
			b.Fatal(err)
		}
	}
}
