package cli

import (
	"os"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ccworker/ccworker/allocate"
)

// Every flag and setting of `ccworker allocate` is documented in docs/configuration.md.
func TestEveryAllocateOptionIsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/configuration.md")
	require.NoError(t, err)
	cmd := newAllocateCommand()
	for _, c := range []*cobra.Command{cmd, cmd.Commands()[0]} {
		c.Flags().VisitAll(func(f *pflag.Flag) {
			assert.True(t, strings.Contains(string(doc), "`--"+f.Name) || strings.Contains(string(doc), ", --"+f.Name),
				"allocate flag --%s is not in docs/configuration.md", f.Name)
		})
	}
	for _, k := range allocate.Keys() {
		assert.True(t, strings.Contains(string(doc), "`"+k+"`"), "setting %s is not in docs/configuration.md", k)
		if k != allocate.KeyPrefix+"script_args" { // the arguments after --
			assert.NotNil(t, cmd.Flags().Lookup(allocate.FlagName(k)), "setting %s has no flag", k)
		}
	}
}

// allocateSettings parses args as `ccworker allocate` does and resolves its settings.
func allocateSettings(t *testing.T, args ...string) (*allocateOptions, *settings, *allocate.Slurm, error) {
	t.Helper()
	cmd := newAllocateCommand()
	o := &allocateOptions{set: allocate.DefaultSettings()}
	cmd.ResetFlags()
	o.bind(cmd)
	require.NoError(t, cmd.ParseFlags(args))
	s, err := o.settings(cmd, cmd.Flags().Args())
	if err != nil {
		return o, nil, nil, err
	}
	sl, err := o.scheduler(cmd, s)
	return o, s, sl, err
}

func TestAllocateSettingsFromConfigAndFlags(t *testing.T) {
	dir := isolate(t)
	cfg := writeFile(t, dir, "celeryconfig.py", `broker_url = 'amqp://guest:guest@127.0.0.1:5672//'
task_default_queue = 'hpc'
ccworker_allocate_max_jobs = 16
ccworker_allocate_partition = 'short'
ccworker_allocate_min_interval = 5
ccworker_allocate_sbatch_args = ['--qos=low']
ccworker_allocate_script_args = ['-c', '8']
`)
	o, _, sl, err := allocateSettings(t, "--config", cfg, "--partition", "long", "--bin", "/opt/ccworker", "-b", "amqp://u:secret@h//")
	require.NoError(t, err)
	assert.Equal(t, 16, o.set.Limits.MaxJobs)
	assert.Equal(t, "long", sl.Partition, "the flag wins")
	assert.Equal(t, "ccworker-alloc-hpc", sl.Name)
	assert.Equal(t, []string{"--qos=low"}, sl.SbatchArgs)
	assert.Equal(t, []string{"--bin", "/opt/ccworker", "-Q", "hpc", "--max-idle", "1m0s", "--config", cfg, "-c", "8"}, sl.ScriptArgs)
	assert.Equal(t, []string{"CELERY_BROKER_URL=amqp://u:secret@h//"}, sl.Env, "-b reaches the jobs through the environment")
	assert.NotContains(t, strings.Join(sl.Command(2), " "), "secret")
	assert.Contains(t, string(sl.Script), "ccworker-array.sbatch", "the built-in array script")

	_, _, sl, err = allocateSettings(t, "--config", cfg, "--mode", "nodes", "--workers-per-job", "4", "--", "-c", "2")
	require.NoError(t, err)
	assert.True(t, sl.Nodes)
	assert.Contains(t, string(sl.Script), "srun")
	assert.Equal(t, []string{"-c", "2"}, sl.ScriptArgs[len(sl.ScriptArgs)-2:], "script options after -- replace the configured ones")
}

func TestAllocateUsageErrorsExit2(t *testing.T) {
	dir := isolate(t)
	bad := writeFile(t, dir, "bad.py", "ccworker_allocate_max_jobz = 3\n")
	for _, args := range [][]string{
		{"allocate", "--max-jobs", "0"},
		{"allocate", "--workers-per-job", "2"}, // array mode
		{"allocate", "--mode", "both"},
		{"allocate", "--worker-max-idle", "0"},
		{"allocate", "stray"},
		{"allocate", "--config", bad},
		{"allocate", "--script", dir + "/missing.sbatch"},
		{"allocate", "status", "extra"},
	} {
		code, _, stderr := capture(t, args...)
		assert.Equal(t, exitConfig, code, "%v: %s", args, stderr)
	}
}
