package protocol

import "fmt"

// Content types of the serializers ccworker understands.
const (
	ContentTypeJSON    = "application/json"
	ContentTypeMsgpack = "application/x-msgpack"
	ContentTypeYAML    = "application/x-yaml"
	contentTypePickle  = "application/x-python-serialize"
)

// Accept is the set of accepted content types (Celery's accept_content).
// The zero value accepts JSON only, like Celery's default.
type Accept struct {
	set  bool // false: the zero value, meaning the default (json)
	mask uint8
}

const (
	acceptJSON uint8 = 1 << iota
	acceptMsgpack
	acceptYAML
)

// NewAccept builds an Accept from kombu serializer names ("json",
// "msgpack", "yaml") or content types. Pickle is refused because ccworker
// never runs Python-serialized payloads; unknown names are an error. An
// empty list means the default, JSON only.
func NewAccept(names []string) (Accept, error) {
	if len(names) == 0 {
		return Accept{}, nil
	}
	a := Accept{set: true}
	for _, n := range names {
		switch n {
		case "json", ContentTypeJSON:
			a.mask |= acceptJSON
		case "msgpack", ContentTypeMsgpack:
			a.mask |= acceptMsgpack
		case "yaml", ContentTypeYAML:
			a.mask |= acceptYAML
		case "pickle", contentTypePickle:
			return Accept{}, fmt.Errorf("protocol: accept %q: pickle is never accepted", n)
		default:
			return Accept{}, fmt.Errorf("protocol: accept %q: unknown serializer", n)
		}
	}
	return a, nil
}

// Accepts reports whether messages of the given content type are accepted.
func (a Accept) Accepts(contentType string) bool {
	bit := contentBit(contentType)
	if bit == 0 {
		return false
	}
	if !a.set {
		return bit == acceptJSON
	}
	return a.mask&bit != 0
}

func contentBit(contentType string) uint8 {
	switch contentType {
	case ContentTypeJSON:
		return acceptJSON
	case ContentTypeMsgpack:
		return acceptMsgpack
	case ContentTypeYAML:
		return acceptYAML
	}
	return 0
}
