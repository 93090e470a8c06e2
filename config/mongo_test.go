package config

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

func TestParseMongoBackend(t *testing.T) {
	p := newPKI(t)
	cases := []struct {
		url      string
		settings map[string]any
		uri, db  string
		coll     string
	}{
		{"mongodb://", nil, "mongodb://localhost/", "celery", "celery_taskmeta"},
		{"", nil, "mongodb://localhost/", "celery", "celery_taskmeta"},
		{"mongodb://h1:27017,h2:27018/mydb?replicaSet=rs0", nil, "mongodb://h1:27017,h2:27018/?replicaSet=rs0", "mydb", "celery_taskmeta"},
		{"mongodb://u:p%40ss@h/mydb", nil, "mongodb://u:p%40ss@h/?authSource=admin", "mydb", "celery_taskmeta"},
		{"mongodb://u:p@h/?authSource=other", nil, "mongodb://u:p@h/?authSource=other", "celery", "celery_taskmeta"},
		{"mongodb://u@h/?authMechanism=MONGODB-X509&tls=true", nil, "mongodb://u@h/?authMechanism=MONGODB-X509&tls=true", "celery", "celery_taskmeta"},
		{"srv://cluster.example.com/db", nil, "mongodb+srv://cluster.example.com/", "db", "celery_taskmeta"},
		{"mongodb+srv://cluster.example.com", nil, "mongodb+srv://cluster.example.com/", "celery", "celery_taskmeta"},
		{"mongodb://h/urldb", map[string]any{"database": "cybercom", "taskmeta_collection": "tombstone", "groupmeta_collection": "g"}, "mongodb://h/", "cybercom", "tombstone"},
		{"mongodb://h/", map[string]any{"host": "other", "port": int64(27018), "user": "u", "password": "p:w", "options": map[string]any{"maxPoolSize": int64(5)}, "w": int64(1)},
			"mongodb://u:p%3Aw@other:27018/?authSource=admin&maxPoolSize=5&w=1", "celery", "celery_taskmeta"},
		{"mongodb://h/", map[string]any{"mongo_host": []any{"a:1", "b:2"}}, "mongodb://a:1,b:2/", "celery", "celery_taskmeta"},
		{"mongodb://h/?ssl=true&ssl_ca_certs=" + p.caFile + "&ssl_certfile=" + p.certFile + "&ssl_keyfile=" + p.keyFile, nil,
			"mongodb://h/?tls=true&tlsCAFile=" + qe(p.caFile) + "&tlsCertificateFile=" + qe(p.certFile) + "&tlsPrivateKeyFile=" + qe(p.keyFile), "celery", "celery_taskmeta"},
		{"mongodb://h/?ssl_certfile=" + p.comboFile, nil, "mongodb://h/?tlsCertificateKeyFile=" + qe(p.comboFile), "celery", "celery_taskmeta"},
		{"mongodb://h/?ssl=true&ssl_cert_reqs=CERT_NONE", nil, "mongodb://h/?tls=true&tlsInsecure=true", "celery", "celery_taskmeta"},
		{"mongodb://h/", map[string]any{"ssl": true, "ssl_cert_reqs": int64(0)}, "mongodb://h/?tls=true&tlsInsecure=true", "celery", "celery_taskmeta"},
		{"mongodb://h/?tlsAllowInvalidCertificates=true&tlsAllowInvalidHostnames=true", nil, "mongodb://h/?tls=true&tlsInsecure=true", "celery", "celery_taskmeta"},
		{"mongodb://h/?ssl=true;connectTimeoutMS=100", nil, "mongodb://h/?connectTimeoutMS=100&tls=true", "celery", "celery_taskmeta"},
	}
	for _, tc := range cases {
		t.Run(tc.url, func(t *testing.T) {
			m, err := ParseMongoBackend(tc.url, tc.settings)
			require.NoError(t, err)
			assert.Equal(t, tc.uri, m.URI)
			assert.Equal(t, tc.db, m.Database)
			assert.Equal(t, tc.coll, m.Collection)
			if srvScheme := m.URI[:len("mongodb+srv")] == "mongodb+srv"; !srvScheme {
				assert.NoError(t, options.Client().ApplyURI(m.URI).Validate())
			}
		})
	}
	m, err := ParseMongoBackend("mongodb://u:secret@h/?connect=false&bogus=1", nil)
	require.NoError(t, err)
	assert.Equal(t, []string{"bogus: not a MongoDB Go driver option", "connect: pymongo-only (lazy connect)"}, m.Dropped)
	assert.Equal(t, "mongodb://u:****@h/?authSource=admin", m.Redacted())
}

func qe(s string) string {
	out := ""
	for _, c := range []byte(s) {
		if c == '/' {
			out += "%2F"
		} else {
			out += string(c)
		}
	}
	return out
}

func TestParseMongoBackendErrors(t *testing.T) {
	p := newPKI(t)
	bad := []struct {
		url      string
		settings map[string]any
		want     string
	}{
		{"localhost:27017", nil, "no scheme"},
		{"redis://h", nil, "scheme"},
		{"mongodb://u:p:q@h/", nil, "unescaped ':'"},
		{"mongodb://u:%zz@h/", nil, "escape"},
		{"mongodb://h/bad.db", nil, "database name"},
		{"mongodb://h:99999/", nil, "port"},
		{"mongodb://h/?ssl=true&tls=false", nil, "disagree"},
		{"mongodb://h/?tls=maybe", nil, "true or false"},
		{"mongodb://h/?maxPoolSize=-1", nil, "non-negative"},
		{"mongodb://h/?tlsCAFile=/nonexistent/ca.pem", nil, "tlsCAFile"},
		{"mongodb://h/?ssl_keyfile=" + p.keyFile, nil, "without ssl_certfile"},
		{"mongodb://h/?ssl_match_hostname=false", nil, "hostname check"},
		{"mongodb://h/?tlsAllowInvalidHostnames=true", nil, "hostname check"},
		{"mongodb://h/?ssl_cert_reqs=MAYBE", nil, "ssl_cert_reqs"},
		{"mongodb://a,b/?directConnection=true", nil, "directConnection"},
		{"mongodb+srv://a:27017/", nil, "port"},
		{"mongodb+srv://a,b/", nil, "exactly one host"},
		{"mongodb://a,b/?loadBalanced=true", nil, "loadBalanced"},
		{"mongodb://h/?opt", nil, "no value"},
		{"mongodb://:p@h/", nil, "without a user"},
		{"mongodb://h/", map[string]any{"port": "x"}, "port"},
		{"mongodb://h/", map[string]any{"port": int64(0)}, "out of range"},
		{"mongodb://h/", map[string]any{"host": "mongodb://x"}, "URI"},
		{"mongodb://h/", map[string]any{"user": int64(1)}, "must be a string"},
		{"mongodb://h/", map[string]any{"options": "x"}, "must be a dict"},
		{"mongodb://h/", map[string]any{"mongo_host": int64(1)}, "mongo_host"},
		{"mongodb://h/", map[string]any{"taskmeta_collection": "a$b"}, "taskmeta_collection"},
		{"mongodb://h/", map[string]any{"compressors": []any{int64(1)}}, "strings"},
	}
	for _, tc := range bad {
		_, err := ParseMongoBackend(tc.url, tc.settings)
		require.ErrorIs(t, err, ErrMongoURL, tc.url)
		assert.Contains(t, err.Error(), tc.want, tc.url)
	}
}
