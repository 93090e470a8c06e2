package config

import (
	"fmt"
	"maps"
	"net/url"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/ccworker/ccworker/config/pyliteral"
)

// MongoBackend is a Celery MongoDB result backend setting translated for
// go.mongodb.org/mongo-driver/v2.
type MongoBackend struct {
	// URI is for options.Client().ApplyURI. It carries the credentials and
	// the client options but no database path: the database to write to is
	// Database, and the auth source is always explicit (see ParseMongoBackend).
	URI string
	// Database, Collection and GroupCollection name where results go
	// (defaults celery, celery_taskmeta, celery_groupmeta).
	Database, Collection, GroupCollection string
	// Dropped lists options that were not passed to the Go driver, each with
	// the reason, so the worker can log them.
	Dropped []string
}

// Redacted returns URI with the password hidden, for logs.
func (m MongoBackend) Redacted() string { return Redact(m.URI) }

// mongoOptions maps lower-cased option names accepted by the Go driver
// (x/mongo/driver/connstring) to their canonical spelling.
var mongoOptions = func() map[string]string {
	m := map[string]string{}
	for _, o := range []string{
		"appname", "authMechanism", "authMechanismProperties", "authSource", "compressors",
		"connectTimeoutMS", "directConnection", "heartbeatFrequencyMS", "journal", "loadBalanced",
		"localThresholdMS", "maxIdleTimeMS", "maxPoolSize", "minPoolSize", "maxConnecting",
		"readConcernLevel", "readPreference", "readPreferenceTags", "maxStalenessSeconds",
		"replicaSet", "retryWrites", "retryReads", "serverSelectionTimeoutMS", "socketTimeoutMS",
		"srvMaxHosts", "srvServiceName", "tls", "tlsCertificateKeyFile",
		"tlsCertificateKeyFilePassword", "tlsCertificateFile", "tlsPrivateKeyFile", "tlsInsecure",
		"tlsCAFile", "timeoutMS", "tlsDisableOCSPEndpointCheck", "w", "wTimeoutMS",
		"zlibCompressionLevel", "zstdCompressionLevel",
	} {
		m[strings.ToLower(o)] = o
	}
	// Older spellings the driver still reads.
	m["ssl"] = "tls"
	m["heartbeatintervalms"] = "heartbeatFrequencyMS"
	m["maxstaleness"] = "maxStalenessSeconds"
	m["sslclientcertificatekeyfile"] = "tlsCertificateKeyFile"
	m["sslclientcertificatekeypassword"] = "tlsCertificateKeyFilePassword"
	m["sslinsecure"] = "tlsInsecure"
	m["sslcertificateauthorityfile"] = "tlsCAFile"
	m["wtimeout"] = "wTimeoutMS"
	// pymongo keyword spellings.
	m["ssl_ca_certs"] = "tlsCAFile"
	m["ssl_pem_passphrase"] = "tlsCertificateKeyFilePassword"
	return m
}()

// mongoBoolOptions must be "true" or "false" for the Go driver.
var mongoBoolOptions = map[string]bool{"directConnection": true, "journal": true, "loadBalanced": true,
	"retryWrites": true, "retryReads": true, "tls": true, "tlsInsecure": true, "tlsDisableOCSPEndpointCheck": true}

// mongoIntOptions must be non-negative integers for the Go driver.
var mongoIntOptions = map[string]bool{"connectTimeoutMS": true, "heartbeatFrequencyMS": true, "localThresholdMS": true,
	"maxIdleTimeMS": true, "maxPoolSize": true, "minPoolSize": true, "maxConnecting": true, "maxStalenessSeconds": true,
	"serverSelectionTimeoutMS": true, "socketTimeoutMS": true, "srvMaxHosts": true, "timeoutMS": true, "wTimeoutMS": true}

// mongoIgnored are pymongo options with no Go equivalent that are safe to
// drop (they tune the Python client only).
var mongoIgnored = map[string]string{
	"connect":            "pymongo-only (lazy connect)",
	"uuidrepresentation": "not used by ccworker (results have no UUID values)",
	"document_class":     "pymongo-only",
	"tz_aware":           "pymongo-only",
	"waitqueuetimeoutms": "removed from the Go driver",
	"waitqueuemultiple":  "removed from the Go driver",
	"ssl_match_hostname": "",
	"ssl_cert_reqs":      "",
	"ssl_certfile":       "",
	"ssl_keyfile":        "",
}

// ParseMongoBackend translates result_backend and mongodb_backend_settings
// as Celery's MongoBackend reads them (celery/backends/mongodb.py):
//
//   - a scheme not starting with "mongodb" gets "mongodb+" prepended (so
//     srv:// is mongodb+srv://); a bare "mongodb://" means localhost;
//   - settings override the URL: host/port (replace the URL's hosts),
//     mongo_host, user, password, database, taskmeta_collection,
//     groupmeta_collection, options (a dict of client options); every other
//     key is a client option too;
//   - pymongo-3 option names are translated: ssl→tls, ssl_ca_certs→tlsCAFile,
//     ssl_certfile (+ssl_keyfile)→tlsCertificateKeyFile (or
//     tlsCertificateFile + tlsPrivateKeyFile when the key is a separate file,
//     which the Go driver reads as a pair), ssl_pem_passphrase→
//     tlsCertificateKeyFilePassword, ssl_cert_reqs=CERT_NONE→tlsInsecure=true;
//   - Python passes the hosts, not the URI, to MongoClient, so without an
//     authSource pymongo authenticates against "admin"; authSource=admin is
//     added when credentials are present (unless the mechanism uses
//     $external).
//
// The Go driver has no tlsAllowInvalidCertificates / tlsAllowInvalidHostnames
// (it ignores them) and cannot skip only the hostname check; those settings
// are translated to tlsInsecure=true when they come with CERT_NONE
// semantics, and are otherwise an error rather than a silent change in
// behaviour. Options the driver does not know are dropped and listed in
// Dropped. Files named by TLS options must be readable. Errors wrap
// ErrMongoURL.
func ParseMongoBackend(rawURL string, settings map[string]any) (MongoBackend, error) {
	mb := MongoBackend{Database: "celery", Collection: "celery_taskmeta", GroupCollection: "celery_groupmeta"}
	fail := func(format string, args ...any) (MongoBackend, error) {
		return MongoBackend{}, fmt.Errorf("%w: "+format, append([]any{ErrMongoURL}, args...)...)
	}
	if rawURL == "" || rawURL == "mongodb" {
		rawURL = "mongodb://"
	}
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		return fail("%q has no scheme (want mongodb://...)", Redact(rawURL))
	}
	if !strings.HasPrefix(scheme, "mongodb") {
		scheme = "mongodb+" + scheme
	}
	if scheme != "mongodb" && scheme != "mongodb+srv" {
		return fail("scheme %q is not supported (want mongodb:// or mongodb+srv://)", scheme)
	}
	srv := scheme == "mongodb+srv"

	// Split into userinfo, hosts, database and options.
	hostPart, tail := rest, ""
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		hostPart, tail = rest[:i], rest[i:]
	}
	var user, password string
	if userinfo, hosts, found := cutLast(hostPart, "@"); found {
		hostPart = hosts
		u, p, hasPass := strings.Cut(userinfo, ":")
		if strings.Contains(p, ":") {
			return fail("the password contains an unescaped ':' (percent-encode it as %%3A)")
		}
		var err error
		if user, err = url.PathUnescape(u); err != nil {
			return fail("bad %%-escape in the user name")
		}
		if hasPass {
			if password, err = url.PathUnescape(p); err != nil {
				return fail("bad %%-escape in the password")
			}
		}
	}
	var hosts []string
	if hostPart != "" {
		hosts = strings.Split(hostPart, ",")
	}
	path, query, _ := strings.Cut(tail, "?")
	path = strings.TrimPrefix(path, "/")
	if path != "" {
		db, err := url.PathUnescape(path)
		if err != nil {
			return fail("bad %%-escape in the database name %q", path)
		}
		mb.Database = db
	}

	// opts: canonical name → value. Keys from the URL are matched
	// case-insensitively, as both pymongo and the Go driver do.
	type opt struct{ name, value string }
	var raw []opt
	if query != "" {
		sep := "&"
		if strings.Contains(query, ";") && !strings.Contains(query, "&") {
			sep = ";" // pymongo accepts ';' as the separator
		}
		for _, kv := range strings.Split(query, sep) {
			if kv == "" {
				continue
			}
			k, v, found := strings.Cut(kv, "=")
			if !found {
				return fail("option %q has no value", k)
			}
			uv, err := url.QueryUnescape(v)
			if err != nil {
				return fail("bad %%-escape in option %s", k)
			}
			raw = append(raw, opt{k, uv})
		}
	}

	// mongodb_backend_settings.
	s := make(map[string]any, len(settings))
	for k, v := range settings {
		s[k] = v
	}
	str := func(k string) (string, bool, error) {
		v, ok := s[k]
		delete(s, k)
		switch v := v.(type) {
		case nil:
			return "", false, nil
		case string:
			return v, ok, nil
		}
		return "", false, fmt.Errorf("%w: mongodb_backend_settings[%q] must be a string, got %s", ErrMongoURL, k, pyliteral.TypeName(v))
	}
	host, hasHost, err := str("host")
	if err != nil {
		return MongoBackend{}, err
	}
	port := int64(27017)
	portV, hasPort := s["port"]
	delete(s, "port")
	switch p := portV.(type) {
	case nil:
		hasPort = false
	case int64:
		port = p
	case string:
		if port, err = strconv.ParseInt(p, 10, 32); err != nil {
			return fail("mongodb_backend_settings['port'] %q is not a number", p)
		}
	default:
		return fail("mongodb_backend_settings['port'] must be an int, got %s", pyliteral.TypeName(p))
	}
	if port < 1 || port > 65535 {
		return fail("mongodb_backend_settings['port'] %d is out of range", port)
	}
	if hasHost || hasPort {
		if strings.HasPrefix(host, "mongodb") {
			return fail("mongodb_backend_settings['host'] holds a URI; put it in result_backend instead")
		}
		if host == "" {
			host = "localhost"
		}
		hosts = []string{hostPort(host, int(port))}
	}
	if mh, ok := s["mongo_host"]; ok {
		delete(s, "mongo_host")
		switch mh := mh.(type) {
		case nil:
		case string:
			hosts = []string{mh}
		case []any:
			hosts = hosts[:0]
			for _, h := range mh {
				hs, ok := h.(string)
				if !ok {
					return fail("mongodb_backend_settings['mongo_host'] must hold strings, got %s", pyliteral.TypeName(h))
				}
				hosts = append(hosts, hs)
			}
		default:
			return fail("mongodb_backend_settings['mongo_host'] must be a list of 'host:port', got %s", pyliteral.TypeName(mh))
		}
	}
	for _, k := range []struct {
		key string
		dst *string
	}{{"user", &user}, {"password", &password}, {"database", &mb.Database}, {"taskmeta_collection", &mb.Collection}, {"groupmeta_collection", &mb.GroupCollection}} {
		v, present, err := str(k.key)
		if err != nil {
			return MongoBackend{}, err
		}
		if present && v != "" {
			*k.dst = v
		}
	}
	var settingOpts []opt
	addSettingOpt := func(k string, v any) error {
		var sv string
		switch v := v.(type) {
		case nil:
			return nil
		case string:
			sv = v
		case bool:
			sv = strconv.FormatBool(v)
		case int64:
			sv = strconv.FormatInt(v, 10)
		case float64:
			sv = strconv.FormatFloat(v, 'f', -1, 64)
		case []any:
			parts := make([]string, 0, len(v))
			for _, e := range v {
				es, ok := e.(string)
				if !ok {
					return fmt.Errorf("%w: option %s: list must hold strings", ErrMongoURL, k)
				}
				parts = append(parts, es)
			}
			sv = strings.Join(parts, ",")
		case map[string]any:
			keys := make([]string, 0, len(v))
			for kk := range v {
				keys = append(keys, kk)
			}
			sort.Strings(keys)
			parts := make([]string, 0, len(v))
			for _, kk := range keys {
				parts = append(parts, kk+":"+fmt.Sprint(v[kk]))
			}
			sv = strings.Join(parts, ",")
		default:
			return fmt.Errorf("%w: option %s has unsupported type %s", ErrMongoURL, k, pyliteral.TypeName(v))
		}
		settingOpts = append(settingOpts, opt{k, sv})
		return nil
	}
	if o, ok := s["options"]; ok {
		delete(s, "options")
		switch o := o.(type) {
		case nil:
		case map[string]any:
			for _, k := range slices.Sorted(maps.Keys(o)) {
				if err := addSettingOpt(k, o[k]); err != nil {
					return MongoBackend{}, err
				}
			}
		default:
			return fail("mongodb_backend_settings['options'] must be a dict, got %s", pyliteral.TypeName(o))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(s)) {
		if err := addSettingOpt(k, s[k]); err != nil {
			return MongoBackend{}, err
		}
	}

	// The Go driver rejects a URL whose ssl and tls disagree.
	urlTLS := ""
	for _, o := range raw {
		if lk := strings.ToLower(o.name); lk == "ssl" || lk == "tls" {
			v := strings.ToLower(o.value)
			if urlTLS != "" && v != urlTLS {
				return fail("ssl and tls options disagree in the URL")
			}
			urlTLS = v
		}
	}

	// Translate. Later entries (settings) override earlier ones (URL).
	out := map[string]string{}
	var certfile, keyfile, certReqs, matchHostname, allowInvalidCerts, allowInvalidHosts string
	for _, o := range append(raw, settingOpts...) {
		lk := strings.ToLower(o.name)
		switch lk {
		case "ssl_certfile":
			certfile = o.value
			continue
		case "ssl_keyfile":
			keyfile = o.value
			continue
		case "ssl_cert_reqs":
			certReqs = o.value
			continue
		case "ssl_match_hostname":
			matchHostname = strings.ToLower(o.value)
			continue
		case "tlsallowinvalidcertificates":
			allowInvalidCerts = strings.ToLower(o.value)
			continue
		case "tlsallowinvalidhostnames":
			allowInvalidHosts = strings.ToLower(o.value)
			continue
		}
		name, known := mongoOptions[lk]
		if !known {
			reason, ignorable := mongoIgnored[lk]
			if !ignorable || reason == "" {
				reason = "not a MongoDB Go driver option"
			}
			mb.Dropped = append(mb.Dropped, o.name+": "+reason)
			continue
		}
		v := o.value
		if mongoBoolOptions[name] {
			switch strings.ToLower(v) {
			case "true", "1":
				v = "true"
			case "false", "0":
				v = "false"
			default:
				return fail("option %s must be true or false, got %q", o.name, o.value)
			}
		}
		if mongoIntOptions[name] {
			if n, err := strconv.ParseInt(v, 10, 64); err != nil || n < 0 {
				return fail("option %s must be a non-negative integer, got %q", o.name, o.value)
			}
		}
		out[name] = v
	}
	if certfile != "" {
		if keyfile == "" || keyfile == certfile {
			out["tlsCertificateKeyFile"] = certfile
		} else {
			out["tlsCertificateFile"] = certfile
			out["tlsPrivateKeyFile"] = keyfile
		}
	} else if keyfile != "" {
		return fail("ssl_keyfile given without ssl_certfile")
	}
	switch strings.ToUpper(certReqs) {
	case "", "CERT_REQUIRED", "2", "CERT_OPTIONAL", "1":
	case "CERT_NONE", "0":
		allowInvalidCerts = "true"
	default:
		return fail("ssl_cert_reqs %q is not CERT_NONE, CERT_OPTIONAL or CERT_REQUIRED", certReqs)
	}
	if matchHostname == "false" || matchHostname == "0" {
		allowInvalidHosts = "true"
	}
	insecure := out["tlsInsecure"] == "true"
	switch {
	case allowInvalidCerts == "true":
		// Accepting any certificate makes the hostname check meaningless,
		// so the Go driver's single switch says exactly this.
		out["tlsInsecure"] = "true"
	case allowInvalidHosts == "true" && !insecure:
		return fail("skipping only the hostname check (ssl_match_hostname=False / tlsAllowInvalidHostnames=true) is not supported by the Go driver: fix the server certificate's names, or set tlsInsecure=true to skip all verification")
	}
	if out["tlsInsecure"] == "true" {
		out["tls"] = "true"
	}

	// Validation the driver would otherwise do late, with vaguer messages.
	if len(hosts) == 0 {
		hosts = []string{"localhost"}
	}
	for _, h := range hosts {
		if h == "" {
			return fail("empty host in host list")
		}
		if strings.HasSuffix(h, ".sock") {
			continue // Unix domain socket
		}
		if _, _, err := splitHostPort(h); err != nil {
			return fail("host %q: %v", h, err)
		}
	}
	if srv {
		if len(hosts) != 1 {
			return fail("a mongodb+srv URI must name exactly one host")
		}
		if _, p, _ := splitHostPort(hosts[0]); p != 0 {
			return fail("a mongodb+srv URI cannot have a port")
		}
		if out["directConnection"] == "true" {
			return fail("directConnection=true cannot be used with mongodb+srv")
		}
	}
	if out["directConnection"] == "true" && len(hosts) > 1 {
		return fail("directConnection=true needs exactly one host")
	}
	if out["loadBalanced"] == "true" && (len(hosts) > 1 || out["replicaSet"] != "") {
		return fail("loadBalanced=true needs one host and no replicaSet")
	}
	if _, ok := out["tlsCertificateKeyFile"]; ok {
		if _, ok := out["tlsCertificateFile"]; ok {
			return fail("tlsCertificateKeyFile cannot be combined with a separate certificate file")
		}
	}
	if (out["tlsCertificateFile"] == "") != (out["tlsPrivateKeyFile"] == "") {
		return fail("tlsCertificateFile and tlsPrivateKeyFile must be given together")
	}
	for _, k := range []string{"tlsCAFile", "tlsCertificateKeyFile", "tlsCertificateFile", "tlsPrivateKeyFile"} {
		if f, ok := out[k]; ok {
			if _, err := os.ReadFile(f); err != nil {
				return fail("%s: %v", k, err)
			}
		}
	}
	if db := mb.Database; db == "" || strings.ContainsAny(db, "/\\. \"$\x00") {
		return fail("invalid database name %q", db)
	}
	if mb.Collection == "" || strings.HasPrefix(mb.Collection, "system.") || strings.ContainsAny(mb.Collection, "$\x00") {
		return fail("invalid taskmeta_collection %q", mb.Collection)
	}
	if mb.GroupCollection == "" || strings.ContainsAny(mb.GroupCollection, "$\x00") {
		return fail("invalid groupmeta_collection %q", mb.GroupCollection)
	}
	if user == "" && password != "" {
		return fail("a password is set without a user name")
	}
	if user != "" {
		if _, ok := out["authSource"]; !ok {
			switch strings.ToUpper(out["authMechanism"]) {
			case "MONGODB-X509", "GSSAPI", "PLAIN", "MONGODB-AWS", "MONGODB-OIDC":
				// These authenticate against $external; the driver picks it.
			default:
				out["authSource"] = "admin"
			}
		}
	}

	var b strings.Builder
	b.WriteString(scheme + "://")
	if user != "" {
		b.WriteString(escapeAll(user))
		if password != "" {
			b.WriteString(":" + escapeAll(password))
		}
		b.WriteByte('@')
	}
	b.WriteString(strings.Join(hosts, ","))
	b.WriteByte('/')
	if len(out) > 0 {
		b.WriteByte('?')
		for i, k := range slices.Sorted(maps.Keys(out)) {
			if i > 0 {
				b.WriteByte('&')
			}
			b.WriteString(k + "=" + url.QueryEscape(out[k]))
		}
	}
	mb.URI = b.String()
	sort.Strings(mb.Dropped)
	return mb, nil
}

// escapeAll percent-encodes everything but RFC 3986 unreserved characters,
// which both pymongo's and the Go driver's user-info rules accept.
func escapeAll(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}
