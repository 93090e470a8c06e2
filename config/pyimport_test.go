package config

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testPython is the interpreter the tests import configs with: Debian's, else
// python3 from PATH, as the worker's --python default.
func testPython(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		if lp, err := exec.LookPath(p); err == nil {
			return lp
		}
	}
	const why = "no python3: the Python config import cannot be tested"
	if os.Getenv("CCWORKER_REQUIRE_TOOLS") == "1" { // make test installed it: a miss is a failure
		t.Fatal(why)
	}
	t.Skip(why)
	return ""
}

// centralEnv is the environment cyberCommons' stack gives its worker, with the
// certificates of a throwaway CA under SSL_PATH.
func centralEnv(t *testing.T) {
	p := newPKI(t)
	sslPath := t.TempDir()
	for name, from := range map[string]string{"client/key.pem": p.keyFile, "client/cert.pem": p.certFile,
		"testca/cacert.pem": p.caFile, "client/mongodb.pem": p.comboFile} {
		b, err := os.ReadFile(from)
		require.NoError(t, err)
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(sslPath, name)), 0o700))
		require.NoError(t, os.WriteFile(filepath.Join(sslPath, name), b, 0o600))
	}
	for k, v := range map[string]string{
		"SSL_PATH": sslPath, "BROKER_USE_SSL": "True", "BROKER_HOST": "rabbit.example",
		"RABBITMQ_DEFAULT_USER": "cybercom", "RABBITMQ_DEFAULT_PASS": "rabbitpass", "RABBITMQ_DEFAULT_VHOST": "cybercom",
		"MONGO_USERNAME": "mongouser", "MONGO_PASSWORD": "mongopass", "MONGO_HOST": "mongo.example",
		"CELERY_IMPORTS": "cybercomq,cybercomq.tasks.tasks",
	} {
		t.Setenv(k, v)
	}
	t.Setenv(EnvBrokerURL, "")
	t.Setenv(EnvResultBackend, "")
}

const centralConfig = "testdata/central/celeryconfig.py"

func TestLoadFileImportsWithPython(t *testing.T) {
	python := testPython(t)
	centralEnv(t)
	sslPath := os.Getenv("SSL_PATH")

	c, err := LoadFile(context.Background(), centralConfig, LoadOptions{Env: os.LookupEnv, Python: python})
	require.NoError(t, err)
	assert.Equal(t, []string{"amqp://cybercom:rabbitpass@rabbit.example:5671/cybercom"}, c.BrokerURLs, "f-string, os.environ[...] and a sibling module's value")
	assert.Equal(t, map[string]any{"keyfile": sslPath + "/client/key.pem", "certfile": sslPath + "/client/cert.pem",
		"ca_certs": sslPath + "/testca/cacert.pem", "cert_reqs": int64(2)}, c.BrokerUseSSL, "the value a def returned")
	assert.Equal(t, []string{"cybercomq", "cybercomq.tasks.tasks"}, c.Imports, "tuple(....split(','))")
	assert.True(t, c.WorkerSendTaskEvents)
	assert.Equal(t, []string{"json"}, c.AcceptContent)
	// Helper variables are reported as unused settings, as with the literal reader;
	// modules and functions are not settings at all.
	assert.Contains(t, c.Ignored, "RABBITMQ_DEFAULT_PASS")
	assert.Contains(t, c.Ignored, "BROKER_HOST")
	for _, helper := range []string{"os", "ssl", "setBrokerSSL"} {
		assert.NotContains(t, c.Ignored, helper)
	}

	u, err := ParseBrokerURL(c.BrokerURLs[0])
	require.NoError(t, err)
	tc, err := c.BrokerTLS(u)
	require.NoError(t, err, "the same validation: certificates loaded")
	assert.Len(t, tc.Certificates, 1)
	m, err := c.Mongo()
	require.NoError(t, err)
	assert.Equal(t, "cybercom", m.Database)
	assert.Equal(t, "tombstone", m.Collection)
	assert.Contains(t, m.URI, "mongodb://mongouser:mongopass@mongo.example:27017/?authSource=admin&tls=true")
	assert.NotContains(t, m.Redacted(), "mongopass")

	// Celery: the environment overrides win over a file Python read, too.
	t.Setenv(EnvBrokerURL, "amqp://other//")
	c, err = LoadFile(context.Background(), centralConfig, LoadOptions{Env: os.LookupEnv, Python: python})
	require.NoError(t, err)
	assert.Equal(t, []string{"amqp://other//"}, c.BrokerURLs)
}

func TestLoadFileWithoutPython(t *testing.T) {
	centralEnv(t)
	for _, python := range []string{"", filepath.Join(t.TempDir(), "no-such-python3")} {
		_, err := LoadFile(context.Background(), centralConfig, LoadOptions{Env: os.LookupEnv, Python: python})
		require.ErrorIs(t, err, ErrUnsupported)
		msg := err.Error()
		assert.True(t, strings.HasPrefix(msg, centralConfig+":6:6: unsupported construct \"import\""), msg)
		assert.Contains(t, msg, "install python3")
		assert.Contains(t, msg, "--python")
	}
	_, err := Load(centralConfig, os.LookupEnv)
	assert.ErrorIs(t, err, ErrUnsupported, "Load is the literal reader alone")
}

func TestLoadFilePythonErrors(t *testing.T) {
	python := testPython(t)
	centralEnv(t)
	load := func(path string) (*Config, error) {
		return LoadFile(context.Background(), path, LoadOptions{Env: os.LookupEnv, Python: python})
	}

	t.Setenv("CELERY_IMPORTS", "")
	os.Unsetenv("CELERY_IMPORTS")
	_, err := load(centralConfig)
	var pe *PythonError
	require.ErrorAs(t, err, &pe)
	assert.ErrorIs(t, err, ErrPython)
	assert.Equal(t, 37, pe.Line)
	assert.Equal(t, "AttributeError", pe.Type)
	assert.True(t, strings.HasPrefix(err.Error(), centralConfig+":37: importing with "+python+": AttributeError: "), err.Error())

	// Raised in the sibling module: the config's line that led there, and where.
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "helper.py"), []byte("import os\nX = os.environ['NOT_SET_ANYWHERE_CCW']\n"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "celeryconfig.py"), []byte("import os\nfrom helper import X\n"), 0o600))
	_, err = load(filepath.Join(dir, "celeryconfig.py"))
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, 2, pe.Line)
	assert.Equal(t, "KeyError", pe.Type)
	assert.Contains(t, err.Error(), "(raised at "+filepath.Join(dir, "helper.py")+":2)")

	// Secrets in an exception's message are redacted like any URL.
	_, err = load(writeConfig(t, "x = 1\nraise ValueError(f'cannot reach amqp://user:s3cret@rabbit//')\n"))
	require.ErrorAs(t, err, &pe)
	assert.NotContains(t, err.Error(), "s3cret")
	assert.NotContains(t, pe.Traceback, "s3cret")

	// A Python syntax error the literal reader calls unsupported: Python's own report.
	_, err = load(writeConfig(t, "x = f'{1'\n"))
	if assert.ErrorAs(t, err, &pe) {
		assert.Equal(t, "SyntaxError", pe.Type)
		assert.Equal(t, 1, pe.Line)
	}
}

func TestLoadFilePythonObjects(t *testing.T) {
	python := testPython(t)
	load := func(src string) (*Config, error) {
		return LoadFile(context.Background(), writeConfig(t, src), LoadOptions{Python: python})
	}
	// A setting holding a value JSON cannot carry: which setting, which type.
	_, err := load("class Queue:\n    def __init__(self, name):\n        self.name = name\n\n" +
		"broker_url = 'amqp://h//'\ntask_queues = (Queue('remote'),)\n")
	var ke *KeyError
	require.ErrorAs(t, err, &ke, "%v", err)
	assert.Equal(t, "task_queues", ke.Key)
	assert.Equal(t, 6, ke.Line)
	assert.Contains(t, err.Error(), "celeryconfig.Queue (a Python object ccworker cannot read")

	_, err = load("broker_url = 'amqp://h//'.encode()\n")
	require.ErrorAs(t, err, &ke)
	assert.Equal(t, "broker_url", ke.Key)
	assert.Contains(t, err.Error(), "got bytes (a Python object")

	// Unread settings with such values are merely unused; helpers are not listed.
	c, err := load("import os\ndef f(): pass\nlookup = {1: 'a'}\nbig = 2 ** 70\nn = float('nan')\nworker_concurrency = 2 * 3\nresult_expires = 1.5\n")
	require.NoError(t, err)
	assert.Equal(t, []string{"big", "lookup", "n"}, c.Ignored)
	assert.Equal(t, 6, c.WorkerConcurrency, "ints stay ints")
	assert.Equal(t, 1500*1e6, float64(c.ResultExpires), "floats stay floats")

	// A config that ends the interpreter: no reply, the exit status and stderr instead.
	_, err = load("import os, sys\nsys.stderr.write('going away\\n')\nos._exit(3)\n")
	require.ErrorIs(t, err, ErrPython)
	assert.Contains(t, err.Error(), "exit status 3")
	assert.Contains(t, err.Error(), "going away")

	// Output the config prints does not disturb the reply.
	c, err = load("import sys\nprint('hello')\nsys.stdout.write('{')\nworker_concurrency = int('3')\n")
	require.NoError(t, err)
	assert.Equal(t, 3, c.WorkerConcurrency)
}
