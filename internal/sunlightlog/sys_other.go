//go:build !linux

package sunlightlog

import "syscall"

func lockFile(string) (unlock func()) { return func() {} }

func sysProcAttr() *syscall.SysProcAttr { return nil }

func clearImmutable(string) {}
