package protocol

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// maxYAMLNodes bounds the nodes visited while expanding aliases, so a
// "billion laughs" document fails instead of eating memory.
const maxYAMLNodes = 1 << 20

// decodeYAML decodes data like PyYAML's safe_load: only the standard
// tags (null, bool, int, float, str, timestamp, binary, seq, map, merge)
// are accepted. Non-string scalar map keys keep their source text.
// Known gap: yaml.v3 resolves plain scalars by YAML 1.2 rules, so YAML 1.1
// forms PyYAML emits only when quoted anyway (yes/no, 0777) may differ.
func decodeYAML(data []byte) (v any, err error) {
	var doc yaml.Node
	if err := safeYAMLUnmarshal(data, &doc); err != nil {
		return nil, err
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, nil // empty document: safe_load returns None
	}
	c := yamlConverter{}
	return c.node(doc.Content[0], 0)
}

// safeYAMLUnmarshal converts a panic inside the third-party parser into an
// error: Decode promises not to panic on any input.
func safeYAMLUnmarshal(data []byte, n *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: parser failure: %v", r)
		}
	}()
	return yaml.Unmarshal(data, n)
}

type yamlConverter struct {
	visited int
}

func (c *yamlConverter) node(n *yaml.Node, depth int) (any, error) {
	c.visited++
	if c.visited > maxYAMLNodes {
		return nil, errors.New("yaml: document too large after alias expansion")
	}
	if depth >= maxDepth {
		return nil, errors.New("yaml: nesting too deep")
	}
	switch n.Kind {
	case yaml.AliasNode:
		if n.Alias == nil {
			return nil, errors.New("yaml: unresolved alias")
		}
		return c.node(n.Alias, depth+1)
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil, nil
		}
		return c.node(n.Content[0], depth+1)
	case yaml.SequenceNode:
		if tag := n.ShortTag(); tag != "!!seq" {
			return nil, fmt.Errorf("yaml: unsupported tag %s", tag)
		}
		a := make([]any, len(n.Content))
		for i, e := range n.Content {
			v, err := c.node(e, depth+1)
			if err != nil {
				return nil, err
			}
			a[i] = v
		}
		return a, nil
	case yaml.MappingNode:
		return c.mapping(n, depth)
	case yaml.ScalarNode:
		return scalar(n)
	}
	return nil, fmt.Errorf("yaml: unexpected node kind %d", n.Kind)
}

func (c *yamlConverter) mapping(n *yaml.Node, depth int) (any, error) {
	if tag := n.ShortTag(); tag != "!!map" {
		return nil, fmt.Errorf("yaml: unsupported tag %s", tag)
	}
	if len(n.Content)%2 != 0 {
		return nil, errors.New("yaml: odd mapping")
	}
	m := make(map[string]any, len(n.Content)/2)
	var merged []map[string]any
	for i := 0; i < len(n.Content); i += 2 {
		kn, vn := n.Content[i], n.Content[i+1]
		v, err := c.node(vn, depth+1)
		if err != nil {
			return nil, err
		}
		if kn.Kind == yaml.ScalarNode && kn.ShortTag() == "!!merge" {
			// "<<: *base" or "<<: [*a, *b]": explicit keys win.
			switch mv := v.(type) {
			case map[string]any:
				merged = append(merged, mv)
			case []any:
				for _, e := range mv {
					em, ok := e.(map[string]any)
					if !ok {
						return nil, errors.New("yaml: merge of a non-mapping")
					}
					merged = append(merged, em)
				}
			default:
				return nil, errors.New("yaml: merge of a non-mapping")
			}
			continue
		}
		if kn.Kind != yaml.ScalarNode {
			return nil, errors.New("yaml: non-scalar mapping key")
		}
		if _, err := scalar(kn); err != nil {
			return nil, err
		}
		m[kn.Value] = v
	}
	for _, mm := range merged {
		for k, v := range mm {
			if _, ok := m[k]; !ok {
				m[k] = v
			}
		}
	}
	return m, nil
}

func scalar(n *yaml.Node) (any, error) {
	switch tag := n.ShortTag(); tag {
	case "!!null":
		return nil, nil
	case "!!str":
		return n.Value, nil
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			return nil, fmt.Errorf("yaml: %w", err)
		}
		return b, nil
	case "!!int":
		var i int64
		if err := n.Decode(&i); err == nil {
			return i, nil
		}
		return yamlBigInt(n.Value)
	case "!!float":
		if isDecimalInt(n.Value) {
			// yaml.v3 resolves integers too big for int64 as floats;
			// PyYAML keeps them exact.
			return yamlBigInt(n.Value)
		}
		var f float64
		if err := n.Decode(&f); err != nil {
			return nil, fmt.Errorf("yaml: %w", err)
		}
		return f, nil
	case "!!timestamp":
		var t time.Time
		if err := n.Decode(&t); err != nil {
			return nil, fmt.Errorf("yaml: %w", err)
		}
		return t.UTC(), nil
	case "!!binary":
		b, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(n.Value), ""))
		if err != nil {
			return nil, fmt.Errorf("yaml: !!binary: %w", err)
		}
		return b, nil
	default:
		return nil, fmt.Errorf("yaml: unsupported tag %s", tag)
	}
}

func isDecimalInt(s string) bool {
	if s != "" && (s[0] == '-' || s[0] == '+') {
		s = s[1:]
	}
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

func yamlBigInt(v string) (any, error) {
	s := strings.ReplaceAll(v, "_", "")
	if len(s) > maxIntDigits+2 {
		return nil, fmt.Errorf("yaml: integer longer than %d digits", maxIntDigits)
	}
	b, ok := new(big.Int).SetString(s, 0)
	if !ok {
		return nil, fmt.Errorf("yaml: invalid integer %q", v)
	}
	if b.IsInt64() {
		return b.Int64(), nil
	}
	return b, nil
}
