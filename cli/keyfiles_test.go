package cli

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/ccworker/ccworker/config"
)

func TestKeyFilePermissionsAreChecked(t *testing.T) {
	dir := t.TempDir()
	loose, tight := filepath.Join(dir, "loose.key"), filepath.Join(dir, "tight.key")
	require.NoError(t, os.WriteFile(loose, []byte("SECRET KEY MATERIAL"), 0o644))
	require.NoError(t, os.WriteFile(tight, []byte("SECRET KEY MATERIAL"), 0o600))
	cfg := &config.Config{BrokerUseSSL: map[string]any{"keyfile": loose}}
	mongo := &config.MongoBackend{URI: "mongodb://h/?tls=true&tlsCertificateKeyFile=" + tight}
	require.Equal(t, []string{loose, tight}, keyFiles(cfg, mongo))

	core, logs := observer.New(zap.WarnLevel)
	warnKeyPermissions(zap.New(core), keyFiles(cfg, mongo))
	require.Equal(t, 1, logs.Len())
	msg := logs.All()[0].Message
	require.Contains(t, msg, loose)
	require.Contains(t, msg, "0644")
	require.NotContains(t, msg, "SECRET")
}
