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
	sp := &mongoSpec{mb: MongoBackend{Database: "celery", Collection: "celery_taskmeta", GroupCollection: "celery_groupmeta"}}
	for _, step := range []func() error{
		func() error { return sp.parseURL(rawURL) },
		func() error { return sp.applySettings(settings) },
		sp.translateOptions,
		sp.validateHosts,
		sp.validateTLS,
		sp.validateNames,
	} {
		if err := step(); err != nil {
			return MongoBackend{}, err
		}
	}
	sp.mb.URI = sp.uri()
	sort.Strings(sp.mb.Dropped)
	return sp.mb, nil
}

// mongoErr wraps ErrMongoURL with a message.
func mongoErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMongoURL}, args...)...)
}

// mongoOpt is one client option as written, before translation.
type mongoOpt struct{ name, value string }

// mongoSpec is a backend setting on its way to a driver URI; ParseMongoBackend
// fills it in phases: the URL, then the settings that override it, then the
// options in the Go driver's terms, then checks.
type mongoSpec struct {
	mb             MongoBackend
	scheme         string // "mongodb" or "mongodb+srv"
	user, password string
	hosts          []string
	urlOpts        []mongoOpt // from the URL's query
	settingOpts    []mongoOpt // from mongodb_backend_settings; they win over the URL's
	opts           map[string]string
}

// parseURL splits result_backend into scheme, credentials, hosts, database
// and options.
func (sp *mongoSpec) parseURL(rawURL string) error {
	if rawURL == "" || rawURL == "mongodb" {
		rawURL = "mongodb://"
	}
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		return mongoErr("%q has no scheme (want mongodb://...)", Redact(rawURL))
	}
	if !strings.HasPrefix(scheme, "mongodb") {
		scheme = "mongodb+" + scheme
	}
	if scheme != "mongodb" && scheme != "mongodb+srv" {
		return mongoErr("scheme %q is not supported (want mongodb:// or mongodb+srv://)", scheme)
	}
	sp.scheme = scheme

	hostPart, tail := rest, ""
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		hostPart, tail = rest[:i], rest[i:]
	}
	if userinfo, hosts, found := cutLast(hostPart, "@"); found {
		hostPart = hosts
		if err := sp.parseUserinfo(userinfo); err != nil {
			return err
		}
	}
	if hostPart != "" {
		sp.hosts = strings.Split(hostPart, ",")
	}
	path, query, _ := strings.Cut(tail, "?")
	if path = strings.TrimPrefix(path, "/"); path != "" {
		db, err := url.PathUnescape(path)
		if err != nil {
			return mongoErr("bad %%-escape in the database name %q", path)
		}
		sp.mb.Database = db
	}
	var err error
	sp.urlOpts, err = parseMongoQuery(query)
	return err
}

func (sp *mongoSpec) parseUserinfo(userinfo string) error {
	u, p, hasPass := strings.Cut(userinfo, ":")
	if strings.Contains(p, ":") {
		return mongoErr("the password contains an unescaped ':' (percent-encode it as %%3A)")
	}
	var err error
	if sp.user, err = url.PathUnescape(u); err != nil {
		return mongoErr("bad %%-escape in the user name")
	}
	if hasPass {
		if sp.password, err = url.PathUnescape(p); err != nil {
			return mongoErr("bad %%-escape in the password")
		}
	}
	return nil
}

// parseMongoQuery reads the URL's options in order. Keys keep their case
// here; they are matched case-insensitively later, as both pymongo and the
// Go driver do.
func parseMongoQuery(query string) ([]mongoOpt, error) {
	if query == "" {
		return nil, nil
	}
	sep := "&"
	if strings.Contains(query, ";") && !strings.Contains(query, "&") {
		sep = ";" // pymongo accepts ';' as the separator
	}
	var opts []mongoOpt
	for _, kv := range strings.Split(query, sep) {
		if kv == "" {
			continue
		}
		k, v, found := strings.Cut(kv, "=")
		if !found {
			return nil, mongoErr("option %q has no value", k)
		}
		uv, err := url.QueryUnescape(v)
		if err != nil {
			return nil, mongoErr("bad %%-escape in option %s", k)
		}
		opts = append(opts, mongoOpt{k, uv})
	}
	return opts, nil
}

// applySettings applies mongodb_backend_settings over the URL: host/port,
// mongo_host, credentials and names, then every other key as a client option.
func (sp *mongoSpec) applySettings(settings map[string]any) error {
	s := maps.Clone(settings)
	if s == nil {
		s = map[string]any{}
	}
	if err := sp.settingsHosts(s); err != nil {
		return err
	}
	for _, k := range []struct {
		key string
		dst *string
	}{{"user", &sp.user}, {"password", &sp.password}, {"database", &sp.mb.Database}, {"taskmeta_collection", &sp.mb.Collection}, {"groupmeta_collection", &sp.mb.GroupCollection}} {
		v, present, err := takeSettingStr(s, k.key)
		if err != nil {
			return err
		}
		if present && v != "" {
			*k.dst = v
		}
	}
	if o, ok := s["options"]; ok {
		delete(s, "options")
		switch o := o.(type) {
		case nil:
		case map[string]any:
			if err := sp.addSettingOpts(o); err != nil {
				return err
			}
		default:
			return mongoErr("mongodb_backend_settings['options'] must be a dict, got %s", typeName(o))
		}
	}
	return sp.addSettingOpts(s)
}

// takeSettingStr removes key from s and returns its string value.
func takeSettingStr(s map[string]any, k string) (string, bool, error) {
	v, ok := s[k]
	delete(s, k)
	switch v := v.(type) {
	case nil:
		return "", false, nil
	case string:
		return v, ok, nil
	}
	return "", false, fmt.Errorf("%w: mongodb_backend_settings[%q] must be a string, got %s", ErrMongoURL, k, typeName(v))
}

// settingsHosts applies host, port and mongo_host, removing them from s.
func (sp *mongoSpec) settingsHosts(s map[string]any) error {
	host, hasHost, err := takeSettingStr(s, "host")
	if err != nil {
		return err
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
			return mongoErr("mongodb_backend_settings['port'] %q is not a number", p)
		}
	default:
		return mongoErr("mongodb_backend_settings['port'] must be an int, got %s", typeName(p))
	}
	if port < 1 || port > 65535 {
		return mongoErr("mongodb_backend_settings['port'] %d is out of range", port)
	}
	if hasHost || hasPort {
		if strings.HasPrefix(host, "mongodb") {
			return mongoErr("mongodb_backend_settings['host'] holds a URI; put it in result_backend instead")
		}
		if host == "" {
			host = "localhost"
		}
		sp.hosts = []string{hostPort(host, int(port))}
	}
	mh, ok := s["mongo_host"]
	if !ok {
		return nil
	}
	delete(s, "mongo_host")
	switch mh := mh.(type) {
	case nil:
	case string:
		sp.hosts = []string{mh}
	case []any:
		sp.hosts = sp.hosts[:0]
		for _, h := range mh {
			hs, ok := h.(string)
			if !ok {
				return mongoErr("mongodb_backend_settings['mongo_host'] must hold strings, got %s", typeName(h))
			}
			sp.hosts = append(sp.hosts, hs)
		}
	default:
		return mongoErr("mongodb_backend_settings['mongo_host'] must be a list of 'host:port', got %s", typeName(mh))
	}
	return nil
}

// addSettingOpts adds the options of a settings dict, in key order.
func (sp *mongoSpec) addSettingOpts(d map[string]any) error {
	for _, k := range slices.Sorted(maps.Keys(d)) {
		v, ok, err := mongoOptValue(k, d[k])
		if err != nil {
			return err
		}
		if ok {
			sp.settingOpts = append(sp.settingOpts, mongoOpt{k, v})
		}
	}
	return nil
}

// mongoOptValue renders a Python option value as it would appear in a URL;
// None means "not set".
func mongoOptValue(k string, v any) (string, bool, error) {
	switch v := v.(type) {
	case nil:
		return "", false, nil
	case string:
		return v, true, nil
	case bool:
		return strconv.FormatBool(v), true, nil
	case int64:
		return strconv.FormatInt(v, 10), true, nil
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), true, nil
	case []any:
		parts := make([]string, 0, len(v))
		for _, e := range v {
			es, ok := e.(string)
			if !ok {
				return "", false, fmt.Errorf("%w: option %s: list must hold strings", ErrMongoURL, k)
			}
			parts = append(parts, es)
		}
		return strings.Join(parts, ","), true, nil
	case map[string]any:
		parts := make([]string, 0, len(v))
		for _, kk := range slices.Sorted(maps.Keys(v)) {
			parts = append(parts, kk+":"+fmt.Sprint(v[kk]))
		}
		return strings.Join(parts, ","), true, nil
	}
	return "", false, fmt.Errorf("%w: option %s has unsupported type %s", ErrMongoURL, k, typeName(v))
}

// pymongoTLS holds pymongo's TLS options, which have no one-to-one Go
// driver equivalent and are translated together.
type pymongoTLS struct {
	certfile, keyfile, certReqs, matchHostname, allowInvalidCerts, allowInvalidHosts string
}

// take records o if it is one of pymongo's TLS options.
func (t *pymongoTLS) take(o mongoOpt) bool {
	switch strings.ToLower(o.name) {
	case "ssl_certfile":
		t.certfile = o.value
	case "ssl_keyfile":
		t.keyfile = o.value
	case "ssl_cert_reqs":
		t.certReqs = o.value
	case "ssl_match_hostname":
		t.matchHostname = strings.ToLower(o.value)
	case "tlsallowinvalidcertificates":
		t.allowInvalidCerts = strings.ToLower(o.value)
	case "tlsallowinvalidhostnames":
		t.allowInvalidHosts = strings.ToLower(o.value)
	default:
		return false
	}
	return true
}

// translateOptions turns the URL's and the settings' options into the Go
// driver's canonical options; later entries (settings) override earlier
// ones (URL). Unknown options are dropped and listed.
func (sp *mongoSpec) translateOptions() error {
	// The Go driver rejects a URL whose ssl and tls disagree.
	urlTLS := ""
	for _, o := range sp.urlOpts {
		if lk := strings.ToLower(o.name); lk == "ssl" || lk == "tls" {
			v := strings.ToLower(o.value)
			if urlTLS != "" && v != urlTLS {
				return mongoErr("ssl and tls options disagree in the URL")
			}
			urlTLS = v
		}
	}
	sp.opts = map[string]string{}
	var pt pymongoTLS
	for _, o := range append(sp.urlOpts, sp.settingOpts...) {
		if pt.take(o) {
			continue
		}
		lk := strings.ToLower(o.name)
		name, known := mongoOptions[lk]
		if !known {
			reason, ignorable := mongoIgnored[lk]
			if !ignorable || reason == "" {
				reason = "not a MongoDB Go driver option"
			}
			sp.mb.Dropped = append(sp.mb.Dropped, o.name+": "+reason)
			continue
		}
		v, err := driverOptValue(name, o)
		if err != nil {
			return err
		}
		sp.opts[name] = v
	}
	return sp.applyPymongoTLS(pt)
}

// driverOptValue checks and normalises a value for the Go driver's option name.
func driverOptValue(name string, o mongoOpt) (string, error) {
	v := o.value
	if mongoBoolOptions[name] {
		switch strings.ToLower(v) {
		case "true", "1":
			v = "true"
		case "false", "0":
			v = "false"
		default:
			return "", mongoErr("option %s must be true or false, got %q", o.name, o.value)
		}
	}
	if mongoIntOptions[name] {
		if n, err := strconv.ParseInt(v, 10, 64); err != nil || n < 0 {
			return "", mongoErr("option %s must be a non-negative integer, got %q", o.name, o.value)
		}
	}
	return v, nil
}

// applyPymongoTLS translates pymongo's TLS options into the Go driver's.
func (sp *mongoSpec) applyPymongoTLS(pt pymongoTLS) error {
	out := sp.opts
	if pt.certfile != "" {
		if pt.keyfile == "" || pt.keyfile == pt.certfile {
			out["tlsCertificateKeyFile"] = pt.certfile
		} else {
			out["tlsCertificateFile"] = pt.certfile
			out["tlsPrivateKeyFile"] = pt.keyfile
		}
	} else if pt.keyfile != "" {
		return mongoErr("ssl_keyfile given without ssl_certfile")
	}
	switch strings.ToUpper(pt.certReqs) {
	case "", "CERT_REQUIRED", "2", "CERT_OPTIONAL", "1":
	case "CERT_NONE", "0":
		pt.allowInvalidCerts = "true"
	default:
		return mongoErr("ssl_cert_reqs %q is not CERT_NONE, CERT_OPTIONAL or CERT_REQUIRED", pt.certReqs)
	}
	if pt.matchHostname == "false" || pt.matchHostname == "0" {
		pt.allowInvalidHosts = "true"
	}
	insecure := out["tlsInsecure"] == "true"
	switch {
	case pt.allowInvalidCerts == "true":
		// Accepting any certificate makes the hostname check meaningless,
		// so the Go driver's single switch says exactly this.
		out["tlsInsecure"] = "true"
	case pt.allowInvalidHosts == "true" && !insecure:
		return mongoErr("skipping only the hostname check (ssl_match_hostname=False / tlsAllowInvalidHostnames=true) is not supported by the Go driver: fix the server certificate's names, or set tlsInsecure=true to skip all verification")
	}
	if out["tlsInsecure"] == "true" {
		out["tls"] = "true"
	}
	return nil
}

// validateHosts does checks the driver would otherwise do late, with vaguer
// messages.
func (sp *mongoSpec) validateHosts() error {
	if len(sp.hosts) == 0 {
		sp.hosts = []string{"localhost"}
	}
	for _, h := range sp.hosts {
		if h == "" {
			return mongoErr("empty host in host list")
		}
		if strings.HasSuffix(h, ".sock") {
			continue // Unix domain socket
		}
		if _, _, err := splitHostPort(h); err != nil {
			return mongoErr("host %q: %v", h, err)
		}
	}
	if sp.scheme == "mongodb+srv" {
		if len(sp.hosts) != 1 {
			return mongoErr("a mongodb+srv URI must name exactly one host")
		}
		if _, p, _ := splitHostPort(sp.hosts[0]); p != 0 {
			return mongoErr("a mongodb+srv URI cannot have a port")
		}
		if sp.opts["directConnection"] == "true" {
			return mongoErr("directConnection=true cannot be used with mongodb+srv")
		}
	}
	if sp.opts["directConnection"] == "true" && len(sp.hosts) > 1 {
		return mongoErr("directConnection=true needs exactly one host")
	}
	if sp.opts["loadBalanced"] == "true" && (len(sp.hosts) > 1 || sp.opts["replicaSet"] != "") {
		return mongoErr("loadBalanced=true needs one host and no replicaSet")
	}
	return nil
}

// validateTLS checks the certificate options pair up and their files are
// readable.
func (sp *mongoSpec) validateTLS() error {
	out := sp.opts
	if _, ok := out["tlsCertificateKeyFile"]; ok {
		if _, ok := out["tlsCertificateFile"]; ok {
			return mongoErr("tlsCertificateKeyFile cannot be combined with a separate certificate file")
		}
	}
	if (out["tlsCertificateFile"] == "") != (out["tlsPrivateKeyFile"] == "") {
		return mongoErr("tlsCertificateFile and tlsPrivateKeyFile must be given together")
	}
	for _, k := range []string{"tlsCAFile", "tlsCertificateKeyFile", "tlsCertificateFile", "tlsPrivateKeyFile"} {
		if f, ok := out[k]; ok {
			if _, err := os.ReadFile(f); err != nil {
				return mongoErr("%s: %v", k, err)
			}
		}
	}
	return nil
}

// validateNames checks the database and collection names and the
// credentials, and makes the auth source explicit.
func (sp *mongoSpec) validateNames() error {
	mb := &sp.mb
	if db := mb.Database; db == "" || strings.ContainsAny(db, "/\\. \"$\x00") {
		return mongoErr("invalid database name %q", db)
	}
	if mb.Collection == "" || strings.HasPrefix(mb.Collection, "system.") || strings.ContainsAny(mb.Collection, "$\x00") {
		return mongoErr("invalid taskmeta_collection %q", mb.Collection)
	}
	if mb.GroupCollection == "" || strings.ContainsAny(mb.GroupCollection, "$\x00") {
		return mongoErr("invalid groupmeta_collection %q", mb.GroupCollection)
	}
	if sp.user == "" && sp.password != "" {
		return mongoErr("a password is set without a user name")
	}
	if sp.user == "" {
		return nil
	}
	if _, ok := sp.opts["authSource"]; !ok {
		switch strings.ToUpper(sp.opts["authMechanism"]) {
		case "MONGODB-X509", "GSSAPI", "PLAIN", "MONGODB-AWS", "MONGODB-OIDC":
			// These authenticate against $external; the driver picks it.
		default:
			sp.opts["authSource"] = "admin"
		}
	}
	return nil
}

// uri renders the driver URI: credentials, hosts, no database path, options
// in name order.
func (sp *mongoSpec) uri() string {
	var b strings.Builder
	b.WriteString(sp.scheme + "://")
	if sp.user != "" {
		b.WriteString(escapeAll(sp.user))
		if sp.password != "" {
			b.WriteString(":" + escapeAll(sp.password))
		}
		b.WriteByte('@')
	}
	b.WriteString(strings.Join(sp.hosts, ","))
	b.WriteByte('/')
	if len(sp.opts) > 0 {
		b.WriteByte('?')
		for i, k := range slices.Sorted(maps.Keys(sp.opts)) {
			if i > 0 {
				b.WriteByte('&')
			}
			b.WriteString(k + "=" + url.QueryEscape(sp.opts[k]))
		}
	}
	return b.String()
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
