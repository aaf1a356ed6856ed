//go:build !unix

package gateway

import "errors"

const rawReads = false

// readFD is not available here: newSocket falls back to plain reads.
func readFD(uintptr, []byte) (int, error) { return 0, errors.ErrUnsupported }
