package node

import (
	"testing"
	"time"
)

// The monitor's default interval is stretched for idle workers; the URL still sets it.
func TestMongoHeartbeatDefaultAndOverride(t *testing.T) {
	for uri, want := range map[string]time.Duration{
		"mongodb://127.0.0.1:27017/":                            mongoHeartbeat,
		"mongodb://127.0.0.1:27017/?heartbeatFrequencyMS=5000":  5 * time.Second,
		"mongodb://127.0.0.1:27017/?heartbeatFrequencyMS=90000": 90 * time.Second,
	} {
		o := mongoOptions(uri)
		if err := o.Validate(); err != nil {
			t.Fatalf("%s: %v", uri, err)
		}
		if o.HeartbeatInterval == nil || *o.HeartbeatInterval != want {
			t.Errorf("%s: heartbeat interval %v, want %v", uri, o.HeartbeatInterval, want)
		}
	}
}
