package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
)

// DefaultBrokerURL is Celery's effective default broker.
const DefaultBrokerURL = "amqp://guest:guest@localhost:5672//"

// BrokerURL is a broker URL parsed with kombu's rules.
type BrokerURL struct {
	// Scheme is "amqp" or "amqps" (pyamqp/librabbitmq are read as amqp,
	// pyamqps as amqps).
	Scheme string
	// TLS is true for the amqps schemes. broker_use_ssl can turn TLS on for
	// an amqp URL too; see Config.BrokerTLS.
	TLS            bool
	Host           string // lower-cased, as Python's urlparse does; default "localhost"
	Port           int    // default 5672, or 5671 for amqps
	User, Password string // default guest/guest
	// VHost is the path without its leading "/", %-decoded; "/" when the
	// path is empty or just "/".
	VHost string
	// Query holds the URL's query parameters (kombu transport options);
	// ccworker does not interpret them.
	Query url.Values
}

// ParseBrokerURL parses one broker URL the way kombu does
// (kombu.utils.url.url_to_parts): lenient %-decoding, "//" meaning vhost
// "/", and the last "@" separating credentials from the host, so an
// unescaped "@" in a password still works.
func ParseBrokerURL(s string) (BrokerURL, error) {
	s = strings.TrimSpace(s)
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return BrokerURL{}, fmt.Errorf("%w: %q has no scheme (want amqp://...)", ErrBrokerURL, Redact(s))
	}
	u := BrokerURL{User: "guest", Password: "guest", Host: "localhost", VHost: "/"}
	switch strings.ToLower(scheme) {
	case "amqp", "pyamqp", "librabbitmq":
		u.Scheme, u.Port = "amqp", 5672
	case "amqps", "pyamqps":
		u.Scheme, u.Port, u.TLS = "amqps", 5671, true
	default:
		return BrokerURL{}, fmt.Errorf("%w: scheme %q is not supported (ccworker speaks AMQP only: amqp://, amqps://, pyamqp://)", ErrBrokerURL, scheme)
	}
	// urlsplit: the netloc ends at the first '/', '?' or '#'.
	netloc, tail := rest, ""
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		netloc, tail = rest[:i], rest[i:]
	}
	tail, _, _ = strings.Cut(tail, "#")
	path, query, _ := strings.Cut(tail, "?")
	if userinfo, hostport, ok := cutLast(netloc, "@"); ok {
		netloc = hostport
		user, pass, hasPass := strings.Cut(userinfo, ":")
		if user != "" {
			u.User = pyUnquote(user)
		}
		if hasPass && pass != "" {
			u.Password = pyUnquote(pass)
		}
	}
	host, port, err := splitHostPort(netloc)
	if err != nil {
		return BrokerURL{}, fmt.Errorf("%w: %q: %v", ErrBrokerURL, Redact(s), err)
	}
	if host != "" {
		u.Host = strings.ToLower(pyUnquote(host))
	}
	if port != 0 {
		u.Port = port
	}
	path = strings.TrimPrefix(path, "/")
	if v := pyUnquote(path); v != "" {
		u.VHost = v
	}
	if query != "" {
		q, err := url.ParseQuery(query)
		if err != nil {
			return BrokerURL{}, fmt.Errorf("%w: %q: bad query: %v", ErrBrokerURL, Redact(s), err)
		}
		u.Query = q
	}
	return u, nil
}

// cutLast splits s around the last sep.
func cutLast(s, sep string) (before, after string, found bool) {
	if i := strings.LastIndex(s, sep); i >= 0 {
		return s[:i], s[i+len(sep):], true
	}
	return "", s, false
}

// splitHostPort splits "host", "host:port", "[v6]" or "[v6]:port"; port 0
// means absent.
func splitHostPort(hp string) (string, int, error) {
	host, portStr := hp, ""
	if strings.HasPrefix(hp, "[") {
		end := strings.IndexByte(hp, ']')
		if end < 0 {
			return "", 0, errors.New("unclosed '[' in host")
		}
		host = hp[1:end]
		rest := hp[end+1:]
		if rest != "" {
			if rest[0] != ':' {
				return "", 0, fmt.Errorf("unexpected %q after IPv6 address", rest)
			}
			portStr = rest[1:]
		}
	} else if i := strings.LastIndexByte(hp, ':'); i >= 0 {
		host, portStr = hp[:i], hp[i+1:]
	}
	if portStr == "" {
		return host, 0, nil
	}
	p, err := strconv.Atoi(portStr)
	if err != nil || p < 1 || p > 65535 {
		return "", 0, fmt.Errorf("invalid port %q", portStr)
	}
	return host, p, nil
}

// pyUnquote is urllib.parse.unquote: valid %XX escapes are decoded and
// anything else is kept as written.
func pyUnquote(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			v, _ := strconv.ParseUint(s[i+1:i+3], 16, 8)
			b.WriteByte(byte(v))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return strings.ToValidUTF8(b.String(), "\uFFFD")
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// hostPort joins host and port, bracketing IPv6 literals.
func hostPort(host string, port int) string {
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// AMQPURI returns a URI that amqp091-go's amqp.ParseURI reads back to the
// same host, port, credentials and vhost. amqp091 takes the vhost from the
// path after the first "/", %-decoded, so the vhost is written with every
// "/" escaped: vhost "/" becomes "%2F". Query parameters are not carried
// over: kombu's options are not amqp091's.
func (u BrokerURL) AMQPURI() string {
	return u.uri(url.UserPassword(u.User, u.Password).String())
}

// Redacted returns the URL with the password replaced by "****", for logs
// (kombu's as_uri() masks it the same way).
func (u BrokerURL) Redacted() string {
	return u.uri(url.User(u.User).String() + ":****")
}

func (u BrokerURL) uri(userinfo string) string {
	return u.Scheme + "://" + userinfo + "@" + hostPort(u.Host, u.Port) + "/" + url.PathEscape(u.VHost)
}

// SplitBrokerURLs splits a broker_url string into its ';'-separated
// failover alternatives, dropping empty entries.
func SplitBrokerURLs(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ";") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

// Values of broker_use_ssl's cert_reqs (Python's ssl.CERT_*).
const (
	CertNone     = 0
	CertOptional = 1
	CertRequired = 2
)

// BrokerTLSConfig builds the TLS configuration py-amqp 5.1 would use for
// broker_use_ssl = v when connecting to host.
//
//   - nil or False: no TLS (nil, nil).
//   - True: verify the chain against the system roots but do not check the
//     hostname (py-amqp checks the hostname only when server_hostname is
//     given).
//   - a dict with keyfile, certfile (client certificate; the key may be in
//     certfile when keyfile is absent), ca_certs (CA bundle replacing the
//     system roots), cert_reqs (0 none, 1 optional = required for a client,
//     2 required; default 2) and server_hostname (a name, or None for the URL
//     host: turns on SNI and the hostname check). ssl_version and ciphers are
//     accepted and left to Go's defaults.
//
// Errors wrap ErrBrokerTLS and name the key and path involved.
func BrokerTLSConfig(v any, host string) (*tls.Config, error) {
	switch v := v.(type) {
	case nil:
		return nil, nil
	case bool:
		if !v {
			return nil, nil
		}
		return chainOnlyConfig(nil), nil
	case map[string]any:
		return brokerTLSFromDict(v, host)
	}
	return nil, fmt.Errorf("%w: want True, False or a dict, got %s", ErrBrokerTLS, typeName(v))
}

var brokerTLSKeys = map[string]bool{"keyfile": true, "certfile": true, "ca_certs": true, "cert_reqs": true, "server_hostname": true, "ssl_version": true, "ciphers": true}

func brokerTLSFromDict(d map[string]any, host string) (*tls.Config, error) {
	o, err := readBrokerTLSDict(d, host)
	if err != nil {
		return nil, err
	}
	roots, err := loadCAFile(o.cafile)
	if err != nil {
		return nil, err
	}
	certs, err := loadClientCert(o.certfile, o.keyfile)
	if err != nil {
		return nil, err
	}
	var cfg *tls.Config
	switch {
	case o.reqs == CertNone:
		// CERT_NONE: encryption without authentication of the server.
		cfg = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // requested by cert_reqs=CERT_NONE
	case o.serverName != "":
		cfg = &tls.Config{RootCAs: roots, ServerName: o.serverName}
	default:
		cfg = chainOnlyConfig(roots)
	}
	cfg.Certificates = certs
	return cfg, nil
}

// brokerTLSDict is a broker_use_ssl dict, checked.
type brokerTLSDict struct {
	keyfile, certfile, cafile string
	reqs                      int64
	serverName                string
}

func readBrokerTLSDict(d map[string]any, host string) (brokerTLSDict, error) {
	var o brokerTLSDict
	var unknown []string
	for k := range d {
		if !brokerTLSKeys[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return o, fmt.Errorf("%w: unknown key(s) %s (known: keyfile, certfile, ca_certs, cert_reqs, server_hostname, ssl_version, ciphers)", ErrBrokerTLS, strings.Join(unknown, ", "))
	}
	for _, f := range []struct {
		key string
		dst *string
	}{{"keyfile", &o.keyfile}, {"certfile", &o.certfile}, {"ca_certs", &o.cafile}} {
		switch s := d[f.key].(type) {
		case nil:
		case string:
			*f.dst = s
		default:
			return o, fmt.Errorf("%w: %s must be a string, got %s", ErrBrokerTLS, f.key, typeName(s))
		}
	}
	o.reqs = int64(CertRequired)
	switch r := d["cert_reqs"].(type) {
	case nil:
	case int64:
		if r < CertNone || r > CertRequired {
			return o, fmt.Errorf("%w: cert_reqs must be ssl.CERT_NONE, CERT_OPTIONAL or CERT_REQUIRED (0-2), got %d", ErrBrokerTLS, r)
		}
		o.reqs = r
	default:
		return o, fmt.Errorf("%w: cert_reqs must be ssl.CERT_NONE, CERT_OPTIONAL or CERT_REQUIRED, got %s", ErrBrokerTLS, typeName(r))
	}
	if sh, present := d["server_hostname"]; present {
		switch sh := sh.(type) {
		case nil:
			// kombu fills a present-but-None server_hostname from the URL host.
			o.serverName = host
		case string:
			o.serverName = sh
		default:
			return o, fmt.Errorf("%w: server_hostname must be a string or None, got %s", ErrBrokerTLS, typeName(sh))
		}
	}
	if o.serverName != "" && o.reqs == CertNone {
		// Python raises ValueError here: check_hostname needs verification.
		return o, fmt.Errorf("%w: cert_reqs=CERT_NONE cannot be combined with server_hostname (the hostname check needs certificate verification)", ErrBrokerTLS)
	}
	return o, nil
}

// loadCAFile reads ca_certs; "" means the system roots (nil).
func loadCAFile(cafile string) (*x509.CertPool, error) {
	if cafile == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(cafile)
	if err != nil {
		return nil, fmt.Errorf("%w: ca_certs: %w", ErrBrokerTLS, err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%w: ca_certs: no PEM certificates in %s", ErrBrokerTLS, cafile)
	}
	return roots, nil
}

// loadClientCert reads certfile and keyfile as Python's load_cert_chain does.
func loadClientCert(certfile, keyfile string) ([]tls.Certificate, error) {
	if certfile == "" {
		if keyfile != "" {
			return nil, fmt.Errorf("%w: keyfile %s given without certfile", ErrBrokerTLS, keyfile)
		}
		return nil, nil
	}
	if keyfile == "" {
		keyfile = certfile // load_cert_chain(certfile) reads the key from the same file
	}
	certPEM, err := os.ReadFile(certfile)
	if err != nil {
		return nil, fmt.Errorf("%w: certfile: %w", ErrBrokerTLS, err)
	}
	keyPEM, err := os.ReadFile(keyfile)
	if err != nil {
		return nil, fmt.Errorf("%w: keyfile: %w", ErrBrokerTLS, err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%w: certfile %s / keyfile %s: %w", ErrBrokerTLS, certfile, keyfile, err)
	}
	return []tls.Certificate{cert}, nil
}

// chainOnlyConfig verifies the server's chain against roots (nil = system
// roots) but not its name. crypto/tls has no such mode, so the built-in
// verification is switched off and VerifyConnection does the chain part.
func chainOnlyConfig(roots *x509.CertPool) *tls.Config {
	return &tls.Config{
		InsecureSkipVerify: true, //nolint:gosec // the chain is verified in VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("broker presented no certificate")
			}
			opts := x509.VerifyOptions{
				Roots:         roots,
				Intermediates: x509.NewCertPool(),
				KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			}
			for _, c := range cs.PeerCertificates[1:] {
				opts.Intermediates.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(opts)
			return err
		},
	}
}
