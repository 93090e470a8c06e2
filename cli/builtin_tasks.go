package cli

import (
	"fmt"
	"maps"
	"slices"

	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/ccworker/ccworker/config"
	"github.com/ccworker/ccworker/tasks"
)

// builtinFlag is --builtin-tasks; unset, ccworker_builtin_tasks decides.
const builtinFlag = "builtin-tasks"

func bindBuiltinFlag(f *pflag.FlagSet, dst *bool) {
	f.BoolVar(dst, builtinFlag, false,
		"register the built-in ccworker.* tasks (default: ccworker_builtin_tasks, else only when the worker has no tasks of its own)")
}

// registerTasks fills reg with the tasks this worker serves apart from Python's: the
// embedding program's (register), ccworker_commands, the built-ins when wanted, then
// ccworker_task_aliases. A deployment's own workers must not offer the built-ins
// (cyberCommons lists every registered task as runnable), so they are registered only
// when asked for, or when the worker would otherwise have no task at all (the demo).
// An alias naming a built-in still works without the built-ins.
func registerTasks(reg *tasks.Registry, register Register, cfg *config.Config, flags *pflag.FlagSet,
	builtinOn bool, hasPython bool, log *zap.Logger) error {
	if register != nil {
		if err := register(reg); err != nil {
			return usageError{fmt.Errorf("registering tasks: %w", err)}
		}
	}
	if err := registerCommands(reg, cfg, log); err != nil {
		return usageError{err}
	}
	want := len(reg.Names()) == 0 && len(cfg.TaskAliases) == 0 && !hasPython
	switch {
	case flags.Changed(builtinFlag):
		want = builtinOn
	case cfg.BuiltinTasks != nil:
		want = *cfg.BuiltinTasks
	}
	if want {
		if err := tasks.RegisterBuiltins(reg); err != nil {
			return usageError{fmt.Errorf("built-in tasks: %w", err)}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(cfg.TaskAliases)) {
		target := cfg.TaskAliases[name]
		var err error
		if _, ok := reg.Lookup(target); !ok && tasks.IsBuiltin(target) {
			err = tasks.RegisterBuiltinAs(reg, target, name)
		} else {
			err = reg.Alias(name, target)
		}
		if err != nil {
			return usageError{fmt.Errorf("ccworker_task_aliases: %w", err)}
		}
	}
	return nil
}
