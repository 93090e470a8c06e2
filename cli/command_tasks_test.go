package cli

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/ccworker/ccworker/config"
	"github.com/ccworker/ccworker/tasks"
	"github.com/ccworker/ccworker/tasks/command"
)

func loadConfig(t *testing.T, src string) *config.Config {
	t.Helper()
	p := filepath.Join(t.TempDir(), "celeryconfig.py")
	require.NoError(t, os.WriteFile(p, []byte(src), 0o600))
	cfg, err := config.Load(p, nil)
	require.NoError(t, err)
	return cfg
}

func TestRegisterCommands(t *testing.T) {
	cfg := loadConfig(t, `broker_url = 'amqp://h//'
worker_unknown_setting = 1
ccworker_commands = {
    'cmd.echo': {'argv': ['/bin/echo', '{0}', '{name}'], 'doc': 'Echo two words.'},
    'cmd.sh': {'argv': 'echo {0} | tr a-z A-Z', 'shell': True},
}
`)
	assert.Equal(t, []string{"worker_unknown_setting"}, cfg.Ignored, "ccworker_commands is a setting ccworker reads")
	reg := tasks.NewRegistry()
	require.NoError(t, registerCommands(reg, cfg, zap.NewNop()))
	assert.Equal(t, []string{"cmd.echo", "cmd.sh"}, reg.Names())
	assert.Equal(t, "Echo two words.", reg.Options("cmd.echo").Doc)
	assert.Equal(t, "Run /bin/sh -c echo {0} | tr a-z A-Z", reg.Options("cmd.sh").Doc)

	h, ok := reg.Lookup("cmd.echo")
	require.True(t, ok)
	v, err := h(context.Background(), &tasks.Call{Args: []any{int64(1)}, Kwargs: map[string]any{"name": "x"}})
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"returncode": int64(0), "stdout": "1 x\n", "stderr": ""}, v)
	h, _ = reg.Lookup("cmd.sh")
	v, err = h(context.Background(), &tasks.Call{Args: []any{"a b"}})
	require.NoError(t, err)
	assert.Equal(t, "A B\n", v.(map[string]any)["stdout"])

	// No file, no commands.
	require.NoError(t, registerCommands(tasks.NewRegistry(), config.Default(), zap.NewNop()))
}

func TestRegisterCommandsErrors(t *testing.T) {
	cfg := loadConfig(t, "broker_url = 'amqp://h//'\n\nccworker_commands = {'bad': {'argv': ['/bin/echo', '{0']}}\n")
	err := registerCommands(tasks.NewRegistry(), cfg, zap.NewNop())
	var ke *config.KeyError
	require.True(t, errors.As(err, &ke), "%T %v", err, err)
	assert.Equal(t, 3, ke.Line)
	assert.ErrorIs(t, err, command.ErrSpec)
	assert.Contains(t, err.Error(), `celeryconfig.py:3: ccworker_commands: "bad": argv[1]: command: invalid spec: "{0": unmatched '{'`)

	cfg = loadConfig(t, "ccworker_commands = {'ccworker.add': {'argv': ['/bin/true']}}\n")
	reg := tasks.NewRegistry()
	require.NoError(t, tasks.RegisterBuiltins(reg))
	assert.ErrorIs(t, registerCommands(reg, cfg, zap.NewNop()), tasks.ErrDuplicate)
}
