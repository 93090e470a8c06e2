package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

func TestLoadDefaults(t *testing.T) {
	c, err := Load("", nil)
	require.NoError(t, err)
	assert.Equal(t, []string{DefaultBrokerURL}, c.BrokerURLs)
	assert.Equal(t, 120*time.Second, c.BrokerHeartbeat)
	assert.Equal(t, 4*time.Second, c.BrokerConnectionTimeout)
	assert.True(t, c.BrokerConnectionRetry)
	assert.Equal(t, 100, c.BrokerConnectionMaxRetries)
	assert.Equal(t, "round-robin", c.BrokerFailoverStrategy)
	assert.Equal(t, []string{"json"}, c.AcceptContent)
	assert.Nil(t, c.TaskAcksLate)
	assert.True(t, c.TaskAcksOnFailureOrTimeout)
	assert.Equal(t, "celery", c.TaskDefaultQueue)
	assert.Equal(t, "celery", c.TaskDefaultExchange)
	assert.Equal(t, "direct", c.TaskDefaultExchangeType)
	assert.Equal(t, "celery", c.TaskDefaultRoutingKey)
	assert.True(t, c.TaskCreateMissingQueues)
	assert.Equal(t, 4, c.WorkerPrefetchMultiplier)
	assert.True(t, c.WorkerEnableRemoteControl)
	assert.Equal(t, 24*time.Hour, c.ResultExpires)
	assert.Equal(t, 256, c.ResultBatchSize)
	assert.Equal(t, 5*time.Millisecond, c.ResultFlushInterval)
	assert.Empty(t, c.ResultBackend)
	assert.Nil(t, c.Ignored)

	c, err = Load("", mapEnv(map[string]string{EnvBrokerURL: "amqp://a//;amqp://b//", EnvResultBackend: "mongodb://m/"}))
	require.NoError(t, err)
	assert.Equal(t, []string{"amqp://a//", "amqp://b//"}, c.BrokerURLs)
	assert.Equal(t, "mongodb://m/", c.ResultBackend)
}

func mapEnv(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func writeConfig(t *testing.T, src string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "celeryconfig.py")
	require.NoError(t, os.WriteFile(p, []byte(src), 0o600))
	return p
}

func TestLoadCyberCommons(t *testing.T) {
	// The documented config names relative ssl/ paths; run from a copy.
	p := newPKI(t)
	dir := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(dir, "ssl"), 0o700))
	for name, from := range map[string]string{"key.pem": p.keyFile, "cert.pem": p.certFile, "cacert.pem": p.caFile, "mongodb.pem": p.comboFile} {
		b, err := os.ReadFile(from)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, "ssl", name), b, 0o600))
	}
	src, err := os.ReadFile("testdata/cybercommons_celeryconfig.py")
	require.NoError(t, err)
	cfgPath := filepath.Join(dir, "celeryconfig.py")
	require.NoError(t, os.WriteFile(cfgPath, src, 0o600))
	t.Chdir(dir)

	c, err := Load(cfgPath, nil)
	require.NoError(t, err)
	assert.Equal(t, []string{"amqp://ccuser:s3cret@cybercom.example.org:5671/cybercom"}, c.BrokerURLs)
	assert.Equal(t, map[string]any{"keyfile": "ssl/key.pem", "certfile": "ssl/cert.pem", "ca_certs": "ssl/cacert.pem", "cert_reqs": int64(2)}, c.BrokerUseSSL)
	assert.True(t, c.WorkerSendTaskEvents)
	assert.Equal(t, time.Duration(0), c.ResultExpires)
	assert.Equal(t, []string{"json"}, c.AcceptContent)
	assert.Equal(t, []string{"cybercomq", "cybercomq.tasks.tasks"}, c.Imports)
	assert.Empty(t, c.Ignored)

	u, err := ParseBrokerURL(c.BrokerURLs[0])
	require.NoError(t, err)
	assert.False(t, u.TLS)
	assert.Equal(t, "cybercom", u.VHost)
	tc, err := c.BrokerTLS(u)
	require.NoError(t, err)
	require.NotNil(t, tc)
	assert.Len(t, tc.Certificates, 1)

	m, err := c.Mongo()
	require.NoError(t, err)
	assert.Equal(t, "cybercom", m.Database)
	assert.Equal(t, "tombstone", m.Collection)
	assert.Equal(t, "celery_groupmeta", m.GroupCollection)
	assert.Equal(t, "mongodb://mongouser:mongopass@cybercom.example.org:27017/?authSource=admin&tls=true&tlsCAFile=ssl%2Fcacert.pem&tlsCertificateKeyFile=ssl%2Fmongodb.pem", m.URI)
	assert.NotContains(t, m.Redacted(), "mongopass")
	require.NoError(t, options.Client().ApplyURI(m.URI).Validate())
}

func TestLoadLabConfig(t *testing.T) {
	c, err := Load("testdata/lab_celeryconfig.py", mapEnv(map[string]string{"LAB_IGNORE_RESULT": "1"}))
	require.NoError(t, err)
	assert.Equal(t, []string{"amqp://guest:guest@127.0.0.1:5672//"}, c.BrokerURLs)
	assert.Equal(t, "json", c.TaskSerializer)
	assert.Equal(t, []string{"json", "msgpack"}, c.AcceptContent)
	assert.True(t, c.TaskIgnoreResult)
	assert.False(t, c.ResultExtended)
	assert.Equal(t, []string{"worker_hijack_root_logger", "worker_redirect_stdouts"}, c.Ignored)
	m, err := c.Mongo()
	require.NoError(t, err)
	assert.Equal(t, "mongodb://127.0.0.1:27017/", m.URI)
	assert.Equal(t, "cybercom", m.Database)
	assert.Equal(t, "tombstone", m.Collection)
}

func TestLoadAllKeys(t *testing.T) {
	c, err := Load(writeConfig(t, `
broker_url = ['amqp://a//', 'amqps://b/v']
broker_use_ssl = True
broker_heartbeat = 30
broker_connection_timeout = 1.5
broker_connection_retry = False
broker_connection_max_retries = None
broker_failover_strategy = 'shuffle'
result_backend = 'mongodb://m/db'
mongodb_backend_settings = {'taskmeta_collection': 'res'}
result_extended = True
result_accept_content = ['json']
task_serializer = 'msgpack'
task_acks_late = False
task_acks_on_failure_or_timeout = False
task_reject_on_worker_lost = True
task_ignore_result = True
task_store_errors_even_if_ignored = True
task_track_started = True
task_time_limit = 60
task_soft_time_limit = 50.5
task_queue_max_priority = 10
task_default_queue = 'work'
task_default_exchange_type = 'topic'
task_create_missing_queues = False
task_queues = [{'name': 'q1', 'queue_arguments': {'x-max-priority': 10}, 'durable': False}, {'name': 'q2', 'exchange': 'ex', 'routing_key': 'rk', 'exchange_type': 'topic'}]
worker_concurrency = 8
worker_prefetch_multiplier = 1
worker_enable_remote_control = False
enable_utc = False
timezone = 'America/Chicago'
include = 'tasks'
ccworker_task_aliases = {'cybercomq.tasks.tasks.add': 'ccworker.add'}
ccworker_result_batch_size = 10
ccworker_result_flush_interval = 0.2
_private = 1
`), nil)
	require.NoError(t, err)
	assert.Equal(t, []string{"amqp://a//", "amqps://b/v"}, c.BrokerURLs)
	assert.Equal(t, true, c.BrokerUseSSL)
	assert.Equal(t, 30*time.Second, c.BrokerHeartbeat)
	assert.Equal(t, 1500*time.Millisecond, c.BrokerConnectionTimeout)
	assert.False(t, c.BrokerConnectionRetry)
	assert.Equal(t, 0, c.BrokerConnectionMaxRetries)
	assert.Equal(t, "shuffle", c.BrokerFailoverStrategy)
	assert.Equal(t, map[string]any{"taskmeta_collection": "res"}, c.MongoDBBackendSettings)
	assert.True(t, c.ResultExtended)
	assert.Equal(t, []string{"json"}, c.ResultAcceptContent)
	assert.Equal(t, "msgpack", c.TaskSerializer)
	require.NotNil(t, c.TaskAcksLate)
	assert.False(t, *c.TaskAcksLate)
	assert.False(t, c.TaskAcksOnFailureOrTimeout)
	require.NotNil(t, c.TaskRejectOnWorkerLost)
	assert.True(t, *c.TaskRejectOnWorkerLost)
	assert.True(t, c.TaskIgnoreResult && c.TaskStoreErrorsEvenIfIgnored && c.TaskTrackStarted)
	assert.Equal(t, time.Minute, c.TaskTimeLimit)
	assert.Equal(t, 50500*time.Millisecond, c.TaskSoftTimeLimit)
	require.NotNil(t, c.TaskQueueMaxPriority)
	assert.Equal(t, 10, *c.TaskQueueMaxPriority)
	assert.Equal(t, "work", c.TaskDefaultQueue)
	assert.Equal(t, "work", c.TaskDefaultExchange)
	assert.Equal(t, "work", c.TaskDefaultRoutingKey)
	assert.Equal(t, "topic", c.TaskDefaultExchangeType)
	assert.False(t, c.TaskCreateMissingQueues)
	assert.Equal(t, []Queue{
		{Name: "q1", Exchange: "q1", ExchangeType: "direct", RoutingKey: "q1", QueueArguments: map[string]any{"x-max-priority": int64(10)}, Durable: false},
		{Name: "q2", Exchange: "ex", ExchangeType: "topic", RoutingKey: "rk", Durable: true},
	}, c.TaskQueues)
	assert.Equal(t, 8, c.WorkerConcurrency)
	assert.Equal(t, 1, c.WorkerPrefetchMultiplier)
	assert.False(t, c.WorkerEnableRemoteControl)
	assert.False(t, c.EnableUTC)
	assert.Equal(t, "America/Chicago", c.Timezone)
	assert.Equal(t, []string{"tasks"}, c.Include)
	assert.Equal(t, map[string]string{"cybercomq.tasks.tasks.add": "ccworker.add"}, c.TaskAliases)
	assert.Equal(t, 10, c.ResultBatchSize)
	assert.Equal(t, 200*time.Millisecond, c.ResultFlushInterval)
	assert.Empty(t, c.Ignored)

	u, _ := ParseBrokerURL(c.BrokerURLs[1])
	tc, err := c.BrokerTLS(u)
	require.NoError(t, err)
	assert.NotNil(t, tc)
	c.BrokerUseSSL = nil
	u0, _ := ParseBrokerURL(c.BrokerURLs[0])
	tc, err = c.BrokerTLS(u0)
	require.NoError(t, err)
	assert.Nil(t, tc)
	tc, err = c.BrokerTLS(u)
	require.NoError(t, err)
	assert.NotNil(t, tc, "amqps turns TLS on by itself")
}

func TestQueuesCompatDictForm(t *testing.T) {
	c, err := FromValues(map[string]any{"task_queues": map[string]any{"remote": map[string]any{"routing_key": "r"}}}, nil)
	require.NoError(t, err)
	assert.Equal(t, []Queue{{Name: "remote", Exchange: "remote", ExchangeType: "direct", RoutingKey: "r", Durable: true}}, c.TaskQueues)
}

func TestOldSettingNames(t *testing.T) {
	c, err := Load(writeConfig(t, `
BROKER_URL = 'amqp://old//'
CELERY_RESULT_BACKEND = 'mongodb://m/'
CELERY_ACCEPT_CONTENT = ['json']
CELERYD_CONCURRENCY = 3
CELERY_ACKS_LATE = True
CELERY_SEND_EVENTS = True
CELERYD_TASK_TIME_LIMIT = 5
CELERY_TASK_RESULT_EXPIRES = 10
`), nil)
	require.NoError(t, err)
	assert.Equal(t, []string{"amqp://old//"}, c.BrokerURLs)
	assert.Equal(t, "mongodb://m/", c.ResultBackend)
	assert.Equal(t, 3, c.WorkerConcurrency)
	assert.True(t, *c.TaskAcksLate)
	assert.True(t, c.WorkerSendTaskEvents)
	assert.Equal(t, 5*time.Second, c.TaskTimeLimit)
	assert.Equal(t, 10*time.Second, c.ResultExpires)

	// Mixing: minority key without its counterpart is an error.
	_, err = Load(writeConfig(t, "broker_url = 'amqp://a//'\nresult_backend = 'mongodb://m/'\nCELERYD_CONCURRENCY = 2\n"), nil)
	require.ErrorIs(t, err, ErrMixedSettings)
	assert.Contains(t, err.Error(), "CELERYD_CONCURRENCY -> worker_concurrency")

	// Both spellings of one setting are tolerated, as in Celery; the
	// majority style wins.
	c, err = FromValues(map[string]any{"broker_url": "amqp://new//", "worker_concurrency": int64(2), "BROKER_URL": "amqp://old//"}, nil)
	require.NoError(t, err)
	assert.Equal(t, []string{"amqp://new//"}, c.BrokerURLs)
	c, err = FromValues(map[string]any{"BROKER_URL": "amqp://old//", "CELERYD_CONCURRENCY": int64(2), "broker_url": "amqp://new//"}, nil)
	require.NoError(t, err)
	assert.Equal(t, []string{"amqp://old//"}, c.BrokerURLs)
}

func TestLoadErrors(t *testing.T) {
	cases := []struct {
		src  string
		line int
		key  string
		is   error
	}{
		{"a = 1\nbroker_heartbeat = 'x'\n", 2, "broker_heartbeat", ErrWrongType},
		{"task_acks_late = 'yes'", 1, "task_acks_late", ErrWrongType},
		{"worker_concurrency = -1", 1, "worker_concurrency", ErrInvalidValue},
		{"worker_concurrency = 1.5", 1, "worker_concurrency", ErrWrongType},
		{"imports = ['a', 1]", 1, "imports", ErrWrongType},
		{"broker_url = 5", 1, "broker_url", ErrWrongType},
		{"broker_url = 'redis://h'", 1, "broker_url", ErrBrokerURL},
		{"broker_use_ssl = 'yes'", 1, "broker_use_ssl", ErrWrongType},
		{"broker_failover_strategy = 'random'", 1, "broker_failover_strategy", ErrInvalidValue},
		{"broker_failover_strategy = 3", 1, "broker_failover_strategy", ErrWrongType},
		{"broker_use_ssl = {'ca_certs': '/nonexistent.pem'}", 1, "broker_use_ssl", ErrBrokerTLS},
		{"result_serializer = 'pickle'", 1, "result_serializer", ErrUnsupportedSerializer},
		{"task_serializer = 'pickle'", 1, "task_serializer", ErrUnsupportedSerializer},
		{"result_backend = 'redis://h'", 1, "result_backend", ErrMongoURL},
		{"\nresult_backend = 'mongodb://h/bad.db'", 2, "result_backend", ErrMongoURL},
		{"mongodb_backend_settings = []", 1, "mongodb_backend_settings", ErrWrongType},
		{"task_queue_max_priority = 300", 1, "task_queue_max_priority", ErrInvalidValue},
		{"task_queues = ['q']", 1, "task_queues", ErrWrongType},
		{"task_queues = [{'name': 'q', 'bogus': 1}]", 1, "task_queues", ErrInvalidValue},
		{"ccworker_task_aliases = {'a': 1}", 1, "ccworker_task_aliases", ErrWrongType},
		{"ccworker_result_batch_size = 0", 1, "ccworker_result_batch_size", ErrInvalidValue},
		{"ccworker_result_flush_interval = 0", 1, "ccworker_result_flush_interval", ErrInvalidValue},
		{"task_time_limit = 5\ntask_soft_time_limit = 10", 0, "task_soft_time_limit", ErrInvalidValue},
		{"task_time_limit = -5", 1, "task_time_limit", ErrInvalidValue},
	}
	for _, tc := range cases {
		t.Run(tc.src, func(t *testing.T) {
			path := writeConfig(t, tc.src)
			_, err := Load(path, nil)
			var ke *KeyError
			require.ErrorAs(t, err, &ke, "%v", err)
			assert.Equal(t, tc.key, ke.Key)
			if tc.line > 0 {
				assert.Equal(t, tc.line, ke.Line)
				assert.True(t, strings.HasPrefix(err.Error(), path+":"+string(rune('0'+tc.line))+": "+tc.key+": "), err.Error())
			}
			assert.ErrorIs(t, err, tc.is)
		})
	}
	_, err := Load(filepath.Join(t.TempDir(), "missing.py"), nil)
	assert.True(t, errors.Is(err, os.ErrNotExist))
	_, err = Load(writeConfig(t, "x = f()"), nil)
	assert.ErrorIs(t, err, ErrUnsupported)

	_, err = FromValues(map[string]any{"broker_heartbeat": "x"}, nil)
	assert.EqualError(t, err, "broker_heartbeat: config: wrong type: want a number of seconds, got str")
}

func TestValidateAfterOverride(t *testing.T) {
	c := Default()
	require.NoError(t, c.Validate())
	c.BrokerURLs = nil
	assert.ErrorIs(t, c.Validate(), ErrBrokerURL)
	c = Default()
	c.ResultSerializer = "msgpack"
	assert.ErrorIs(t, c.Validate(), ErrUnsupportedSerializer)
	_, err := Default().Mongo()
	assert.ErrorIs(t, err, ErrMongoURL)
}

func TestNodeName(t *testing.T) {
	cases := []struct{ pattern, host, want string }{
		{"", "vm.example.org", "celery@vm.example.org"},
		{"foo", "vm", "celery@foo"},
		{"w1@%h", "vm.example.org", "w1@vm.example.org"},
		{"w1@%n", "vm.example.org", "w1@vm"},
		{"w1@%d", "vm.example.org", "w1@example.org"},
		{"%n-%%", "vm.x", "celery@vm-%"},
		{"w@%i%", "vm", "w@%i%"},
		{"%h", "vm", "celery@vm"},
	}
	for _, tc := range cases {
		assert.Equal(t, tc.want, NodeName(tc.pattern, tc.host), tc.pattern)
	}
}

func TestRedact(t *testing.T) {
	cases := map[string]string{
		"amqp://u:secret@h:5672//":          "amqp://u:****@h:5672//",
		"amqp://u@h//":                      "amqp://u@h//",
		"amqp://h//":                        "amqp://h//",
		"amqp://u:se/cret@h/v":              "amqp://u:****@h/v",
		"amqp://u:p@ss@h/v@x":               "amqp://u:****@h/v@x",
		"amqp://a:s1@h1//;amqp://b:s2@h2//": "amqp://a:****@h1//;amqp://b:****@h2//",
		"mongodb://u:p@h/?tlsCertificateKeyFilePassword=kp": "mongodb://u:****@h/?tlsCertificateKeyFilePassword=****",
		"not a url": "not a url",
	}
	for in, want := range cases {
		assert.Equal(t, want, Redact(in), in)
	}
}

// The settings `inspect conf` reports: Python objects a reply cannot carry become
// strings, helpers and private names are left out.
func TestReportableSettings(t *testing.T) {
	got := reportable(map[string]any{
		"task_queues": []any{pyObject{Type: "kombu.entity.Queue"}}, "os": pyObject{Type: "module", Helper: true},
		"_tmp": int64(1), "broker_url": "amqp://", "d": map[string]any{"q": pyObject{Type: "set"}},
	})
	assert.Equal(t, map[string]any{"task_queues": []any{"<kombu.entity.Queue object>"}, "broker_url": "amqp://",
		"d": map[string]any{"q": "<set object>"}}, got)
}
