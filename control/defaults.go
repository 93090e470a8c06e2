package control

import (
	_ "embed"
	"encoding/json"
	"math"
)

// celeryDefaultsJSON is Celery 5.2.6's app.conf.table(with_defaults=True) as its `conf`
// remote-control command serializes it (generated with Debian's python3-celery).
//
//go:embed celery_defaults.json
var celeryDefaultsJSON []byte

// celeryDefaults returns a fresh copy of Celery's default settings.
func celeryDefaults() map[string]any {
	m := map[string]any{}
	_ = json.Unmarshal(celeryDefaultsJSON, &m) // embedded at build time; TestReplies reads it
	// JSON has no infinity; Celery's reply writes float('inf') as Python's json does.
	for k, v := range m {
		if v == "Infinity" {
			m[k] = math.Inf(1)
		}
	}
	return m
}
