package natsbroker

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// The embedded server's two users. Anyone who can reach the port but holds neither password is
// refused: the port is open to every process on the host, and an unauthenticated client could
// read every clinic's messages and forge events (issue 14).
const (
	// ServiceUser is Huddle itself (relay, projectors, live hub, CLI tools): full access.
	ServiceUser = "huddle"
	// IntegratorUser may read events (core subscriptions and its own JetStream consumers on
	// HUDDLE_EVENTS) and publish nothing else; see IntegratorPermissions.
	IntegratorUser = "integrator"
)

// Credential files in the data directory, each 0600 holding one line "user:password".
const (
	ServiceCredentialsFile    = "nats-huddle.auth"
	IntegratorCredentialsFile = "nats-integrator.auth"
)

// UserPass is one user's name and password.
type UserPass struct{ User, Password string }

// Credentials are the passwords of the embedded server's users.
type Credentials struct {
	Service    UserPass
	Integrator UserPass
}

func randomPassword() string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return hex.EncodeToString(b)
}

// LoadOrCreateCredentials reads the credential files in dir, creating any that are missing
// (0600, O_EXCL so that two processes starting at once agree on one password).
func LoadOrCreateCredentials(dir string) (Credentials, error) {
	svc, err := loadOrCreate(filepath.Join(dir, ServiceCredentialsFile), ServiceUser)
	if err != nil {
		return Credentials{}, err
	}
	integ, err := loadOrCreate(filepath.Join(dir, IntegratorCredentialsFile), IntegratorUser)
	if err != nil {
		return Credentials{}, err
	}
	return Credentials{Service: svc, Integrator: integ}, nil
}

func loadOrCreate(path, user string) (UserPass, error) {
	for range 50 {
		up, err := ReadCredentials(path)
		if err == nil {
			return up, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			if errors.Is(err, errIncomplete) {
				time.Sleep(20 * time.Millisecond) // being written by a concurrent first start
				continue
			}
			return UserPass{}, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return UserPass{}, err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return UserPass{}, fmt.Errorf("natsbroker: create %s: %w", path, err)
		}
		up = UserPass{user, randomPassword()}
		_, err = f.WriteString(up.User + ":" + up.Password + "\n")
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return UserPass{}, fmt.Errorf("natsbroker: write %s: %w", path, err)
		}
		return up, nil
	}
	return UserPass{}, fmt.Errorf("natsbroker: %s is malformed: delete it (and restart huddle serve) to generate a new one", path)
}

var errIncomplete = errors.New("incomplete credentials file")

// ReadCredentials reads one "user:password" file.
func ReadCredentials(path string) (UserPass, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return UserPass{}, err
	}
	user, pass, ok := strings.Cut(strings.TrimSpace(string(b)), ":")
	if !ok || user == "" || len(pass) < 16 {
		return UserPass{}, fmt.Errorf("%s: %w", path, errIncomplete)
	}
	return UserPass{user, pass}, nil
}

// IntegratorPermissions is what the integrator user may do: subscribe to huddle.events.> (core
// NATS, live only) and run its own JetStream consumers on HUDDLE_EVENTS (create or look up a
// consumer, fetch, ack), receiving on _INBOX.> subjects. It may not publish events, delete
// consumers (Huddle's projectors have their own), read the projectors' delivery subjects
// (huddle.deliver.>, where it would take their messages as a member of their queue group) or
// the live notifications (huddle.live.>), or manage streams.
func IntegratorPermissions() *server.Permissions {
	s := StreamName
	return &server.Permissions{
		Publish: &server.SubjectPermission{
			Allow: []string{
				"$JS.API.INFO",
				"$JS.API.STREAM.NAMES", // nats.go finds the stream by subject unless told to bind
				"$JS.API.STREAM.INFO." + s,
				"$JS.API.CONSUMER.CREATE." + s,
				"$JS.API.CONSUMER.CREATE." + s + ".>",
				"$JS.API.CONSUMER.DURABLE.CREATE." + s + ".*",
				"$JS.API.CONSUMER.INFO." + s + ".*",
				"$JS.API.CONSUMER.MSG.NEXT." + s + ".*",
				"$JS.ACK." + s + ".>",
				"$JS.FC." + s + ".>",
			},
			Deny: []string{"huddle.>"},
		},
		Subscribe: &server.SubjectPermission{
			Allow: []string{"huddle.events.>", "_INBOX.>"},
		},
	}
}

func (c Credentials) users() []*server.User {
	return []*server.User{
		{Username: c.Service.User, Password: c.Service.Password},
		{Username: c.Integrator.User, Password: c.Integrator.Password, Permissions: IntegratorPermissions()},
	}
}

// WithUser puts up into every URL of a comma-separated list (nats.go reads credentials from
// the URL, and hands them on to cluster members it discovers).
func WithUser(urls string, up UserPass) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		if err != nil {
			continue
		}
		u.User = url.UserPassword(up.User, up.Password)
		parts[i] = u.String()
	}
	return strings.Join(parts, ",")
}

// Redact hides passwords in a comma-separated URL list, for logs and error messages.
func Redact(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		if err != nil {
			parts[i] = "(unparsable url)"
			continue
		}
		if u.User == nil {
			continue
		}
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		} else {
			u.User = url.User("xxxxx") // a bare token
		}
		parts[i] = u.String()
	}
	return strings.Join(parts, ",")
}
