// Package pgcluster runs a private PostgreSQL cluster from the server binaries installed on the
// machine: the embedded default of `huddle serve` and the throwaway database of the tests.
//
// The cluster listens only on a unix socket (empty listen_addresses), so several clusters can run
// side by side without port clashes. initdb refuses to run as root, and CI runs as root: when
// the process is root, initdb and postgres run as an unprivileged user (postgres if present,
// else nobody) who is given the cluster directory. The child gets a parent-death signal, so a
// killed Huddle does not leave an orphaned server behind; a stale postmaster.pid left by a
// crash is recognised and cleared on the next start.
package pgcluster
