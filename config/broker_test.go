package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseBrokerURL(t *testing.T) {
	cases := []struct {
		in   string
		want BrokerURL
	}{
		{"amqp://guest:guest@localhost:5672//", BrokerURL{Scheme: "amqp", Host: "localhost", Port: 5672, User: "guest", Password: "guest", VHost: "/"}},
		{"amqp://h", BrokerURL{Scheme: "amqp", Host: "h", Port: 5672, User: "guest", Password: "guest", VHost: "/"}},
		{"amqp://h/", BrokerURL{Scheme: "amqp", Host: "h", Port: 5672, User: "guest", Password: "guest", VHost: "/"}},
		{"amqp://u:p@H.Example:1234/prod", BrokerURL{Scheme: "amqp", Host: "h.example", Port: 1234, User: "u", Password: "p", VHost: "prod"}},
		{"amqp://h/%2Fprod%2Fa", BrokerURL{Scheme: "amqp", Host: "h", Port: 5672, User: "guest", Password: "guest", VHost: "/prod/a"}},
		{"amqp://h/a/b", BrokerURL{Scheme: "amqp", Host: "h", Port: 5672, User: "guest", Password: "guest", VHost: "a/b"}},
		{"pyamqp://u@h", BrokerURL{Scheme: "amqp", Host: "h", Port: 5672, User: "u", Password: "guest", VHost: "/"}},
		{"librabbitmq://h//", BrokerURL{Scheme: "amqp", Host: "h", Port: 5672, User: "guest", Password: "guest", VHost: "/"}},
		{"amqps://h", BrokerURL{Scheme: "amqps", TLS: true, Host: "h", Port: 5671, User: "guest", Password: "guest", VHost: "/"}},
		{"pyamqps://u:p%40ss%3A@h/v", BrokerURL{Scheme: "amqps", TLS: true, Host: "h", Port: 5671, User: "u", Password: "p@ss:", VHost: "v"}},
		{"amqp://u:p@ss@h/v", BrokerURL{Scheme: "amqp", Host: "h", Port: 5672, User: "u", Password: "p@ss", VHost: "v"}},
		{"amqp://[::1]:5673/v", BrokerURL{Scheme: "amqp", Host: "::1", Port: 5673, User: "guest", Password: "guest", VHost: "v"}},
		{"amqp://h/v%zz", BrokerURL{Scheme: "amqp", Host: "h", Port: 5672, User: "guest", Password: "guest", VHost: "v%zz"}},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseBrokerURL(tc.in)
			require.NoError(t, err)
			got.Query = nil
			assert.Equal(t, tc.want, got)

			// amqp091 must read the same thing back.
			uri, err := amqp.ParseURI(got.AMQPURI())
			require.NoError(t, err, got.AMQPURI())
			assert.Equal(t, tc.want.Host, uri.Host)
			assert.Equal(t, tc.want.Port, uri.Port)
			assert.Equal(t, tc.want.User, uri.Username)
			assert.Equal(t, tc.want.Password, uri.Password)
			assert.Equal(t, tc.want.VHost, uri.Vhost)
			assert.Equal(t, tc.want.Scheme, uri.Scheme)
			assert.NotContains(t, got.Redacted(), tc.want.Password+"@")
		})
	}
	u, err := ParseBrokerURL("amqp://h/v?heartbeat=30")
	require.NoError(t, err)
	assert.Equal(t, "30", u.Query.Get("heartbeat"))
}

func TestParseBrokerURLErrors(t *testing.T) {
	for _, in := range []string{"localhost:5672", "redis://h", "amqp://h:99999/", "amqp://h:x/", "amqp://[::1/", "amqp://h/?%zz"} {
		_, err := ParseBrokerURL(in)
		assert.ErrorIs(t, err, ErrBrokerURL, in)
	}
	_, err := ParseBrokerURL("redis://:secret@h")
	assert.NotContains(t, err.Error(), "secret")
}

func TestBrokerURLRedacted(t *testing.T) {
	u, err := ParseBrokerURL("amqp://user:pa%2Fss@h:5671/cybercom")
	require.NoError(t, err)
	assert.Equal(t, "amqp://user:****@h:5671/cybercom", u.Redacted())
	assert.Equal(t, "amqp://user:pa%2Fss@h:5671/cybercom", u.AMQPURI())
	u, _ = ParseBrokerURL("amqp://h//")
	assert.Equal(t, "amqp://guest:****@h:5672/%2F", u.Redacted())
	assert.Equal(t, "amqp://guest:guest@h:5672/%2F", u.AMQPURI())
}

func TestSplitBrokerURLs(t *testing.T) {
	assert.Equal(t, []string{"amqp://a//", "amqp://b//"}, SplitBrokerURLs(" amqp://a//; amqp://b//;"))
	assert.Nil(t, SplitBrokerURLs(" ; "))
}

// pki is a throwaway CA with a server and a client certificate.
type pki struct {
	dir                 string
	caFile, otherCAFile string
	certFile, keyFile   string
	comboFile           string
	serverCert          tls.Certificate
	caPool              *x509.CertPool
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	dir := t.TempDir()
	p := &pki{dir: dir}
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		return k
	}
	serial := int64(1)
	mk := func(tmpl *x509.Certificate, parent *x509.Certificate, pub any, signer *ecdsa.PrivateKey) (*x509.Certificate, []byte) {
		serial++
		tmpl.SerialNumber = big.NewInt(serial)
		tmpl.NotBefore = time.Now().Add(-time.Hour)
		tmpl.NotAfter = time.Now().Add(time.Hour)
		if parent == nil {
			parent = tmpl
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
		require.NoError(t, err)
		c, err := x509.ParseCertificate(der)
		require.NoError(t, err)
		return c, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	keyPEM := func(k *ecdsa.PrivateKey) []byte {
		der, err := x509.MarshalECPrivateKey(k)
		require.NoError(t, err)
		return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	}
	write := func(name string, data ...[]byte) string {
		path := filepath.Join(dir, name)
		var all []byte
		for _, d := range data {
			all = append(all, d...)
		}
		require.NoError(t, os.WriteFile(path, all, 0o600))
		return path
	}
	caTmpl := func(cn string) *x509.Certificate {
		return &x509.Certificate{Subject: pkix.Name{CommonName: cn}, IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	}
	caKey := newKey()
	ca, caPEM := mk(caTmpl("test CA"), nil, &caKey.PublicKey, caKey)
	otherKey := newKey()
	_, otherPEM := mk(caTmpl("other CA"), nil, &otherKey.PublicKey, otherKey)
	p.caFile, p.otherCAFile = write("ca.pem", caPEM), write("other.pem", otherPEM)
	p.caPool = x509.NewCertPool()
	p.caPool.AddCert(ca)

	srvKey := newKey()
	_, srvPEM := mk(&x509.Certificate{Subject: pkix.Name{CommonName: "rabbit"}, DNSNames: []string{"rabbit.example"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}, ca, &srvKey.PublicKey, caKey)
	var err error
	p.serverCert, err = tls.X509KeyPair(srvPEM, keyPEM(srvKey))
	require.NoError(t, err)

	cliKey := newKey()
	_, cliPEM := mk(&x509.Certificate{Subject: pkix.Name{CommonName: "worker"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}, ca, &cliKey.PublicKey, caKey)
	p.certFile, p.keyFile = write("cert.pem", cliPEM), write("key.pem", keyPEM(cliKey))
	p.comboFile = write("combo.pem", cliPEM, keyPEM(cliKey))
	return p
}

// handshake runs a TLS handshake over loopback and returns the client
// certificates the server saw and the client's error.
func (p *pki) handshake(t *testing.T, client *tls.Config) ([]*x509.Certificate, error) {
	t.Helper()
	// Loopback TCP rather than net.Pipe: a pipe has no buffer, and a
	// failed handshake can leave both sides blocked writing.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	done := make(chan []*x509.Certificate, 1)
	go func() {
		c2, err := ln.Accept()
		if err != nil {
			done <- nil
			return
		}
		defer c2.Close()
		_ = c2.SetDeadline(time.Now().Add(10 * time.Second))
		srv := tls.Server(c2, &tls.Config{Certificates: []tls.Certificate{p.serverCert}, ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: p.caPool})
		if err := srv.Handshake(); err != nil {
			done <- nil
			return
		}
		done <- srv.ConnectionState().PeerCertificates
	}()
	c1, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	_ = c1.SetDeadline(time.Now().Add(10 * time.Second))
	cli := tls.Client(c1, client)
	err = cli.Handshake()
	if err == nil {
		// TLS 1.3: the server verifies the client certificate after the
		// client's handshake returns; a read makes the client wait for it.
		_ = cli.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		_, _ = cli.Read(make([]byte, 1))
	}
	c1.Close()
	return <-done, err
}

func TestBrokerTLSConfigHandshake(t *testing.T) {
	p := newPKI(t)

	cfg, err := BrokerTLSConfig(map[string]any{"ca_certs": p.caFile, "cert_reqs": int64(2)}, "10.0.0.1")
	require.NoError(t, err)
	peers, herr := p.handshake(t, cfg)
	assert.NoError(t, herr, "good CA, no hostname check")
	assert.Empty(t, peers)

	cfg, err = BrokerTLSConfig(map[string]any{"ca_certs": p.otherCAFile}, "rabbit.example")
	require.NoError(t, err)
	_, herr = p.handshake(t, cfg)
	assert.Error(t, herr, "wrong CA")

	cfg, err = BrokerTLSConfig(map[string]any{"ca_certs": p.caFile, "server_hostname": "other.example"}, "rabbit.example")
	require.NoError(t, err)
	_, herr = p.handshake(t, cfg)
	assert.Error(t, herr, "hostname mismatch with server_hostname")

	cfg, err = BrokerTLSConfig(map[string]any{"ca_certs": p.caFile, "server_hostname": "rabbit.example"}, "x")
	require.NoError(t, err)
	_, herr = p.handshake(t, cfg)
	assert.NoError(t, herr, "matching server_hostname")

	cfg, err = BrokerTLSConfig(map[string]any{"ca_certs": p.caFile, "server_hostname": nil}, "wrong.example")
	require.NoError(t, err)
	assert.Equal(t, "wrong.example", cfg.ServerName, "None takes the URL host")
	_, herr = p.handshake(t, cfg)
	assert.Error(t, herr)

	cfg, err = BrokerTLSConfig(map[string]any{"ca_certs": p.caFile, "certfile": p.certFile, "keyfile": p.keyFile, "cert_reqs": int64(CertRequired)}, "h")
	require.NoError(t, err)
	peers, herr = p.handshake(t, cfg)
	require.NoError(t, herr)
	require.Len(t, peers, 1, "client certificate presented")
	assert.Equal(t, "worker", peers[0].Subject.CommonName)

	cfg, err = BrokerTLSConfig(map[string]any{"ca_certs": p.caFile, "certfile": p.comboFile}, "h")
	require.NoError(t, err)
	peers, herr = p.handshake(t, cfg)
	require.NoError(t, herr)
	assert.Len(t, peers, 1, "key read from certfile")

	cfg, err = BrokerTLSConfig(map[string]any{"cert_reqs": int64(CertNone)}, "h")
	require.NoError(t, err)
	_, herr = p.handshake(t, cfg)
	assert.NoError(t, herr, "CERT_NONE accepts an unknown CA")

	// True: system roots, which do not contain the test CA.
	cfg, err = BrokerTLSConfig(true, "rabbit.example")
	require.NoError(t, err)
	assert.Empty(t, cfg.ServerName)
	_, herr = p.handshake(t, cfg)
	assert.Error(t, herr)
}

func TestBrokerTLSConfigValues(t *testing.T) {
	p := newPKI(t)
	for _, v := range []any{nil, false} {
		cfg, err := BrokerTLSConfig(v, "h")
		assert.NoError(t, err)
		assert.Nil(t, cfg)
	}
	bad := []struct {
		v    any
		want string
	}{
		{"yes", "want True, False or a dict"},
		{map[string]any{"ca_certs": "/nonexistent/ca.pem"}, "ca_certs"},
		{map[string]any{"ca_certs": p.keyFile}, "no PEM certificates"},
		{map[string]any{"certfile": "/nonexistent/cert.pem"}, "certfile"},
		{map[string]any{"certfile": p.certFile, "keyfile": "/nonexistent/key.pem"}, "keyfile"},
		{map[string]any{"certfile": p.certFile}, "certfile"},
		{map[string]any{"keyfile": p.keyFile}, "without certfile"},
		{map[string]any{"cert_reqs": int64(7)}, "cert_reqs"},
		{map[string]any{"cert_reqs": "CERT_NONE"}, "cert_reqs"},
		{map[string]any{"cert_reqs": int64(0), "server_hostname": "h"}, "CERT_NONE"},
		{map[string]any{"bogus": 1}, "bogus"},
		{map[string]any{"ca_certs": int64(1)}, "ca_certs must be a string"},
		{map[string]any{"server_hostname": int64(1)}, "server_hostname"},
	}
	for _, tc := range bad {
		_, err := BrokerTLSConfig(tc.v, "h")
		require.ErrorIs(t, err, ErrBrokerTLS, "%v", tc.v)
		assert.Contains(t, err.Error(), tc.want)
	}
	cfg, err := BrokerTLSConfig(map[string]any{"ssl_version": int64(2), "ciphers": "HIGH"}, "h")
	require.NoError(t, err)
	assert.NotNil(t, cfg.VerifyConnection)
	assert.Error(t, cfg.VerifyConnection(tls.ConnectionState{}))
}
