package pgcluster

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// runAs is the identity initdb and postgres run under. A nil *runAs means "as this process".
type runAs struct {
	name     string
	uid, gid uint32
}

// serverUser picks the identity for the server processes: when we are root, initdb would refuse
// to run, so take the postgres user if the machine has one, else nobody.
func serverUser() (*runAs, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		return &runAs{name: name, uid: uint32(uid), gid: uint32(gid)}, nil
	}
	return nil, fmt.Errorf("running as root, but neither a postgres nor a nobody user exists to run PostgreSQL as (initdb refuses root): create one (e.g. `useradd --system postgres`) or run as a normal user")
}

func (r *runAs) sysProcAttr() *syscall.SysProcAttr {
	attr := &syscall.SysProcAttr{
		// A killed Huddle must not leave its server running: SIGINT is a fast, clean shutdown.
		// The signal fires when the forking OS thread exits, so Start forks from a goroutine
		// locked to its thread for the server's whole life.
		Pdeathsig: syscall.SIGINT,
		Setpgid:   true, // a Ctrl-C in the terminal goes to Huddle, which then stops the server in order
	}
	if r != nil {
		attr.Credential = &syscall.Credential{Uid: r.uid, Gid: r.gid, Groups: []uint32{}}
	}
	return attr
}

// give hands dir (recursively) to the server user; files already theirs are left alone, so a
// restart on a large data directory costs one walk and no writes.
func (r *runAs) give(dir string) error {
	if r == nil {
		return nil
	}
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		// A running server (one we are about to attach to) creates and removes files while we
		// walk; a vanished file needs no owner.
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok && st.Uid == r.uid && st.Gid == r.gid {
			return nil
		}
		if err := os.Lchown(path, int(r.uid), int(r.gid)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("give %s to user %s: %w", path, r.name, err)
		}
		return nil
	})
}

// makeTraversable ensures the server user can reach dir: every parent must grant it search
// (x) permission. Root-owned 0700 parents (t.TempDir, os.MkdirTemp, a home directory) get o+x
// added, which lets others pass through by exact name but not list the directory. Where that
// cannot be done, the error names the directory and the fix.
func (r *runAs) makeTraversable(dir string, log *slog.Logger) error {
	if r == nil {
		return nil
	}
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("check %s: %w", p, err)
		}
		if !r.canSearch(fi) {
			mode := fi.Mode().Perm() | 0o001
			if err := os.Chmod(p, mode); err != nil {
				return fmt.Errorf("PostgreSQL runs as user %s, which cannot enter %s (mode %v), a parent of %s; "+
					"run `chmod o+x %s` or choose a data directory elsewhere (HUDDLE_DATA_DIR): %w",
					r.name, p, fi.Mode().Perm(), dir, p, err)
			}
			log.Warn("made a parent directory traversable for the PostgreSQL user",
				"dir", p, "user", r.name, "mode", fmt.Sprintf("%o", mode))
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

func (r *runAs) canSearch(fi os.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return true
	}
	perm := fi.Mode().Perm()
	switch {
	case st.Uid == r.uid:
		return perm&0o100 != 0
	case st.Gid == r.gid:
		return perm&0o010 != 0
	default:
		return perm&0o001 != 0
	}
}
