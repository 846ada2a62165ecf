package eventstore

import (
	"encoding/json"
	"fmt"
	"sync"
)

// UpcastFunc turns an event's data from one schema version into the next.
type UpcastFunc func(data json.RawMessage) (json.RawMessage, error)

// Upcasters is a registry of upcasters by event type and the schema version they upgrade from.
// Every read path of a Store runs them, so callers only ever see an event type's latest shape.
// Stored rows are never rewritten (the hash chain covers the stored form).
type Upcasters struct {
	mu sync.RWMutex
	m  map[string]map[int]UpcastFunc
}

// NewUpcasters returns an empty registry.
func NewUpcasters() *Upcasters { return &Upcasters{m: map[string]map[int]UpcastFunc{}} }

var defaultUpcasters = NewUpcasters()

// RegisterUpcaster adds fn to the package's default registry, which New copies: call it from
// an init function of the package that owns the event type.
func RegisterUpcaster(eventType string, fromVersion int, fn UpcastFunc) {
	defaultUpcasters.Register(eventType, fromVersion, fn)
}

// Register makes fn upgrade eventType's data from fromVersion to fromVersion+1. Chains run in
// order: an event stored at version 1 with upcasters from 1 and 2 is read as version 3.
func (u *Upcasters) Register(eventType string, fromVersion int, fn UpcastFunc) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.m[eventType] == nil {
		u.m[eventType] = map[int]UpcastFunc{}
	}
	u.m[eventType][fromVersion] = fn
}

func (u *Upcasters) clone() *Upcasters {
	u.mu.RLock()
	defer u.mu.RUnlock()
	c := NewUpcasters()
	for t, byVersion := range u.m {
		c.m[t] = map[int]UpcastFunc{}
		for v, fn := range byVersion {
			c.m[t][v] = fn
		}
	}
	return c
}

// upcast rewrites e in place to its type's latest schema version.
func (u *Upcasters) upcast(e *RecordedEvent) error {
	u.mu.RLock()
	byVersion := u.m[e.Type]
	u.mu.RUnlock()
	if byVersion == nil {
		return nil
	}
	for {
		u.mu.RLock()
		fn := byVersion[e.SchemaVersion]
		u.mu.RUnlock()
		if fn == nil {
			return nil
		}
		data, err := fn(e.Data)
		if err != nil {
			return fmt.Errorf("upcast %s %s from v%d: %w", e.Type, e.EventID, e.SchemaVersion, err)
		}
		e.Data = data
		e.SchemaVersion++
	}
}

// Upcast brings e, read by the caller's own query, to its type's latest schema version, as
// every read of the store does. Upcasting depends on the type, schema version and data only.
func (s *Store) Upcast(e *RecordedEvent) error { return s.upcasters.upcast(e) }
