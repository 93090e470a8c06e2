package cli

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"go.uber.org/zap"

	"github.com/ccworker/ccworker/config"
	"github.com/ccworker/ccworker/tasks"
	"github.com/ccworker/ccworker/tasks/command"
)

// registerCommands registers the command tasks that ccworker_commands in the config file
// declares (see package tasks/command), each with its 'doc' as docstring. Call it after
// the built-in tasks and before the aliases, so that ccworker_task_aliases may name a
// command task. A bad entry is a *config.KeyError naming the file and line.
func registerCommands(reg *tasks.Registry, cfg *config.Config, log *zap.Logger) error {
	specs := cfg.Commands
	for _, name := range slices.Sorted(maps.Keys(specs)) {
		cs := specs[name]
		h, err := command.New(command.Spec{
			Name: name, Argv: cs.Argv, Shell: cs.Shell, Dir: cs.Cwd, Env: cs.Env, EnvAllow: cs.EnvAllow,
			Input: command.Input(cs.Input), MaxOutput: cs.MaxOutput, KillAfter: cs.KillAfter,
		}, command.Options{Log: log})
		if err != nil {
			return &config.KeyError{File: cfg.File, Line: cs.Line, Key: config.CommandsKey, Err: fmt.Errorf("%q: %w", name, err)}
		}
		doc := cs.Doc
		if doc == "" {
			doc = "Run " + strings.Join(cs.Argv, " ")
			if cs.Shell {
				doc = "Run /bin/sh -c " + cs.Argv[0]
			}
		}
		if err := reg.RegisterWith(name, h, tasks.Options{Doc: doc}); err != nil {
			return fmt.Errorf("%s: %q: %w", config.CommandsKey, name, err)
		}
		log.Debug("command task registered", zap.String("task", name), zap.Strings("argv", cs.Argv))
	}
	return nil
}
