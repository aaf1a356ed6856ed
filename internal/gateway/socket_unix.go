//go:build unix

package gateway

import (
	"errors"
	"syscall"
)

// rawReads: readiness is awaited without a buffer (see socket.fill).
const rawReads = true

// readFD reads from a non-blocking descriptor; EAGAIN means nothing yet.
func readFD(fd uintptr, p []byte) (int, error) {
	for {
		n, err := syscall.Read(int(fd), p)
		if !errors.Is(err, syscall.EINTR) {
			return n, err
		}
	}
}
