package testharness

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Client runs scripts/celery_client.py, Python Celery's client (Debian's 5.2.6), against
// one queue and result collection.
type Client struct {
	Broker, Backend      string // broker and MongoDB URLs
	Database, Collection string
	Queue                string
}

// ClientScript is the path of scripts/celery_client.py.
func ClientScript() string {
	root, err := RepoRoot()
	if err != nil {
		return "scripts/celery_client.py"
	}
	return filepath.Join(root, "scripts", "celery_client.py")
}

// Run runs the client with args after the connection flags and returns its output and
// exit status; err is for a client that could not run at all.
func (c Client) Run(ctx context.Context, args ...string) (stdout, stderr string, code int, err error) {
	full := []string{ClientScript(), "--broker", c.Broker, "--backend", c.Backend, "--database", c.Database,
		"--collection", c.Collection, "--queue", c.Queue}
	cmd := exec.CommandContext(ctx, Python, append(full, args...)...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return o.String(), e.String(), ee.ExitCode(), nil
	}
	return o.String(), e.String(), 0, err
}

// NewUUID returns a random (version 4) UUID, as Celery's task ids.
func NewUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// FindRaw returns the result document of a task id.
func FindRaw(t testing.TB, coll *mongo.Collection, id string) (bson.Raw, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return coll.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Raw()
}

// CountDocs counts the documents matching filter.
func CountDocs(t testing.TB, coll *mongo.Collection, filter bson.D) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := coll.CountDocuments(ctx, filter)
	if err != nil {
		t.Fatalf("count documents: %v", err)
	}
	return int(n)
}

// Docs decodes every document of coll into out (a pointer to a slice).
func Docs(t testing.TB, coll *mongo.Collection, out any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cur, err := coll.Find(ctx, bson.D{})
	if err != nil {
		t.Fatalf("find: %v", err)
	}
	if err := cur.All(ctx, out); err != nil {
		t.Fatalf("read documents: %v", err)
	}
}
