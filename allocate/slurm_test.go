package allocate

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseSqueue(t *testing.T) {
	out := "12_0|RUNNING|2026-12-02T14:40:01|ccworker-allocate:q\n" +
		"12_1|PENDING|2026-12-02T14:40:01|ccworker-allocate:q\n" +
		"13|COMPLETED|2026-12-02T14:41:00|ccworker-allocate:q\n" +
		"14|RUNNING|2026-12-02T14:41:00|someone else's job of the same name\n" +
		"garbage\n\n"
	jobs := parseSqueue([]byte(out), "ccworker-allocate:q")
	require.Len(t, jobs, 3)
	assert.Equal(t, "12_0", jobs[0].ID)
	assert.Equal(t, "RUNNING", jobs[0].State)
	assert.Equal(t, 14, jobs[0].Submitted.Hour())
	assert.Equal(t, classRunning, class("RUNNING"))
	assert.Equal(t, classRunning, class("COMPLETING"))
	assert.Equal(t, classPending, class("PENDING"))
	assert.Equal(t, classPending, class("REQUEUE_HOLD"))
	assert.Equal(t, classEnded, class("CANCELLED"))
}

type call struct {
	name string
	args []string
}

func stubSlurm(outs map[string]string, fail error) (*Slurm, *[]call) {
	var calls []call
	s := &Slurm{Name: "ccworker-alloc-q", Script: []byte("#!/bin/bash\n"), ScriptName: "built-in ccworker-array.sbatch",
		ScriptArgs: []string{"--bin", "/x/ccworker", "-Q", "q"}, Partition: "debug", TimeLimit: "10",
		SbatchArgs: []string{"--output=/tmp/%A_%a.out"}, User: "alice"}
	s.run = func(_ context.Context, _ []byte, _ []string, name string, args ...string) ([]byte, error) {
		calls = append(calls, call{name, args})
		if fail != nil {
			return nil, fail
		}
		if name == "sbatch" {
			// the script file exists while sbatch runs
			if _, err := os.Stat(args[len(args)-5]); err != nil {
				return nil, err
			}
		}
		return []byte(outs[name]), nil
	}
	return s, &calls
}

func TestSlurmSubmitArray(t *testing.T) {
	s, calls := stubSlurm(map[string]string{"sbatch": "4242;cluster\n"}, nil)
	sub, err := s.Submit(context.Background(), 3)
	require.NoError(t, err)
	assert.Equal(t, Submitted{IDs: []string{"4242"}, Jobs: 3}, sub)
	require.Len(t, *calls, 1)
	args := strings.Join((*calls)[0].args, " ")
	assert.Contains(t, args, "--parsable --job-name=ccworker-alloc-q --comment=ccworker-allocate:ccworker-alloc-q --partition=debug --time=10 --array=0-2 --output=/tmp/%A_%a.out ")
	assert.True(t, strings.HasSuffix(args, " --bin /x/ccworker -Q q"), args)
	assert.Equal(t, "built-in ccworker-array.sbatch", s.Command(3)[8])
}

func TestSlurmSubmitNodes(t *testing.T) {
	s, calls := stubSlurm(map[string]string{"sbatch": "77\n"}, nil)
	s.Nodes, s.WorkersPerJob = true, 2
	sub, err := s.Submit(context.Background(), 2)
	require.NoError(t, err)
	assert.Equal(t, Submitted{IDs: []string{"77", "77"}, Jobs: 2}, sub)
	require.Len(t, *calls, 2)
	assert.Contains(t, (*calls)[0].args, "--nodes=2")
}

func TestSlurmSubmitErrors(t *testing.T) {
	s, _ := stubSlurm(nil, errors.New("sbatch: error: invalid partition specified: nope"))
	_, err := s.Submit(context.Background(), 1)
	assert.ErrorContains(t, err, "invalid partition")
	s, _ = stubSlurm(map[string]string{"sbatch": "Submitted batch job 5\n"}, nil)
	_, err = s.Submit(context.Background(), 1)
	assert.ErrorContains(t, err, "not a job id")
}

func TestSlurmJobs(t *testing.T) {
	s, calls := stubSlurm(map[string]string{"squeue": "5_0|PENDING|N/A|ccworker-allocate:ccworker-alloc-q\n"}, nil)
	jobs, err := s.Jobs(context.Background())
	require.NoError(t, err)
	assert.Equal(t, []Job{{ID: "5_0", State: "PENDING"}}, jobs)
	assert.Equal(t, []string{"-h", "-r", "-t", "all", "--name", "ccworker-alloc-q", "-o", "%i|%T|%V|%k", "-u", "alice"}, (*calls)[0].args)
}

func TestSettingsApply(t *testing.T) {
	s := DefaultSettings()
	require.NoError(t, s.Apply(map[string]any{
		"broker_url":                           "amqp://x//",
		"ccworker_allocate_max_jobs":           int64(8),
		"ccworker_allocate_min_interval":       2.5,
		"ccworker_allocate_partition":          "short",
		"ccworker_allocate_sbatch_args":        []any{"--qos=low", "--mem=4G"},
		"ccworker_allocate_time_limit":         int64(30),
		"ccworker_allocate_backlog_per_worker": int64(50),
	}, func(k string) bool { return k == "ccworker_allocate_partition" }))
	assert.Equal(t, 8, s.Limits.MaxJobs)
	assert.Equal(t, 2500*time.Millisecond, s.Limits.MinInterval)
	assert.Equal(t, "", s.Partition, "a flag given wins")
	assert.Equal(t, []string{"--qos=low", "--mem=4G"}, s.SbatchArgs)
	assert.Equal(t, "30", s.TimeLimit)
	assert.Equal(t, 50, s.Limits.BacklogPerWorker)
	require.NoError(t, s.Check())

	for _, bad := range []map[string]any{
		{"ccworker_allocate_max_jobz": int64(1)},
		{"ccworker_allocate_max_jobs": "4"},
		{"ccworker_allocate_max_jobs": int64(-1)},
		{"ccworker_allocate_min_interval": "30s"},
		{"ccworker_allocate_sbatch_args": []any{int64(1)}},
	} {
		s := DefaultSettings()
		assert.Error(t, s.Apply(bad, nil), "%v", bad)
	}
	for _, mod := range []func(*Settings){
		func(s *Settings) { s.Mode = "both" },
		func(s *Settings) { s.Limits.WorkersPerJob = 2 },
		func(s *Settings) { s.Name = "a,b" },
		func(s *Settings) { s.WorkerMaxIdle = 0 },
		func(s *Settings) { s.Limits.MaxJobs = 0 },
	} {
		s := DefaultSettings()
		mod(&s)
		assert.Error(t, s.Check())
	}
	assert.Equal(t, "sbatch-arg", FlagName("ccworker_allocate_sbatch_args"))
	assert.Equal(t, "max-jobs", FlagName("ccworker_allocate_max_jobs"))
	assert.Len(t, Keys(), 20)
}

func TestSlurmCommandTimeout(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(dir+"/squeue", []byte("#!/bin/sh\nexec sleep 30\n"), 0o755))
	t.Setenv("PATH", dir+":"+os.Getenv("PATH"))
	s := &Slurm{Name: "x", Timeout: 200 * time.Millisecond}
	start := time.Now()
	_, err := s.Jobs(context.Background())
	assert.Error(t, err)
	assert.Less(t, time.Since(start), 20*time.Second)
}
