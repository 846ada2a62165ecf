package api

import (
	"fmt"
	"regexp"

	"github.com/labstack/echo/v4"
)

// DirectoryIDRule says in words which ids of clinics, users and rooms are accepted.
const DirectoryIDRule = "1 to 128 letters, digits, '_', '-', '@' or ':', starting with a letter or digit"

// directoryIDPattern is the safe alphabet of clinic, user and room ids. These ids become NATS
// subject tokens (huddle.events.<clinic>.…, huddle.live.<clinic>.<user>), where '.', '*', '>'
// and whitespace have a meaning and are mapped to '_' (eventstore.SubjectToken). Keeping them
// out of the ids makes that mapping one-to-one: "c.1" and "c_1" can never share a subject.
var directoryIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_:@-]{0,127}$`)

// ValidDirectoryID reports whether s is a well-formed clinic, user or room id. It is checked
// wherever such an id is created or enters: huddle token, MintToken, verified tokens, and the
// admin API's directory paths.
func ValidDirectoryID(s string) bool { return directoryIDPattern.MatchString(s) }

// checkDirectoryID returns an error naming what (e.g. "clinic id") when id is not valid.
func checkDirectoryID(what, id string) error {
	if !ValidDirectoryID(id) {
		return fmt.Errorf("%s %q: want %s", what, id, DirectoryIDRule)
	}
	return nil
}

// directoryPathID reads a clinic, user or room id from the path; a malformed one is a 400
// naming the parameter.
func directoryPathID(c echo.Context, name string) (string, error) {
	v := c.Param(name)
	if err := checkDirectoryID("path parameter "+name+":", v); err != nil {
		return "", invalid(err.Error())
	}
	return v, nil
}
