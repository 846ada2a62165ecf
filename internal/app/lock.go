package app

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// LockFile in the data directory is held (flock) by the `huddle serve` that uses the
// directory's embedded Postgres or NATS, and names its pid. A second serve on the same
// directory would share the first's Postgres, run a second NATS on the same JetStream store,
// and remove the first's nats.url when it exits (issue 14, finding 8).
//
// flock rather than a pid file: the kernel releases it when the process dies however it dies,
// so a crash leaves no stale lock to clean up. The file itself is never removed (removing it
// would let a third process lock a new file while the second still holds the old one).
const LockFile = "serve.lock"

// ErrDataDirInUse is returned by Start when another process holds the data directory.
var ErrDataDirInUse = errors.New("data directory in use")

// lockDataDir takes the data directory's lock, or says who holds it.
func lockDataDir(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b, _ := io.ReadAll(io.LimitReader(f, 64))
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			pid := strings.TrimSpace(string(b))
			if pid == "" {
				pid = "unknown"
			}
			return nil, fmt.Errorf("%w: another huddle serve (pid %s) is running on HUDDLE_DATA_DIR=%s; stop it first, or give this one its own data directory", ErrDataDirInUse, pid, dir)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	err = f.Truncate(0)
	if err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return f, nil
}
