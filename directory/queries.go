package directory

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

var (
	// ErrNotFound: no such room in the clinic.
	ErrNotFound = errors.New("not found")
	// ErrBadCursor: a cursor these lists did not issue.
	ErrBadCursor = errors.New("malformed cursor")
)

// Queries reads the directory: the staff's address book and the administrators' lists. Every
// query is scoped by clinic.
type Queries struct{ pool *pgxpool.Pool }

// New returns the directory's queries over pool.
func New(pool *pgxpool.Pool) *Queries { return &Queries{pool: pool} }

// Contact is one entry of the address book.
type Contact struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Email string `json:"email"`
	Title string `json:"title"`
}

const sqlContacts = `SELECT u.user_id, u.name, u.email, u.title FROM dir_users u
	WHERE u.clinic_id = $1 AND u.active AND u.user_id <> $2
	  AND EXISTS (SELECT 1 FROM dir_users me WHERE me.clinic_id = $1 AND me.user_id = $2 AND me.active)
	  AND EXISTS (SELECT 1 FROM dir_room_members a
	      JOIN dir_room_members b ON b.clinic_id = a.clinic_id AND b.room_id = a.room_id
	      WHERE a.clinic_id = $1 AND a.user_id = $2 AND b.user_id = u.user_id)
	  AND ($3 = '' OR lower(u.name) LIKE $3 ESCAPE '\' OR lower(u.email) LIKE $3 ESCAPE '\')
	ORDER BY lower(u.name), u.user_id
	LIMIT $4`

// Contacts returns the caller's address book: active users sharing a waiting room with them,
// never themselves, whose name or email contains search (case-insensitive), by name, at most
// limit (the API's page limit).
func (l *Queries) Contacts(ctx context.Context, clinicID, userID, search string, limit int) ([]Contact, error) {
	rows, err := l.pool.Query(ctx, sqlContacts, clinicID, userID, LikePattern(search), limit)
	if err != nil {
		return nil, fmt.Errorf("contacts: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Contact, error) {
		var c Contact
		err := r.Scan(&c.ID, &c.Name, &c.Email, &c.Title)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("contacts: %w", err)
	}
	if out == nil {
		out = []Contact{}
	}
	return out, nil
}

// User is a row of the users list.
type User struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Email  string `json:"email"`
	Title  string `json:"title"`
	Active bool   `json:"active"`
	key    string // lower(name) as Postgres computes it: the cursor's sort key
}

// Room is a row of the rooms list.
type Room struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	MemberCount int    `json:"member_count"`
	key         string
}

// Member is a row of a room's members list.
type Member struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Email string `json:"email"`
	key   string
}

// Page is one page of a list; NextCursor is empty on the last page.
type Page[T any] struct {
	Items      []T
	NextCursor string
}

// Every list is ordered by (lower(name), id) and paged by keyset on that pair, so a page never
// repeats or skips a row because others were added meanwhile. A cursor is the last row's pair,
// lower(name) as Postgres computed it (Go's lowercasing may differ outside ASCII).
type cursor struct {
	Name string `json:"n"`
	ID   string `json:"id"`
}

func encodeCursor(name, id string) string {
	raw, _ := json.Marshal(cursor{Name: name, ID: id})
	return base64.RawURLEncoding.EncodeToString(raw)
}

// decodeCursor returns the key to continue after; nil for the first page.
func decodeCursor(s string) (*cursor, error) {
	if s == "" {
		return nil, nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, ErrBadCursor
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	var c cursor
	if err := dec.Decode(&c); err != nil || c.ID == "" {
		return nil, ErrBadCursor
	}
	return &c, nil
}

// after is the keyset arguments of a cursor: SQL NULL for the first page.
func after(c *cursor) (name, id *string) {
	if c == nil {
		return nil, nil
	}
	return &c.Name, &c.ID
}

// LikePattern is the directory's search rule: it turns a search string into a case-insensitive
// substring LIKE pattern ("" for none), escaping LIKE's metacharacters (use with ESCAPE '\').
func LikePattern(q string) string {
	q = strings.ToLower(strings.TrimSpace(q))
	if q == "" {
		return ""
	}
	return "%" + strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(q) + "%"
}

const sqlUsers = `SELECT user_id, name, email, title, active, lower(name) FROM dir_users
	WHERE clinic_id = $1
	  AND ($2 = '' OR lower(name) LIKE $2 ESCAPE '\' OR lower(email) LIKE $2 ESCAPE '\')
	  AND ($3::text IS NULL OR (lower(name), user_id) > ($3, $4))
	ORDER BY lower(name), user_id
	LIMIT $5`

// Users lists the clinic's users, active or not, whose name or email contains q
// (case-insensitive), by name.
func (l *Queries) Users(ctx context.Context, clinicID, q string, limit int, cur string) (Page[User], error) {
	c, err := decodeCursor(cur)
	if err != nil {
		return Page[User]{}, err
	}
	name, id := after(c)
	rows, err := l.pool.Query(ctx, sqlUsers, clinicID, LikePattern(q), name, id, limit+1)
	if err != nil {
		return Page[User]{}, fmt.Errorf("list users: %w", err)
	}
	users, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (User, error) {
		var u User
		err := r.Scan(&u.ID, &u.Name, &u.Email, &u.Title, &u.Active, &u.key)
		return u, err
	})
	if err != nil {
		return Page[User]{}, fmt.Errorf("list users: %w", err)
	}
	return page(users, limit, func(u User) (string, string) { return u.key, u.ID }), nil
}

const sqlRooms = `SELECT r.room_id, r.name, lower(r.name),
		(SELECT count(*) FROM dir_room_members m WHERE m.clinic_id = r.clinic_id AND m.room_id = r.room_id)
	FROM dir_rooms r
	WHERE r.clinic_id = $1 AND ($2::text IS NULL OR (lower(r.name), r.room_id) > ($2, $3))
	ORDER BY lower(r.name), r.room_id
	LIMIT $4`

// Rooms lists the clinic's waiting rooms with their member counts, by name.
func (l *Queries) Rooms(ctx context.Context, clinicID string, limit int, cur string) (Page[Room], error) {
	c, err := decodeCursor(cur)
	if err != nil {
		return Page[Room]{}, err
	}
	name, id := after(c)
	rows, err := l.pool.Query(ctx, sqlRooms, clinicID, name, id, limit+1)
	if err != nil {
		return Page[Room]{}, fmt.Errorf("list rooms: %w", err)
	}
	rooms, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Room, error) {
		var room Room
		err := r.Scan(&room.ID, &room.Name, &room.key, &room.MemberCount)
		return room, err
	})
	if err != nil {
		return Page[Room]{}, fmt.Errorf("list rooms: %w", err)
	}
	return page(rooms, limit, func(r Room) (string, string) { return r.key, r.ID }), nil
}

const sqlRoomExists = `SELECT EXISTS (SELECT 1 FROM dir_rooms WHERE clinic_id = $1 AND room_id = $2)`

const sqlMembers = `SELECT m.user_id, coalesce(u.name, ''), coalesce(u.email, ''), lower(coalesce(u.name, ''))
	FROM dir_room_members m
	LEFT JOIN dir_users u ON u.clinic_id = m.clinic_id AND u.user_id = m.user_id
	WHERE m.clinic_id = $1 AND m.room_id = $2
	  AND ($3::text IS NULL OR (lower(coalesce(u.name, '')), m.user_id) > ($3, $4))
	ORDER BY lower(coalesce(u.name, '')), m.user_id
	LIMIT $5`

// Members lists a room's members by name; ErrNotFound when the clinic has no such room.
func (l *Queries) Members(ctx context.Context, clinicID, roomID string, limit int, cur string) (Page[Member], error) {
	c, err := decodeCursor(cur)
	if err != nil {
		return Page[Member]{}, err
	}
	var exists bool
	if err := l.pool.QueryRow(ctx, sqlRoomExists, clinicID, roomID).Scan(&exists); err != nil {
		return Page[Member]{}, fmt.Errorf("list members: %w", err)
	}
	if !exists {
		return Page[Member]{}, ErrNotFound
	}
	name, id := after(c)
	rows, err := l.pool.Query(ctx, sqlMembers, clinicID, roomID, name, id, limit+1)
	if err != nil {
		return Page[Member]{}, fmt.Errorf("list members: %w", err)
	}
	members, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Member, error) {
		var m Member
		err := r.Scan(&m.ID, &m.Name, &m.Email, &m.key)
		return m, err
	})
	if err != nil {
		return Page[Member]{}, fmt.Errorf("list members: %w", err)
	}
	return page(members, limit, func(m Member) (string, string) { return m.key, m.ID }), nil
}

// page cuts rows (fetched with limit+1) to limit and sets the cursor when there is more.
func page[T any](rows []T, limit int, key func(T) (sortName, id string)) Page[T] {
	p := Page[T]{Items: rows}
	if len(rows) > limit {
		p.Items = rows[:limit]
		p.NextCursor = encodeCursor(key(p.Items[limit-1]))
	}
	if p.Items == nil {
		p.Items = []T{}
	}
	return p
}
