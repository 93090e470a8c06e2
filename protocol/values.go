package protocol

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"strings"
	"time"
)

// reviveEnvelope turns kombu 5.3+'s {"__type__": T, "__value__": V} maps
// back into values, like kombu's object_hook. m has exactly two keys.
func reviveEnvelope(m map[string]any) (any, error) {
	t, ok1 := m["__type__"]
	v, ok2 := m["__value__"]
	if !ok1 || !ok2 {
		return m, nil
	}
	ts, _ := t.(string)
	if ts == "uuid" {
		return reviveUUID(v)
	}
	s, ok := v.(string)
	if !ok {
		return nil, fmt.Errorf("kombu %q envelope: value is %T, want a string", ts, v)
	}
	switch ts {
	case "datetime":
		return parseISO(s, time.UTC)
	case "date":
		if len(s) != 10 {
			return nil, fmt.Errorf("kombu date envelope: invalid date %q", s)
		}
		return parseISO(s, time.UTC)
	case "time", "decimal":
		// No Go type carries Python's time or Decimal exactly; the text keeps
		// all the information (kombu 5.2 sent these as strings too).
		return s, nil
	case "bytes":
		return []byte(s), nil
	case "base64":
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("kombu base64 envelope: %w", err)
		}
		return b, nil
	}
	// kombu raises ValueError for an unknown type, so the body is undecodable.
	return nil, fmt.Errorf("kombu envelope: unsupported __type__ %v", t)
}

// reviveUUID implements uuid.UUID(**{"hex": ..., "version": ...}) and
// returns the canonical dashed form.
func reviveUUID(v any) (any, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("kombu uuid envelope: value is %T, want a map", v)
	}
	h, ok := m["hex"].(string)
	if !ok {
		return nil, errors.New("kombu uuid envelope: missing hex")
	}
	h = strings.NewReplacer("urn:", "", "uuid:", "").Replace(h)
	h = strings.ReplaceAll(strings.Trim(h, "{}"), "-", "")
	var u [16]byte
	if len(h) != 32 {
		return nil, fmt.Errorf("kombu uuid envelope: badly formed hex %q", h)
	}
	if _, err := hex.Decode(u[:], []byte(h)); err != nil {
		return nil, fmt.Errorf("kombu uuid envelope: %w", err)
	}
	for k, ver := range m {
		switch k {
		case "hex":
		case "version":
			if ver == nil {
				continue
			}
			n, ok := ver.(int64)
			if !ok || n < 1 || n > 8 {
				return nil, fmt.Errorf("kombu uuid envelope: illegal version number %v", ver)
			}
			// Python's UUID(version=n) forces the RFC 4122 variant and version.
			u[8] = u[8]&0x3f | 0x80
			u[6] = u[6]&0x0f | byte(n)<<4
		default:
			return nil, fmt.Errorf("kombu uuid envelope: unexpected argument %q", k)
		}
	}
	var out [36]byte
	hex.Encode(out[0:8], u[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], u[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], u[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], u[8:10])
	out[23] = '-'
	hex.Encode(out[24:], u[10:])
	return string(out[:]), nil
}

// parseISO parses the ISO-8601 forms Celery accepts for eta and expires
// (celery.utils.iso8601 and datetime.fromisoformat):
//
//	YYYY-MM-DD[<sep>HH:MM[:SS[.ffffff]]][Z|±HH:MM|±HHMM|±HH]
//
// A value without an offset is in naive; the result is UTC.
func parseISO(s string, naive *time.Location) (time.Time, error) {
	bad := func(why string) (time.Time, error) {
		return time.Time{}, fmt.Errorf("invalid ISO-8601 time %q: %s", s, why)
	}
	p := isoParser{s: s}
	year := p.digits(4, 4)
	if year < 0 || !p.byte('-') {
		return bad("expected YYYY-")
	}
	month := p.digits(1, 2)
	if month < 1 || month > 12 || !p.byte('-') {
		return bad("bad month")
	}
	day := p.digits(1, 2)
	if day < 1 || day > daysIn(year, month) {
		return bad("bad day")
	}
	var hour, minute, sec, nsec int
	loc := naive
	if p.more() {
		p.pos++ // any separator, as in Celery's regex
		var why string
		if hour, minute, sec, nsec, why = p.clock(); why != "" {
			return bad(why)
		}
		if loc, why = p.offset(naive); why != "" {
			return bad(why)
		}
	}
	if p.more() {
		return bad("unexpected trailing text")
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, nsec, loc).UTC(), nil
}

// clock reads hh:mm[:ss[.ffffff]]; why says what is wrong, if anything.
func (p *isoParser) clock() (hour, minute, sec, nsec int, why string) {
	hour = p.digits(2, 2)
	if hour < 0 || hour > 23 || !p.byte(':') {
		return 0, 0, 0, 0, "bad hour"
	}
	minute = p.digits(2, 2)
	if minute < 0 || minute > 59 {
		return 0, 0, 0, 0, "bad minute"
	}
	if !p.byte(':') {
		return hour, minute, 0, 0, ""
	}
	sec = p.digits(2, 2)
	if sec < 0 || sec > 59 {
		return 0, 0, 0, 0, "bad second"
	}
	if p.byte('.') || p.byte(',') {
		start := p.pos
		frac := 0
		for p.more() && isDigit(p.s[p.pos]) {
			if p.pos-start < 9 {
				frac = frac*10 + int(p.s[p.pos]-'0')
			}
			p.pos++
		}
		n := p.pos - start
		if n == 0 {
			return 0, 0, 0, 0, "empty fraction"
		}
		for ; n < 9; n++ {
			frac *= 10
		}
		// Python keeps microseconds only.
		nsec = frac / 1000 * 1000
	}
	return hour, minute, sec, nsec, ""
}

// offset reads an optional Z or +hh[:mm] / -hh[:mm]; without one the time
// is in naive.
func (p *isoParser) offset(naive *time.Location) (*time.Location, string) {
	if !p.more() {
		return naive, ""
	}
	switch p.s[p.pos] {
	case 'Z', 'z':
		p.pos++
		return time.UTC, ""
	case '+', '-':
		sign := 1
		if p.s[p.pos] == '-' {
			sign = -1
		}
		p.pos++
		oh := p.digits(2, 2)
		p.byte(':')
		om := 0
		if p.more() {
			om = p.digits(2, 2)
		}
		if oh < 0 || oh > 23 || om < 0 || om > 59 {
			return nil, "bad offset"
		}
		return time.FixedZone("", sign*(oh*3600+om*60)), ""
	}
	return naive, ""
}

type isoParser struct {
	s   string
	pos int
}

func (p *isoParser) more() bool { return p.pos < len(p.s) }

func (p *isoParser) byte(c byte) bool {
	if p.pos < len(p.s) && p.s[p.pos] == c {
		p.pos++
		return true
	}
	return false
}

// digits reads between lo and hi decimal digits, or returns -1.
func (p *isoParser) digits(lo, hi int) int {
	n, i := 0, 0
	for ; i < hi && p.pos < len(p.s) && isDigit(p.s[p.pos]); i++ {
		n = n*10 + int(p.s[p.pos]-'0')
		p.pos++
	}
	if i < lo {
		return -1
	}
	return n
}

func daysIn(year, month int) int {
	return time.Date(year, time.Month(month)+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// normalize converts a header value, as an AMQP library decoded it, to
// the value model: any map with string keys (amqp.Table included) becomes
// map[string]any, arrays []any, sized ints int64, float32 float64. Other
// values (e.g. amqp.Decimal) are kept as they are.
func normalize(v any, depth int) (any, error) {
	if depth > maxDepth {
		return nil, errors.New("header value nested too deeply")
	}
	switch x := v.(type) {
	case nil, bool, string, []byte, int64, float64, time.Time, *big.Int:
		return v, nil
	case int:
		return int64(x), nil
	case int8:
		return int64(x), nil
	case int16:
		return int64(x), nil
	case int32:
		return int64(x), nil
	case uint8:
		return int64(x), nil
	case uint16:
		return int64(x), nil
	case uint32:
		return int64(x), nil
	case uint:
		return normUint(uint64(x)), nil
	case uint64:
		return normUint(x), nil
	case float32:
		return float64(x), nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			n, err := normalize(e, depth+1)
			if err != nil {
				return nil, err
			}
			out[i] = n
		}
		return out, nil
	case map[string]any:
		return normalizeMap(x, depth)
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Map && rv.Type().Key().Kind() == reflect.String {
		out := make(map[string]any, rv.Len())
		it := rv.MapRange()
		for it.Next() {
			n, err := normalize(it.Value().Interface(), depth+1)
			if err != nil {
				return nil, err
			}
			out[it.Key().String()] = n
		}
		return out, nil
	}
	return v, nil
}

func normalizeMap(m map[string]any, depth int) (map[string]any, error) {
	out := make(map[string]any, len(m))
	for k, e := range m {
		n, err := normalize(e, depth+1)
		if err != nil {
			return nil, err
		}
		out[k] = n
	}
	return out, nil
}

func normUint(u uint64) any {
	if u > math.MaxInt64 {
		return new(big.Int).SetUint64(u)
	}
	return int64(u)
}

// asMap returns v as a map[string]any when it is any kind of map with
// string keys.
func asMap(v any) (map[string]any, bool) {
	if m, ok := v.(map[string]any); ok {
		return m, true
	}
	if v == nil {
		return nil, false
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Map || rv.Type().Key().Kind() != reflect.String {
		return nil, false
	}
	n, err := normalize(v, 0)
	if err != nil {
		return nil, false
	}
	m, ok := n.(map[string]any)
	return m, ok
}

// asString accepts a string, bytes (py-amqp may send str headers as
// bytes) or nil (None: empty).
func asString(v any) (string, bool) {
	switch x := v.(type) {
	case nil:
		return "", true
	case string:
		return x, true
	case []byte:
		return string(x), true
	}
	return "", false
}

// asInt accepts any integer type and integral floats (a retries count
// that went through a float-only path).
func asInt(v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case int:
		return int64(x), true
	case int8:
		return int64(x), true
	case int16:
		return int64(x), true
	case int32:
		return int64(x), true
	case uint8:
		return int64(x), true
	case uint16:
		return int64(x), true
	case uint32:
		return int64(x), true
	case uint64:
		if x <= math.MaxInt64 {
			return int64(x), true
		}
	case uint:
		if uint64(x) <= math.MaxInt64 {
			return int64(x), true
		}
	case float32:
		return asInt(float64(x))
	case float64:
		if x == math.Trunc(x) && x >= math.MinInt64 && x < math.MaxInt64 {
			return int64(x), true
		}
	}
	return 0, false
}

// asSeconds converts a time limit (a number of seconds, nil for none) to
// a Duration.
func asSeconds(v any) (time.Duration, bool) {
	if v == nil {
		return 0, true
	}
	var f float64
	switch x := v.(type) {
	case float64:
		f = x
	case float32:
		f = float64(x)
	default:
		n, ok := asInt(v)
		if !ok {
			return 0, false
		}
		f = float64(n)
	}
	// NaN fails both comparisons; the upper bound keeps the conversion in
	// range (about 292 years).
	if !(f >= 0 && f < float64(math.MaxInt64)/float64(time.Second)) {
		return 0, false
	}
	return time.Duration(f * float64(time.Second)), true
}
