package protocol

import (
	"testing"
	"time"
)

// FuzzDecode feeds arbitrary content types, compression names, headers
// (JSON, converted the way amqp091-go would deliver them) and bodies.
// Property: Decode never panics, and a success has a non-empty ID and Task.
func FuzzDecode(f *testing.F) {
	for _, fx := range loadFixtures(f) {
		m := fx.message(f)
		hdr, err := AppendJSON(nil, m.Headers)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(m.ContentType, "", hdr, m.Body)
	}
	f.Add(ContentTypeJSON, "", []byte(`{}`), []byte(`{"task": "t", "id": "i", "args": [1], "eta": "2024-01-01T00:00:00"}`))
	f.Add(ContentTypeJSON, "", []byte(`{"task": "t", "id": "i"}`), []byte(`{"args": [], "kwargs": {}, "utc": false}`))
	f.Add(ContentTypeJSON, "", []byte(`{"task": "t", "id": "i", "stamps": {"a": {"b": 1}}, "timelimit": [1.5, null]}`),
		[]byte(`[[NaN, -Infinity, 1e999, 123456789012345678901234567890, {"__type__": "uuid", "__value__": {"hex": "00000000000000000000000000000001", "version": 4}}], {"d": {"__type__": "datetime", "__value__": "2024-01-02T03:04:05+01:00"}}, null]`))
	f.Add(ContentTypeYAML, "", []byte(`{"task": "t", "id": "i"}`), []byte("- [1, !!binary aGk=, 2024-01-01]\n- {a: &x [1], b: *x}\n- null\n"))
	f.Add(ContentTypeMsgpack, "", []byte(`{"task": "t", "id": "i"}`), []byte{0x93, 0x91, 0xd6, 0xff, 0, 0, 0, 1, 0x80, 0xc0})
	f.Add(ContentTypeJSON, "zlib", []byte(`{"task": "t", "id": "i"}`), []byte{0x78, 0x9c, 0x8b, 0x8e, 0x8e, 0xd5, 0x51, 0xa8, 0xae, 0xd5, 0x51, 0xc8, 0x2b, 0xcd, 0xc9, 0x89, 0x05, 0x00, 0x25, 0xf4, 0x04, 0x79})
	f.Add(ContentTypeJSON, "zstd", []byte(`{"task": "t", "id": "i"}`), []byte{0x28, 0xb5, 0x2f, 0xfd, 0x04, 0x00, 0x00})
	f.Add(ContentTypeJSON, "bzip2", []byte(`{"task": "t", "id": "i"}`), []byte("BZh91AY&SY"))

	accept, err := NewAccept([]string{"json", "msgpack", "yaml"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, contentType, compression string, headers, body []byte) {
		m := Message{ContentType: contentType, Body: body}
		if h, err := decodeJSON(headers); err == nil {
			if hm, ok := h.(map[string]any); ok {
				m.Headers = amqpHeaders(hm).(map[string]any)
			}
		}
		if compression != "" {
			if m.Headers == nil {
				m.Headers = map[string]any{}
			}
			m.Headers["compression"] = compression
		}
		hang := time.AfterFunc(10*time.Second, func() { panic("Decode took more than 10s") })
		r, err := Decode(m, accept)
		hang.Stop()
		if err != nil {
			if r != nil {
				t.Fatal("non-nil request with an error")
			}
			if _, ok := err.(*DecodeError); !ok {
				t.Fatalf("error %T is not a *DecodeError", err)
			}
			return
		}
		if r.ID == "" || r.Task == "" {
			t.Fatalf("success without id/task: %+v", r)
		}
		// Whatever decodes must re-encode (retries re-publish it) unless it
		// holds bytes that are not UTF-8, which JSON cannot carry.
		if _, err := EncodeV2(r); err != nil {
			t.Logf("EncodeV2: %v", err)
		}
	})
}
