// Package directory is the directory read model (docs/adr/0014-read-model-contract.md): users,
// waiting rooms and room membership (dir_* tables), kept from the directory streams, and the
// queries over it: the staff's address book (Contacts) and the administrators' lists (users,
// rooms, a room's members; every user, active or not, every room, every member).
package directory
