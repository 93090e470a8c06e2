package cli

import (
	"fmt"
	"net/url"
	"os"

	"go.uber.org/zap"

	"github.com/ccworker/ccworker/config"
)

// keyFiles lists the private-key files the configuration points at: broker_use_ssl's
// keyfile and the result backend's tlsCertificateKeyFile / tlsPrivateKeyFile.
func keyFiles(cfg *config.Config, mongo *config.MongoBackend) []string {
	var files []string
	if d, ok := cfg.BrokerUseSSL.(map[string]any); ok {
		if k, ok := d["keyfile"].(string); ok && k != "" {
			files = append(files, k)
		}
	}
	if mongo != nil {
		if u, err := url.Parse(mongo.URI); err == nil {
			q := u.Query()
			for _, k := range []string{"tlsCertificateKeyFile", "tlsPrivateKeyFile"} {
				if v := q.Get(k); v != "" {
					files = append(files, v)
				}
			}
		}
	}
	return files
}

// looseKey reports whether a private-key file can be read by other users than its owner
// (any group or other permission bit), with the mode found.
func looseKey(path string) (os.FileMode, bool) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, false // a missing file is reported where it is opened
	}
	return fi.Mode().Perm(), fi.Mode().Perm()&0o077 != 0
}

// warnKeyPermissions logs one warning per private-key file others can read; the file's
// contents never reach the log.
func warnKeyPermissions(log *zap.Logger, files []string) {
	for _, f := range files {
		if mode, loose := looseKey(f); loose {
			log.Warn(fmt.Sprintf("private key %s is readable by other users (mode %04o): chmod 600 it", f, mode))
		}
	}
}
