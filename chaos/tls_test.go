package chaos

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/ccworker/ccworker/internal/taskload"
	"github.com/ccworker/ccworker/internal/testharness"
	"github.com/ccworker/ccworker/protocol"
)

// TLS end to end (issue #7, part 2): the private RabbitMQ listens with TLS on 5681 and
// requires a client certificate (verify_peer, fail_if_no_peer_cert); the TLS FerretDB on
// 27031 requires one too (--listen-tls-ca-file makes FerretDB RequireAndVerifyClientCert).
// ccworker is configured the way cyberCommons' celeryconfig.py does it: an amqp:// URL plus
// broker_use_ssl, and a mongodb:// result_backend with ssl=true&tlsCAFile&tlsCertificateKeyFile.

const tlsVhost = "chaosvh"

func pemPath(name string) string { return filepath.Join(tlsDir, name) }

type tlsConf struct {
	brokerPort   int
	sslDict      map[string]string // broker_use_ssl entries, Python source
	mongoCA      string            // "" = no result backend
	mongoCertKey string
}

func (c tlsConf) write(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("import ssl\n")
	fmt.Fprintf(&b, "broker_url = 'amqp://chaos:chaospw@localhost:%d/%s'\n", c.brokerPort, tlsVhost)
	b.WriteString("broker_use_ssl = {\n")
	for _, k := range []string{"keyfile", "certfile", "ca_certs", "cert_reqs", "server_hostname"} {
		if v, ok := c.sslDict[k]; ok {
			fmt.Fprintf(&b, "    '%s': %s,\n", k, v)
		}
	}
	b.WriteString("}\n")
	if c.mongoCA != "" {
		u := fmt.Sprintf("mongodb://localhost:%d/chaos_tls?ssl=true&tlsCAFile=%s", mongoTLSPort, c.mongoCA)
		if c.mongoCertKey != "" {
			u += "&tlsCertificateKeyFile=" + c.mongoCertKey
		}
		fmt.Fprintf(&b, "result_backend = '%s'\n", u)
	}
	b.WriteString("broker_connection_timeout = 4\n")
	path := filepath.Join(t.TempDir(), "celeryconfig.py")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func goodSSL() map[string]string {
	return map[string]string{
		"keyfile":         "'" + pemPath("client.key") + "'",
		"certfile":        "'" + pemPath("client.pem") + "'",
		"ca_certs":        "'" + pemPath("ca.pem") + "'",
		"cert_reqs":       "ssl.CERT_REQUIRED",
		"server_hostname": "'localhost'",
	}
}

func clientTLS(t *testing.T) *tls.Config {
	t.Helper()
	ca, err := os.ReadFile(pemPath("ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	cert, err := tls.LoadX509KeyPair(pemPath("client.pem"), pemPath("client.key"))
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, ServerName: "localhost"}
}

func TestTLSEndToEnd(t *testing.T) {
	const queue = "chaos_tls"
	cfg := tlsConf{brokerPort: amqpTLSPort, sslDict: goodSSL(),
		mongoCA: pemPath("ca.pem"), mongoCertKey: pemPath("client-combined.pem")}.write(t)
	w := startWorker(t, "tls-e2e", nil, "--config", cfg, "-Q", queue, "-c", "4", "-n", "tls@chaos", "-l", "INFO")
	if !testharness.WaitFor(90*time.Second, 50*time.Millisecond, func() bool { return strings.Contains(w.Output(), "tls@chaos ready.") || w.Exited() }) || w.Exited() {
		t.Fatalf("ccworker did not get ready over TLS:\n%s", testharness.Tail(w.Output(), 30))
	}

	// Publish over TLS with a client certificate.
	conn, err := amqp.DialTLS(fmt.Sprintf("amqps://chaos:chaospw@localhost:%d/%s", amqpTLSPort, tlsVhost), clientTLS(t))
	if err != nil {
		t.Fatalf("test publisher over TLS: %v", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 1))
	id := fmt.Sprintf("tls-%d", time.Now().UnixNano())
	msg, err := taskload.Publishing(&protocol.Request{ID: id, RootID: id, Task: "ccworker.add", Args: []any{int64(2), int64(3)}, Kwargs: map[string]any{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Publish("", queue, false, false, msg); err != nil {
		t.Fatal(err)
	}
	if c := <-confirms; !c.Ack {
		t.Fatal("publish nacked")
	}

	// Read the result back over TLS (client certificate too).
	uri := fmt.Sprintf("mongodb://localhost:%d/?tls=true&tlsCAFile=%s&tlsCertificateKeyFile=%s", mongoTLSPort,
		pemPath("ca.pem"), pemPath("client-combined.pem"))
	client, err := mongo.Connect(options.Client().ApplyURI(uri).SetTimeout(5 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := ctxTimeout(5 * time.Second)
		defer cancel()
		_ = client.Disconnect(ctx)
	}()
	coll := client.Database("chaos_tls").Collection("celery_taskmeta")
	var got struct {
		Status string `bson:"status"`
		Result string `bson:"result"`
	}
	var lastErr error
	if !testharness.WaitFor(60*time.Second, 100*time.Millisecond, func() bool {
		ctx, cancel := ctxTimeout(3 * time.Second)
		defer cancel()
		lastErr = coll.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&got)
		return lastErr == nil
	}) {
		t.Fatalf("no result for %s over TLS: %v\n%s", id, lastErr, testharness.Tail(w.Output(), 30))
	}
	if got.Status != "SUCCESS" || strings.TrimSpace(got.Result) != "5" {
		t.Errorf("result: %+v, want SUCCESS 5", got)
	}
	t.Logf("ccworker.add(2, 3) over TLS broker + TLS result store: %s %s", got.Status, got.Result)
	_ = w.Cmd.Process.Signal(syscall.SIGTERM)
	if code, ok := w.Wait(90 * time.Second); !ok || code != 0 {
		t.Errorf("SIGTERM: exit %d (exited %v)\n%s", code, ok, testharness.Tail(w.Output(), 15))
	}
}

// fakeTLSBroker accepts TLS connections with the given certificate (requiring a client
// certificate from the test CA) and closes them after the handshake: enough for a client
// to judge the server's certificate.
func fakeTLSBroker(t *testing.T, certName string) int {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(pemPath(certName+".pem"), pemPath(certName+".key"))
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := os.ReadFile(pemPath("ca.pem"))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				_ = c.(*tls.Conn).Handshake()
				time.Sleep(100 * time.Millisecond)
				_ = c.Close()
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestTLSFailures: each misconfiguration must end ccworker with one clear error naming the
// cause and exit code 2 (prefetch.ErrPermanent / a usage error), within seconds: no retry storm.
func TestTLSFailures(t *testing.T) {
	with := func(changes map[string]string) map[string]string {
		d := goodSSL()
		for k, v := range changes {
			if v == "" {
				delete(d, k)
			} else {
				d[k] = v
			}
		}
		return d
	}
	cases := []struct {
		name  string
		conf  func(t *testing.T) tlsConf
		cause *regexp.Regexp // what the log must name
	}{
		{"broker-wrong-CA", func(t *testing.T) tlsConf {
			return tlsConf{brokerPort: amqpTLSPort, sslDict: with(map[string]string{"ca_certs": "'" + pemPath("other-ca.pem") + "'"})}
		}, regexp.MustCompile(`(?i)unknown authority`)},
		{"broker-missing-client-cert", func(t *testing.T) tlsConf {
			return tlsConf{brokerPort: amqpTLSPort, sslDict: with(map[string]string{"keyfile": "", "certfile": ""})}
		}, regexp.MustCompile(`(?i)certificate required|certificate_required|client certificate`)},
		{"broker-expired-client-cert", func(t *testing.T) tlsConf {
			return tlsConf{brokerPort: amqpTLSPort, sslDict: with(map[string]string{
				"keyfile": "'" + pemPath("client-expired.key") + "'", "certfile": "'" + pemPath("client-expired.pem") + "'"})}
		}, regexp.MustCompile(`(?i)expired`)},
		{"broker-expired-server-cert", func(t *testing.T) tlsConf {
			return tlsConf{brokerPort: fakeTLSBroker(t, "server-expired"), sslDict: goodSSL()}
		}, regexp.MustCompile(`(?i)expired`)},
		{"broker-name-mismatch", func(t *testing.T) tlsConf {
			return tlsConf{brokerPort: amqpTLSPort, sslDict: with(map[string]string{"server_hostname": "'wrong.chaos.example'"})}
		}, regexp.MustCompile(`wrong\.chaos\.example`)},
		{"mongo-wrong-CA", func(t *testing.T) tlsConf {
			return tlsConf{brokerPort: amqpTLSPort, sslDict: goodSSL(), mongoCA: pemPath("other-ca.pem"), mongoCertKey: pemPath("client-combined.pem")}
		}, regexp.MustCompile(`(?i)unknown authority`)},
		{"mongo-missing-client-cert", func(t *testing.T) tlsConf {
			return tlsConf{brokerPort: amqpTLSPort, sslDict: goodSSL(), mongoCA: pemPath("ca.pem")}
		}, regexp.MustCompile(`(?i)certificate required|certificate_required|client certificate`)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			cfg := c.conf(t).write(t)
			start := time.Now()
			w := startWorker(t, "tls-"+c.name, nil, "--config", cfg, "-Q", "chaos_tls_fail", "-c", "2",
				"-n", "tlsfail@chaos", "-l", "INFO", "--without-heartbeat")
			code, exited := w.Wait(75 * time.Second)
			took := time.Since(start)
			out := w.Output()
			if !exited {
				_ = w.Cmd.Process.Kill()
				_, _ = w.Wait(15 * time.Second)
				out = w.Output()
			}
			var warnLines, causeLines int
			for _, line := range strings.Split(out, "\n") {
				if strings.Contains(line, "WARNING/") || strings.Contains(line, "ERROR/") || strings.HasPrefix(line, "ccworker:") || strings.HasPrefix(line, "Error") {
					warnLines++
				}
				if c.cause.MatchString(line) {
					causeLines++
				}
			}
			t.Logf("%s: exited=%v code=%d after %.1f s; %d warn/error lines, %d naming the cause; last lines:\n%s",
				c.name, exited, code, took.Seconds(), warnLines, causeLines, taskload.Trunc(testharness.Tail(out, 4), 1200))
			addTLSSummary(tlsRow{c.name, exited, code, took.Seconds(), warnLines, causeLines})
			if !exited {
				t.Errorf("%s: still running after 25 s (retrying a failure no retry can fix): %d warn/error lines", c.name, warnLines)
				return
			}
			if code != 2 {
				t.Errorf("%s: exit code %d, want 2", c.name, code)
			}
			if causeLines == 0 {
				t.Errorf("%s: the log does not name the cause (want %s)", c.name, c.cause)
			}
			// One clear error, not a retry loop (a loop is caught above: still running after
			// 25 s). The broker may reset a connection before its TLS alert arrives, and a
			// reset is worth a retry on each of the worker's connections before the alert
			// names the cause: 2 lines usually, 4 and 5 seen (5 on a quiet machine).
			if warnLines > 8 {
				t.Errorf("%s: %d warn/error lines before exiting (want one clear error)", c.name, warnLines)
			}
		})
	}
}

type tlsRow struct {
	name       string
	exited     bool
	code       int
	seconds    float64
	warnLines  int
	causeLines int
}

var tlsRows []tlsRow

func addTLSSummary(r tlsRow) {
	summaryMu.Lock()
	defer summaryMu.Unlock()
	tlsRows = append(tlsRows, r)
}
