package domain

import "sort"

// Directory is a clinic's users, waiting rooms and room membership (stream directory-<clinic>).
// Its fields are exported so the command runner can snapshot it as JSON.
//
// Deactivating a user keeps their room memberships: they drop out of every address book because
// inactive users are skipped, and reactivating them (SetUser) brings their address book back.
type Directory struct {
	Users map[string]User `json:"users"`
	Rooms map[string]Room `json:"rooms"`
}

// User is one member of staff as the directory knows them.
type User struct {
	ID     string          `json:"id"`
	Name   string          `json:"name"`
	Email  string          `json:"email"`
	Title  string          `json:"title,omitempty"`
	Active bool            `json:"active"`
	Rooms  map[string]bool `json:"rooms,omitempty"` // index of Room.Members, for AddressBook
}

// Room is a waiting room; everyone in it is in everyone else's address book.
type Room struct {
	ID      string          `json:"id"`
	Name    string          `json:"name"`
	Members map[string]bool `json:"members,omitempty"`
}

// NewDirectory returns an empty directory.
func NewDirectory() Directory {
	return Directory{Users: map[string]User{}, Rooms: map[string]Room{}}
}

// User returns the user with id, if the directory knows them.
func (d Directory) User(id string) (User, bool) {
	u, ok := d.Users[id]
	return u, ok
}

// IsActive reports whether the user exists and is not deactivated.
func (d Directory) IsActive(id string) bool { return d.Users[id].Active }

// InAddressBook reports whether other is in me's address book: both active, not the same
// person, sharing at least one waiting room. A deactivated user's own address book is empty.
func (d Directory) InAddressBook(me, other string) bool {
	if me == other || !d.IsActive(me) || !d.IsActive(other) {
		return false
	}
	for room := range d.Users[me].Rooms {
		if d.Rooms[room].Members[other] {
			return true
		}
	}
	return false
}

// AddressBook lists, sorted, everyone in me's address book.
func (d Directory) AddressBook(me string) []string {
	if !d.IsActive(me) {
		return nil
	}
	seen := map[string]bool{}
	for room := range d.Users[me].Rooms {
		for other := range d.Rooms[room].Members {
			if other != me && d.IsActive(other) {
				seen[other] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for id := range seen {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// DirectoryCommand is a command on a clinic's directory.
type DirectoryCommand interface{ directoryCommand() }

// SetUser creates, updates or reactivates a user.
type SetUser struct{ UserID, Name, Email, Title string }

// DeactivateUser takes a user out of every address book, keeping their history.
type DeactivateUser struct{ UserID string }

// NameRoom creates or renames a waiting room.
type NameRoom struct{ RoomID, Name string }

// AddRoomMember puts a known user into a known room.
type AddRoomMember struct{ RoomID, UserID string }

// RemoveRoomMember takes a user out of a room.
type RemoveRoomMember struct{ RoomID, UserID string }

func (SetUser) directoryCommand()          {}
func (DeactivateUser) directoryCommand()   {}
func (NameRoom) directoryCommand()         {}
func (AddRoomMember) directoryCommand()    {}
func (RemoveRoomMember) directoryCommand() {}

// DecideDirectory says what a directory command changes. Commands that would change nothing
// (setting the same profile, removing a non-member) decide no events: admin PUT/DELETE are
// idempotent.
func DecideDirectory(d Directory, cmd DirectoryCommand) ([]Event, error) {
	switch c := cmd.(type) {
	case SetUser:
		if err := checkID("user_id", c.UserID); err != nil {
			return nil, err
		}
		name, err := cleanLine("name", c.Name, 1, MaxNameRunes)
		if err != nil {
			return nil, err
		}
		email, err := cleanEmail(c.Email)
		if err != nil {
			return nil, err
		}
		title, err := cleanLine("title", c.Title, 0, MaxTitleRunes)
		if err != nil {
			return nil, err
		}
		if u, ok := d.Users[c.UserID]; ok && u.Active && u.Name == name && u.Email == email && u.Title == title {
			return nil, nil
		}
		return []Event{UserProfileSet{UserID: c.UserID, Name: name, Email: email, Title: title}}, nil
	case DeactivateUser:
		if err := checkID("user_id", c.UserID); err != nil {
			return nil, err
		}
		u, ok := d.Users[c.UserID]
		if !ok {
			return nil, newError(CodeNotFound, "no such user")
		}
		if !u.Active {
			return nil, nil
		}
		//lint:ignore S1016 commands and events evolve separately; no conversion between them
		return []Event{UserDeactivated{UserID: c.UserID}}, nil
	case NameRoom:
		if err := checkID("room_id", c.RoomID); err != nil {
			return nil, err
		}
		name, err := cleanLine("name", c.Name, 1, MaxNameRunes)
		if err != nil {
			return nil, err
		}
		if r, ok := d.Rooms[c.RoomID]; ok && r.Name == name {
			return nil, nil
		}
		return []Event{RoomNamed{RoomID: c.RoomID, Name: name}}, nil
	case AddRoomMember:
		room, err := d.knownRoomAndUser(c.RoomID, c.UserID)
		if err != nil {
			return nil, err
		}
		if room.Members[c.UserID] {
			return nil, nil
		}
		//lint:ignore S1016 commands and events evolve separately; no conversion between them
		return []Event{RoomMemberAdded{RoomID: c.RoomID, UserID: c.UserID}}, nil
	case RemoveRoomMember:
		room, err := d.knownRoomAndUser(c.RoomID, c.UserID)
		if err != nil {
			return nil, err
		}
		if !room.Members[c.UserID] {
			return nil, nil
		}
		//lint:ignore S1016 commands and events evolve separately; no conversion between them
		return []Event{RoomMemberRemoved{RoomID: c.RoomID, UserID: c.UserID}}, nil
	}
	return nil, newError(CodeInvalid, "unknown directory command")
}

func (d Directory) knownRoomAndUser(roomID, userID string) (Room, error) {
	if err := checkID("room_id", roomID); err != nil {
		return Room{}, err
	}
	if err := checkID("user_id", userID); err != nil {
		return Room{}, err
	}
	room, ok := d.Rooms[roomID]
	if !ok {
		return Room{}, newError(CodeNotFound, "no such room")
	}
	if _, ok := d.Users[userID]; !ok {
		return Room{}, newError(CodeNotFound, "no such user")
	}
	return room, nil
}

// EvolveDirectory applies one directory event. It updates d's maps in place (the runner always
// evolves a freshly loaded state) and returns d; a zero Directory is fine to start from.
func EvolveDirectory(d Directory, e Event) Directory {
	if d.Users == nil {
		d.Users = map[string]User{}
	}
	if d.Rooms == nil {
		d.Rooms = map[string]Room{}
	}
	switch ev := e.(type) {
	case UserProfileSet:
		u := d.Users[ev.UserID]
		u.ID, u.Name, u.Email, u.Title, u.Active = ev.UserID, ev.Name, ev.Email, ev.Title, true
		d.Users[ev.UserID] = u
	case UserDeactivated:
		if u, ok := d.Users[ev.UserID]; ok {
			u.Active = false
			d.Users[ev.UserID] = u
		}
	case RoomNamed:
		r := d.Rooms[ev.RoomID]
		r.ID, r.Name = ev.RoomID, ev.Name
		d.Rooms[ev.RoomID] = r
	case RoomMemberAdded:
		r := d.Rooms[ev.RoomID]
		r.ID = ev.RoomID
		if r.Members == nil {
			r.Members = map[string]bool{}
		}
		r.Members[ev.UserID] = true
		d.Rooms[ev.RoomID] = r
		u := d.Users[ev.UserID]
		if u.Rooms == nil {
			u.Rooms = map[string]bool{}
		}
		u.Rooms[ev.RoomID] = true
		d.Users[ev.UserID] = u
	case RoomMemberRemoved:
		if r, ok := d.Rooms[ev.RoomID]; ok {
			delete(r.Members, ev.UserID)
		}
		if u, ok := d.Users[ev.UserID]; ok {
			delete(u.Rooms, ev.RoomID)
		}
	}
	return d
}
