//go:build unix

package connlimit

import "syscall"

// descriptorLimit is the soft RLIMIT_NOFILE (the Go runtime raises it to the
// hard limit at start-up).
func descriptorLimit() (uint64, bool) {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0, false
	}
	// Cur is int64 on some systems, and RLIM_INFINITY all ones.
	n := uint64(r.Cur)
	return n, n < 1<<62
}
