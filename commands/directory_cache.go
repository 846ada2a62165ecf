package commands

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/huddle-chat/huddle/domain"
	"github.com/huddle-chat/huddle/eventstore"
)

// DirectoryMaxAge is how long a clinic's directory is used before the store is asked whether
// it changed: another instance's deactivation takes effect here within that time.
const DirectoryMaxAge = time.Second

// directoryCache keeps each clinic's directory in memory, so a message does not reload it. A
// published directory is never changed (a change loads a new one), so readers share it
// without locks. Directory commands of this instance invalidate their clinic at once; other
// instances' are seen within maxAge, at the cost of one version read per clinic per maxAge.
type directoryCache struct {
	store  *eventstore.Store
	maxAge time.Duration

	mu      sync.Mutex
	clinics map[string]*cachedDirectory
}

type cachedDirectory struct {
	refresh sync.Mutex // one reload at a time per clinic
	view    atomic.Pointer[directoryView]
}

type directoryView struct {
	dir     domain.Directory
	version int64
	checked time.Time
}

func newDirectoryCache(store *eventstore.Store, maxAge time.Duration) *directoryCache {
	return &directoryCache{store: store, maxAge: maxAge, clinics: map[string]*cachedDirectory{}}
}

func (c *directoryCache) entry(clinicID string) *cachedDirectory {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.clinics[clinicID]
	if !ok {
		e = &cachedDirectory{}
		c.clinics[clinicID] = e
	}
	return e
}

// Get returns clinicID's directory as of at most maxAge ago. The caller must not change it.
func (c *directoryCache) Get(ctx context.Context, clinicID string) (domain.Directory, error) {
	e := c.entry(clinicID)
	if v := e.view.Load(); v != nil && time.Since(v.checked) < c.maxAge {
		return v.dir, nil
	}
	e.refresh.Lock()
	defer e.refresh.Unlock()
	v := e.view.Load()
	if v != nil && time.Since(v.checked) < c.maxAge {
		return v.dir, nil
	}
	stream := domain.DirectoryStream(clinicID)
	now := time.Now()
	if v != nil {
		version, err := c.store.StreamVersion(ctx, stream)
		if err != nil {
			return domain.Directory{}, fmt.Errorf("directory version: %w", err)
		}
		if version == v.version {
			e.view.Store(&directoryView{dir: v.dir, version: v.version, checked: now})
			return v.dir, nil
		}
	}
	d, version, err := eventstore.Load(ctx, c.store, stream, directoryAggregate)
	if err != nil {
		return domain.Directory{}, fmt.Errorf("load directory: %w", err)
	}
	e.view.Store(&directoryView{dir: d, version: version, checked: now})
	return d, nil
}

// Invalidate makes the next Get of clinicID ask the store (after this instance changed it).
func (c *directoryCache) Invalidate(clinicID string) {
	e := c.entry(clinicID)
	// After any reload under way, which may have read the store before the change.
	e.refresh.Lock()
	defer e.refresh.Unlock()
	if v := e.view.Load(); v != nil {
		e.view.Store(&directoryView{dir: v.dir, version: v.version - 1})
	}
}

// Recheck asks the store whether clinicID's directory changed since it was loaded, and
// reloads it if so: for a caller about to refuse a command on the cached one.
func (c *directoryCache) Recheck(ctx context.Context, clinicID string) (domain.Directory, bool, error) {
	e := c.entry(clinicID)
	before := e.view.Load()
	c.Invalidate(clinicID)
	d, err := c.Get(ctx, clinicID)
	if err != nil {
		return d, false, err
	}
	after := e.view.Load()
	return d, before == nil || after.version != before.version, nil
}
