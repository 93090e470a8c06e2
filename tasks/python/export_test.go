package python

import (
	"errors"
	"syscall"
)

// busyForTest returns the pids of the children running a task.
func (p *Pool) busyForTest() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	var pids []int
	for c := range p.children {
		if c.busy.Load() {
			pids = append(pids, c.pid)
		}
	}
	return pids
}

// pidsForTest returns the pids of every live child.
func (p *Pool) pidsForTest() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	var pids []int
	for c := range p.children {
		pids = append(pids, c.pid)
	}
	return pids
}

func syscallKill(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }

// processExists reports whether pid is still a process (a zombie counts as gone: the
// pool reaps its children).
func processExists(pid int) bool {
	return !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}
