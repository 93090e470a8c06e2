package config

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLoadCommands(t *testing.T) {
	p := writeConfig(t, `import os
broker_url = 'amqp://localhost//'

ccworker_commands = {
    'hpc.simulate': {
        'argv': ['/usr/bin/simulate', '--steps', '{steps}', '{0}'],
        'cwd': os.environ.get('SCRATCH', '/scratch'),
        'env': {'OMP_NUM_THREADS': '4'},
        'env_allow': ('PATH', 'HOME', 'SLURM_*'),
        'input': 'both',
        'max_output': 4096,
        'kill_after': 2.5,
        'doc': 'Run the simulator.',
    },
    'sh.pipeline': {'argv': 'sort {0} | uniq -c', 'shell': True},
    'plain': {'argv': ['/bin/true'], 'env_allow': None, 'doc': None},
}
`)
	cmds, err := loadCommands(p, mapEnv(map[string]string{"SCRATCH": "/fast"}))
	require.NoError(t, err)
	assert.Equal(t, map[string]CommandSpec{
		"hpc.simulate": {
			Argv: []string{"/usr/bin/simulate", "--steps", "{steps}", "{0}"}, Cwd: "/fast",
			Env: map[string]string{"OMP_NUM_THREADS": "4"}, EnvAllow: []string{"PATH", "HOME", "SLURM_*"},
			Input: "both", MaxOutput: 4096, KillAfter: 2500 * time.Millisecond, Doc: "Run the simulator.", Line: 4,
		},
		"sh.pipeline": {Argv: []string{"sort {0} | uniq -c"}, Shell: true, Line: 4},
		"plain":       {Argv: []string{"/bin/true"}, Line: 4},
	}, cmds)

	cmds, err = loadCommands("", nil)
	require.NoError(t, err)
	assert.Nil(t, cmds)
	cmds, err = loadCommands(writeConfig(t, "broker_url = 'amqp://h//'\n"), nil)
	require.NoError(t, err)
	assert.Nil(t, cmds)
}

func TestLoadCommandsErrors(t *testing.T) {
	for _, c := range []struct {
		value, msg string
		sentinel   error
	}{
		{`['x']`, "want a dict of task name -> dict, got list", ErrWrongType},
		{`{'t': ['x']}`, `"t": config: wrong type: want a dict, got list`, ErrWrongType},
		{`{'t': {}}`, `"t": config: invalid value: no 'argv'`, ErrInvalidValue},
		{`{'t': {'argv': 'x y'}}`, `set 'shell': True`, ErrWrongType},
		{`{'t': {'argv': ['x', 1]}}`, "argv: config: wrong type: want a list of strings, got int", ErrWrongType},
		{`{'t': {'argv': []}}`, "argv: no program", ErrInvalidValue},
		{`{'t': {'argv': ['a', 'b'], 'shell': True}}`, "give the script as one string", ErrInvalidValue},
		{`{'t': {'argv': ['x'], 'shell': 'yes'}}`, "shell: config: wrong type", ErrWrongType},
		{`{'t': {'argv': ['x'], 'input': 'file'}}`, `input "file"`, ErrInvalidValue},
		{`{'t': {'argv': ['x'], 'env': {'N': 4}}}`, `env: "N": config: wrong type: want a string, got int`, ErrWrongType},
		{`{'t': {'argv': ['x'], 'env': {'A=B': 'c'}}}`, `"A=B" is not a valid variable`, ErrInvalidValue},
		{`{'t': {'argv': ['x'], 'env_allow': 'PATH'}}`, "env_allow: config: wrong type", ErrWrongType},
		{`{'t': {'argv': ['x'], 'max_output': 0}}`, "max_output 0 is out of range", ErrInvalidValue},
		{`{'t': {'argv': ['x'], 'max_output': 1.5}}`, "max_output: config: wrong type", ErrWrongType},
		{`{'t': {'argv': ['x'], 'kill_after': -1}}`, "kill_after -1", ErrInvalidValue},
		{`{'t': {'argv': ['x'], 'kill_after': '5'}}`, "kill_after: config: wrong type", ErrWrongType},
		{`{'t': {'argv': ['x'], 'timeout': 5}}`, `key "timeout" is not supported`, ErrInvalidValue},
		{`{'': {'argv': ['x']}}`, "empty task name", ErrInvalidValue},
	} {
		p := writeConfig(t, "broker_url = 'amqp://h//'\n\nccworker_commands = "+c.value+"\n")
		_, err := loadCommands(p, nil)
		require.Error(t, err, c.value)
		var ke *KeyError
		require.True(t, errors.As(err, &ke), "%s: %T %v", c.value, err, err)
		assert.Equal(t, 3, ke.Line, c.value)
		assert.Equal(t, CommandsKey, ke.Key, c.value)
		assert.ErrorIs(t, err, c.sentinel, c.value)
		assert.Contains(t, err.Error(), p+":3: ccworker_commands: ", c.value)
		assert.Contains(t, err.Error(), c.msg, c.value)
	}
}

func TestParseCommandsNone(t *testing.T) {
	cmds, err := ParseCommands(nil)
	require.NoError(t, err)
	assert.Nil(t, cmds)
}

// loadCommands loads a config file and returns its command tasks.
func loadCommands(path string, env func(string) (string, bool)) (map[string]CommandSpec, error) {
	if env == nil {
		env = mapEnv(nil)
	}
	c, err := Load(path, env)
	if err != nil {
		return nil, err
	}
	return c.Commands, nil
}
