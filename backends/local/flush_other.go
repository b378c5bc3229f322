//go:build !linux

package local

// fsFlush: without syncfs(2) every write flushes its own file and
// directory (nil: no group flush).
func fsFlush(root string) (flush func() error, closeFlush func() error, err error) {
	return nil, nil, nil
}
