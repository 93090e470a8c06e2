// Package testenv finds the real services integration tests run against (RabbitMQ and a
// MongoDB-wire server) and gives each test a fresh database or queue name. Tests skip
// with a message naming the variable when a service is not configured; `make test`
// starts the services and sets the variables.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Variables naming the services.
const (
	AMQPVar  = "CCWORKER_TEST_AMQP_URL"
	MongoVar = "CCWORKER_TEST_MONGO_URL"
)

// AMQPURL returns the test broker's URL or skips the test.
func AMQPURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv(AMQPVar)
	if u == "" {
		t.Skipf("%s is not set: no RabbitMQ to test against (make test sets it)", AMQPVar)
	}
	return u
}

// MongoURL returns the test MongoDB-wire server's URL (without a database) or skips.
func MongoURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv(MongoVar)
	if u == "" {
		t.Skipf("%s is not set: no MongoDB-wire server to test against (make test sets it)", MongoVar)
	}
	return u
}

// Name returns a name unique to this test run: prefix, the test's name and a random suffix,
// safe as a MongoDB database or an AMQP queue name.
func Name(t testing.TB, prefix string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	n := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, t.Name())
	if len(n) > 30 {
		n = n[len(n)-30:]
	}
	return strings.ToLower(prefix + "_" + n + "_" + hex.EncodeToString(b[:]))
}

// Database connects to the test server and returns a fresh database, dropped when the
// test ends.
func Database(t testing.TB) *mongo.Database {
	t.Helper()
	client, err := mongo.Connect(options.Client().ApplyURI(MongoURL(t)).SetTimeout(30 * time.Second))
	if err != nil {
		t.Fatalf("connect to %s: %v", os.Getenv(MongoVar), err)
	}
	db := client.Database(Name(t, "t"))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = db.Drop(ctx)
		_ = client.Disconnect(ctx)
	})
	return db
}
