package connlimit

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// pending reports whether bytes have arrived on c that the server has not
// read yet: a request sent just before the limit was reached is not silence.
func pending(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	n := 0
	if err := rc.Control(func(fd uintptr) { n, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ) }); err != nil {
		return false
	}
	return n > 0
}
