package cli

import (
	"context"
	"testing"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/ccworker/ccworker/config"
	"github.com/ccworker/ccworker/tasks"
)

// The built-in tasks are registered only where the deployment has no tasks of its own,
// unless a setting or the flag says otherwise; an alias to a built-in always works.
func TestBuiltinTasksOnlyWhenWanted(t *testing.T) {
	yes, no := true, false
	own := func(r *tasks.Registry) error {
		return r.Register("myapp.scale", func(context.Context, *tasks.Call) (any, error) { return nil, nil })
	}
	cmds := map[string]config.CommandSpec{"hpc.run": {Argv: []string{"/bin/true"}}}
	for _, tc := range []struct {
		name      string
		register  Register
		cfg       config.Config
		args      []string
		hasPython bool
		want      []string
	}{
		{name: "nothing of its own", want: []string{tasks.AddName, tasks.EchoName, tasks.FailName, tasks.FlakyName, tasks.NoopName, tasks.SleepName}},
		{name: "Go registrations", register: own, want: []string{"myapp.scale"}},
		{name: "commands", cfg: config.Config{Commands: cmds}, want: []string{"hpc.run"}},
		{name: "python imports", hasPython: true, want: []string{}},
		{name: "alias to a built-in", cfg: config.Config{TaskAliases: map[string]string{"cybercomq.tasks.tasks.add": tasks.AddName}},
			want: []string{"cybercomq.tasks.tasks.add"}},
		{name: "setting on", cfg: config.Config{Commands: cmds, BuiltinTasks: &yes},
			want: []string{tasks.AddName, tasks.EchoName, tasks.FailName, tasks.FlakyName, tasks.NoopName, tasks.SleepName, "hpc.run"}},
		{name: "setting off", cfg: config.Config{BuiltinTasks: &no}, want: []string{}},
		{name: "flag on beats the setting", register: own, cfg: config.Config{BuiltinTasks: &no}, args: []string{"--builtin-tasks"},
			want: []string{tasks.AddName, tasks.EchoName, tasks.FailName, tasks.FlakyName, tasks.NoopName, tasks.SleepName, "myapp.scale"}},
		{name: "flag off", args: []string{"--builtin-tasks=false"}, want: []string{}},
		{name: "alias with built-ins on", cfg: config.Config{BuiltinTasks: &yes, TaskAliases: map[string]string{"x.add": tasks.AddName}},
			want: []string{tasks.AddName, tasks.EchoName, tasks.FailName, tasks.FlakyName, tasks.NoopName, tasks.SleepName, "x.add"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := pflag.NewFlagSet("t", pflag.ContinueOnError)
			var on bool
			bindBuiltinFlag(f, &on)
			require.NoError(t, f.Parse(tc.args))
			reg := tasks.NewRegistry()
			require.NoError(t, registerTasks(reg, tc.register, &tc.cfg, f, on, tc.hasPython, zap.NewNop()))
			assert.Equal(t, tc.want, reg.Names())
			for alias := range tc.cfg.TaskAliases {
				h, ok := reg.Lookup(alias)
				require.True(t, ok)
				v, err := h(context.Background(), &tasks.Call{Args: []any{int64(2), int64(3)}})
				require.NoError(t, err)
				assert.Equal(t, int64(5), v)
				assert.NotEmpty(t, reg.Options(alias).Doc)
			}
		})
	}

	reg := tasks.NewRegistry()
	err := registerTasks(reg, nil, &config.Config{TaskAliases: map[string]string{"x": "nope"}},
		pflag.NewFlagSet("t", pflag.ContinueOnError), false, false, zap.NewNop())
	assert.ErrorIs(t, err, tasks.ErrUnknown)
}
