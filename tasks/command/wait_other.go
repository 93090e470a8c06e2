//go:build !linux

package command

import "errors"

// waitExited is only available on Linux: elsewhere the leader is reaped before its
// group is killed.
func waitExited(int) error { return errors.ErrUnsupported }
