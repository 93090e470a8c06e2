package cli

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/spf13/cobra"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ccworker/ccworker/config"
	"github.com/ccworker/ccworker/prefetch"
	"github.com/ccworker/ccworker/tasks"
)

// isolate runs the test in an empty directory (no ./celeryconfig.py) with the Celery
// environment variables unset.
func isolate(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Chdir(dir)
	t.Setenv(config.EnvBrokerURL, "")
	t.Setenv(config.EnvResultBackend, "")
	return dir
}

func writeFile(t *testing.T, dir, name, src string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, []byte(src), 0o600))
	return p
}

// resolveArgs parses args as the worker command does and resolves the settings.
func resolveArgs(t *testing.T, args ...string) (*settings, error) {
	t.Helper()
	opts := &workerOptions{}
	cmd := &cobra.Command{Use: "ccworker", RunE: func(*cobra.Command, []string) error { return nil }}
	opts.bind(cmd)
	require.NoError(t, cmd.ParseFlags(args))
	return resolve(cmd, opts)
}

func mustResolve(t *testing.T, args ...string) *settings {
	t.Helper()
	s, err := resolveArgs(t, args...)
	require.NoError(t, err)
	return s
}

// capture runs run(args) with os.Stdout and os.Stderr redirected.
func capture(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	outF, err := os.CreateTemp(t.TempDir(), "stdout")
	require.NoError(t, err)
	errF, err := os.CreateTemp(t.TempDir(), "stderr")
	require.NoError(t, err)
	oldOut, oldErr := os.Stdout, os.Stderr
	os.Stdout, os.Stderr = outF, errF
	func() {
		defer func() { os.Stdout, os.Stderr = oldOut, oldErr }()
		code = run(args)
	}()
	require.NoError(t, outF.Close())
	require.NoError(t, errF.Close())
	o, _ := os.ReadFile(outF.Name())
	e, _ := os.ReadFile(errF.Name())
	return code, string(o), string(e)
}

const fileConfig = `
broker_url = 'amqp://fileuser:filepw@filehost:5672//'
result_backend = 'mongodb://filehost:27017/'
worker_concurrency = 3
worker_prefetch_multiplier = 2
task_time_limit = 60
task_soft_time_limit = 50
`

func TestPrecedenceFlagsOverEnvOverFile(t *testing.T) {
	dir := isolate(t)
	cfg := writeFile(t, dir, "my_config.py", fileConfig)

	s := mustResolve(t, "--config", cfg)
	require.Len(t, s.brokerURLs, 1)
	assert.Equal(t, "filehost", s.brokerURLs[0].Host)
	require.NotNil(t, s.mongo)
	assert.Contains(t, s.mongo.URI, "filehost")
	assert.Equal(t, 3, s.concurrency)
	assert.Equal(t, 6, s.prefetch)
	assert.Equal(t, time.Minute, s.cfg.TaskTimeLimit)

	t.Setenv(config.EnvBrokerURL, "amqp://envuser:envpw@envhost:5672//")
	t.Setenv(config.EnvResultBackend, "mongodb://envhost:27017/")
	s = mustResolve(t, "--config", cfg)
	assert.Equal(t, "envhost", s.brokerURLs[0].Host)
	assert.Equal(t, "envuser", s.brokerURLs[0].User)
	assert.Contains(t, s.mongo.URI, "envhost")

	s = mustResolve(t, "--config", cfg, "-b", "amqp://flaguser:flagpw@flaghost:5672//",
		"--result-backend", "mongodb://flaghost:27017/", "-c", "7", "--prefetch-multiplier", "3",
		"--time-limit", "5", "--soft-time-limit", "2.5")
	assert.Equal(t, "flaghost", s.brokerURLs[0].Host)
	assert.Contains(t, s.mongo.URI, "flaghost")
	assert.NotContains(t, s.mongo.URI, "envhost")
	assert.Equal(t, 7, s.concurrency)
	assert.Equal(t, 21, s.prefetch)
	assert.Equal(t, 5*time.Second, s.cfg.TaskTimeLimit)
	assert.Equal(t, 2500*time.Millisecond, s.cfg.TaskSoftTimeLimit)

	// --prefetch-multiplier 0 keeps the config's value, as Celery's `value or config`.
	s = mustResolve(t, "--config", cfg, "--prefetch-multiplier", "0")
	assert.Equal(t, 6, s.prefetch)
}

func TestDefaultConfigFileInWorkingDirectory(t *testing.T) {
	dir := isolate(t)
	writeFile(t, dir, "celeryconfig.py", fileConfig)
	s := mustResolve(t)
	assert.Equal(t, "filehost", s.brokerURLs[0].Host)
	assert.Equal(t, "celeryconfig.py", filepath.Base(s.cfg.File))
}

func TestNoConfigUsesCeleryDefaults(t *testing.T) {
	isolate(t)
	s := mustResolve(t)
	require.Len(t, s.brokerURLs, 1)
	assert.Equal(t, "localhost", s.brokerURLs[0].Host)
	assert.Nil(t, s.mongo, "no result backend by default")
	require.Len(t, s.queues, 1)
	assert.Equal(t, prefetch.Queue{Name: "celery", Exchange: "celery", ExchangeType: "direct", RoutingKey: "celery", Durable: true}, s.queues[0])
}

func TestNodeName(t *testing.T) {
	isolate(t)
	host, err := os.Hostname()
	require.NoError(t, err)
	assert.Equal(t, "celery@foo", mustResolve(t, "-n", "foo").nodeName)
	assert.Equal(t, "w1@"+host, mustResolve(t, "-n", "w1@%h").nodeName)
	assert.Equal(t, "celery@"+host, mustResolve(t).nodeName)
}

func TestQueuesIncludeExclude(t *testing.T) {
	isolate(t)
	s := mustResolve(t, "-Q", "a,b", "-X", "b")
	require.Len(t, s.queues, 1)
	assert.Equal(t, prefetch.CeleryQueue("a", 0), s.queues[0])

	s = mustResolve(t, "-Q", "a", "-Q", "b,c", "-X", "a,c")
	require.Len(t, s.queues, 1)
	assert.Equal(t, "b", s.queues[0].Name)

	_, err := resolveArgs(t, "-Q", "a", "-X", "a")
	assert.Error(t, err, "nothing left to consume")
}

func TestPoolOption(t *testing.T) {
	isolate(t)
	for _, p := range []string{"prefork", "gevent", "eventlet", "threads", "processes", "goroutine", "PREFORK"} {
		s, err := resolveArgs(t, "-P", p, "-c", "9")
		require.NoError(t, err, "-P %s", p)
		assert.Equal(t, 9, s.concurrency, "-P %s", p)
	}
	s := mustResolve(t, "-P", "solo", "-c", "9")
	assert.Equal(t, 1, s.concurrency)
	assert.Equal(t, 1*s.cfg.WorkerPrefetchMultiplier, s.prefetch)

	code, _, stderr := capture(t, "-P", "bogus")
	assert.Equal(t, exitConfig, code)
	assert.Contains(t, stderr, "bogus")
}

func TestBadFlagsExitTwo(t *testing.T) {
	isolate(t)
	for _, args := range [][]string{
		{"--no-such-flag"},
		{"-c", "many"},
		{"-l", "LOUD"},
		{"--log-format", "xml"},
		{"-c", "1000000"},
	} {
		code, _, stderr := capture(t, args...)
		assert.Equal(t, exitConfig, code, "%q: %s", args, stderr)
		assert.True(t, strings.HasPrefix(stderr, "ccworker: "), "%q: %s", args, stderr)
	}
}

// A stray positional argument (say, a Celery "worker" sub-command left in a script) is
// the caller's to fix, like a bad flag.
func TestStrayArgumentExitsTwo(t *testing.T) {
	isolate(t)
	code, _, stderr := capture(t, "worker")
	assert.Equal(t, exitConfig, code, stderr)
}

func TestUnsupportedConfigConstructExitsTwoNamingFileAndLine(t *testing.T) {
	dir := isolate(t)
	cfg := writeFile(t, dir, "celeryconfig.py", "import os\n\nbroker_url = get_url()\n")
	code, _, stderr := capture(t, "--config", cfg)
	assert.Equal(t, exitConfig, code)
	assert.Contains(t, stderr, cfg+":3")

	// Found in the working directory too.
	code, _, stderr = capture(t)
	assert.Equal(t, exitConfig, code)
	assert.Contains(t, stderr, "celeryconfig.py:3")
}

// A config that needs Python (#14 item 3) is imported by --python; without an
// interpreter the literal reader's error says what to install.
func TestConfigNeedingPythonIsImported(t *testing.T) {
	dir := isolate(t)
	writeFile(t, dir, "brokers.py", "HOST = 'rabbit.example'\n")
	cfg := writeFile(t, dir, "celeryconfig.py", "import os\nfrom brokers import HOST\n\n"+
		"def url(host):\n    return f'amqp://u:p@{host}:5672//'\n\nbroker_url = url(HOST)\n"+
		"imports = tuple('a,b'.split(','))\n")
	python := defaultInterpreter()
	if _, err := exec.LookPath(python); err != nil {
		t.Skipf("no %s to import the config with", python)
	}
	s := mustResolve(t, "--config", cfg, "--python", python)
	assert.Equal(t, []string{"amqp://u:p@rabbit.example:5672//"}, s.cfg.BrokerURLs)
	assert.Equal(t, []string{"a", "b"}, s.cfg.Imports)

	code, _, stderr := capture(t, "--config", cfg, "--python", filepath.Join(dir, "no-python"))
	assert.Equal(t, exitConfig, code)
	assert.Contains(t, stderr, cfg+":2:6: unsupported construct")
	assert.Contains(t, stderr, "install python3")
}

func TestMissingConfigFileExitsTwo(t *testing.T) {
	dir := isolate(t)
	code, _, stderr := capture(t, "--config", filepath.Join(dir, "nope.py"))
	assert.Equal(t, exitConfig, code)
	assert.Contains(t, stderr, "nope.py")
}

func TestVersion(t *testing.T) {
	code, stdout, _ := capture(t, "version")
	assert.Equal(t, exitOK, code)
	assert.True(t, strings.HasPrefix(stdout, "ccworker "+version), stdout)
}

func TestHelpListsCeleryFlags(t *testing.T) {
	code, stdout, _ := capture(t, "--help")
	assert.Equal(t, exitOK, code)
	for _, f := range []string{"-Q, --queues", "-X, --exclude-queues", "-c, --concurrency", "-n, --hostname",
		"-l, --loglevel", "-P, --pool", "--prefetch-multiplier", "--time-limit", "--soft-time-limit",
		"-E, --task-events", "--without-gossip", "--without-mingle", "--without-heartbeat", "--purge", "--config"} {
		assert.Contains(t, stdout, f)
	}
}

func TestCeleryFlagsAccepted(t *testing.T) {
	isolate(t)
	s := mustResolve(t, "-E", "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO")
	assert.True(t, s.cfg.WorkerSendTaskEvents)
}

func TestBannerHidesPasswords(t *testing.T) {
	dir := isolate(t)
	cfg := writeFile(t, dir, "celeryconfig.py", `
broker_url = 'amqp://rabbit:br0kerS3cret@h1:5672//;amqp://rabbit:br0kerS3cret@h2:5672/vh'
result_backend = 'mongodb://mongo:m0ng0S3cret@mhost:27017/results?authSource=admin'
mongodb_backend_settings = {'password': 'settingsS3cret'}
`)
	s := mustResolve(t, "--config", cfg)
	reg := tasks.NewRegistry()
	require.NoError(t, tasks.RegisterBuiltins(reg))
	var buf bytes.Buffer
	printBanner(&buf, s, reg)
	out := buf.String()
	for _, secret := range []string{"br0kerS3cret", "m0ng0S3cret", "settingsS3cret"} {
		assert.NotContains(t, out, secret)
	}
	assert.Contains(t, out, "h1")
	assert.Contains(t, out, "h2")
	assert.Contains(t, out, "mhost")
	assert.Contains(t, out, s.nodeName)
	assert.Contains(t, out, tasks.AddName)
}

func TestBadBrokerURLErrorHidesPassword(t *testing.T) {
	isolate(t)
	code, _, stderr := capture(t, "-b", "amqp://rabbit:br0kerS3cret@h1:notaport//")
	assert.Equal(t, exitConfig, code)
	assert.NotContains(t, stderr, "br0kerS3cret")
}

func TestMaxPriorityOnEveryQueue(t *testing.T) {
	dir := isolate(t)
	cfg := writeFile(t, dir, "celeryconfig.py", `
task_queue_max_priority = 10
task_queues = [{'name': 'listed', 'exchange': 'ex', 'routing_key': 'rk', 'exchange_type': 'topic'},
               {'name': 'own', 'queue_arguments': {'x-max-priority': 5, 'x-queue-type': 'classic'}}]
`)
	s := mustResolve(t, "--config", cfg, "-Q", "listed,own,missing")
	require.Len(t, s.queues, 3)
	want := map[string]int32{"listed": 10, "own": 5, "missing": 10}
	for _, q := range s.queues {
		v, ok := q.Args["x-max-priority"]
		require.True(t, ok, "queue %s has no x-max-priority", q.Name)
		assert.IsType(t, int32(0), v, "queue %s: py-amqp sends a small int as signed 32-bit", q.Name)
		assert.Equal(t, want[q.Name], v, q.Name)
	}
	assert.Equal(t, prefetch.CeleryQueue("missing", 10), s.queues[2])
	assert.Equal(t, amqp.Table{"x-max-priority": int32(5), "x-queue-type": "classic"}, s.queues[1].Args)

	// Without -Q every task_queues entry is consumed, each with the priority.
	s = mustResolve(t, "--config", cfg)
	require.Len(t, s.queues, 2)

	// And the default queue gets it when there is no task_queues.
	cfg2 := writeFile(t, dir, "prio_only.py", "task_queue_max_priority = 10\n")
	s = mustResolve(t, "--config", cfg2)
	require.Len(t, s.queues, 1)
	assert.Equal(t, amqp.Table{"x-max-priority": int32(10)}, s.queues[0].Args)
}

func TestTaskQueuesEntryUsedWhenNamed(t *testing.T) {
	dir := isolate(t)
	cfg := writeFile(t, dir, "celeryconfig.py", `
task_queues = [{'name': 'remote', 'exchange': 'jobs', 'routing_key': 'jobs.remote', 'exchange_type': 'topic', 'durable': False},
               {'name': 'other'}]
`)
	s := mustResolve(t, "--config", cfg, "-Q", "remote")
	require.Len(t, s.queues, 1)
	assert.Equal(t, prefetch.Queue{Name: "remote", Exchange: "jobs", ExchangeType: "topic", RoutingKey: "jobs.remote", Durable: false}, s.queues[0])

	s = mustResolve(t, "--config", cfg, "-Q", "other,fresh")
	require.Len(t, s.queues, 2)
	assert.Equal(t, prefetch.Queue{Name: "other", Exchange: "other", ExchangeType: "direct", RoutingKey: "other", Durable: true}, s.queues[0])
	assert.Equal(t, prefetch.CeleryQueue("fresh", 0), s.queues[1])
}

func TestMissingQueueRefusedWhenCreationDisabled(t *testing.T) {
	dir := isolate(t)
	cfg := writeFile(t, dir, "celeryconfig.py", "task_create_missing_queues = False\ntask_queues = [{'name': 'known'}]\n")
	_, err := resolveArgs(t, "--config", cfg, "-Q", "unknown")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "unknown")
	mustResolve(t, "--config", cfg, "-Q", "known")
}

func TestPrefetchCappedAt16Bits(t *testing.T) {
	isolate(t)
	s := mustResolve(t, "-c", "20000", "--prefetch-multiplier", "4")
	assert.Equal(t, 65535, s.prefetch)
}

func TestMainRegistersTheBinarysOwnTasks(t *testing.T) {
	t.Chdir(t.TempDir())
	registered := false
	code := Main([]string{"-b", "amqp://guest:guest@127.0.0.1:1//", "-P", "bogus"}, func(reg *tasks.Registry) error {
		registered = true
		return nil
	})
	require.Equal(t, exitConfig, code)
	require.False(t, registered, "flags are checked before any handler is registered")

	// With its own tasks a binary has no built-ins unless asked for: then the name clashes.
	code = Main([]string{"-b", "amqp://guest:guest@127.0.0.1:1//", "--result-backend", "", "--builtin-tasks"}, func(reg *tasks.Registry) error {
		registered = true
		return reg.Register(tasks.AddName, tasks.Add)
	})
	require.True(t, registered)
	require.Equal(t, exitConfig, code)
}

func TestDefaultConcurrencyFollowsSlurm(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	require.Equal(t, 6, defaultConcurrency(env(map[string]string{"SLURM_CPUS_PER_TASK": "6", "SLURM_CPUS_ON_NODE": "32"})))
	require.Equal(t, 32, defaultConcurrency(env(map[string]string{"SLURM_CPUS_ON_NODE": "32"})))
	require.Equal(t, runtime.NumCPU(), defaultConcurrency(env(map[string]string{"SLURM_CPUS_ON_NODE": "x"})))
}

func TestQuorumQueueSettings(t *testing.T) {
	dir := isolate(t)
	cfg := writeFile(t, dir, "celeryconfig.py", `
task_default_queue_type = 'quorum'
task_create_missing_queue_type = 'quorum'
task_create_missing_queue_exchange_type = 'topic'
`)
	s := mustResolve(t, "--config", cfg, "-Q", "celery,extra")
	require.Len(t, s.queues, 2)
	assert.Equal(t, amqp.Table{"x-queue-type": "quorum"}, s.queues[0].Args)
	assert.Equal(t, "direct", s.queues[0].ExchangeType, "the default queue keeps task_default_exchange_type")
	assert.Empty(t, s.queues[0].ArgsSetting, "a default: an existing classic queue is used as it is")
	assert.Equal(t, amqp.Table{"x-queue-type": "quorum"}, s.queues[1].Args)
	assert.Equal(t, "topic", s.queues[1].ExchangeType)
	assert.Empty(t, s.queues[1].ArgsSetting)

	cfg = writeFile(t, dir, "listed.py", `
task_queues = [{'name': 'q', 'exchange': 'qx', 'exchange_type': 'topic', 'queue_arguments': {'x-queue-type': 'quorum'}}]
`)
	s = mustResolve(t, "--config", cfg)
	require.Len(t, s.queues, 1)
	assert.Equal(t, "task_queues", s.queues[0].ArgsSetting, "asked for: a conflict is an error")
}
