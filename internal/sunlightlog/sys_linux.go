package sunlightlog

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"unsafe"
)

// lockFile takes an exclusive advisory lock on path (creating it), waiting
// for it, and returns the function that releases it. Locking is best effort:
// on failure it returns a no-op.
func lockFile(path string) (unlock func()) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return func() {}
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return func() {}
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}
}

// sysProcAttr makes the kernel kill a child when the test process dies (for
// example on a test timeout), so no log server outlives its test.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

const (
	fsIocGetflags = 0x80086601 // FS_IOC_GETFLAGS
	fsIocSetflags = 0x40086602 // FS_IOC_SETFLAGS
	fsImmutableFl = 0x00000010 // FS_IMMUTABLE_FL
)

// clearImmutable removes the immutable attribute (chattr +i) from every file
// under dir. Sunlight's local backend sets it, as a best effort, on tiles and
// issuers it writes; it succeeds when running as root on a file system that
// supports it, and then nothing (not even root) can delete those files, so
// the test's temporary directory could not be removed.
func clearImmutable(dir string) {
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return nil
		}
		defer f.Close()
		var flags int32
		if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), fsIocGetflags, uintptr(unsafe.Pointer(&flags))); errno != 0 {
			return nil
		}
		if flags&fsImmutableFl == 0 {
			return nil
		}
		flags &^= fsImmutableFl
		syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), fsIocSetflags, uintptr(unsafe.Pointer(&flags)))
		return nil
	})
}
