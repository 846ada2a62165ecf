package api

import (
	"net"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
)

// Dev sign-in: on the embedded default's generated secret (dev mode), the web client's sign-in
// page lists a clinic's directory and mints a token for the person picked, so someone can try
// Huddle a minute after cloning without an identity provider. It is not part of the API: with
// HUDDLE_JWT_SECRET set (DevSignIn false) every path under /dev/signin/ answers 404, and even in
// dev mode only loopback callers get an answer, since anyone reaching it can sign in as anyone.

// devTokenTTL is long enough for a day of trying, short enough not to linger.
const devTokenTTL = 12 * time.Hour

func (s *Server) registerDevSignIn(e *echo.Echo) {
	// A catch-all path so the dev routes stay out of the API's route list (openapi.yaml);
	// registered whatever the mode, so outside dev mode the answer is 404 rather than 405.
	e.Match([]string{http.MethodGet, http.MethodPost}, "/dev/signin/*", s.devSignIn)
}

func (s *Server) devSignIn(c echo.Context) error {
	if !s.DevSignIn || !fromLoopback(c.Request()) {
		return notFound("no such page")
	}
	switch c.Request().Method + " " + c.Param("*") {
	case "GET users":
		return s.devUsers(c)
	case "POST token":
		return s.devToken(c)
	}
	return notFound("no such page")
}

// fromLoopback looks at the connection itself, never at X-Forwarded-For, which a caller sets.
func fromLoopback(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

type devUser struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Email string `json:"email"`
	Title string `json:"title"`
}

// devUsers answers GET /dev/signin/users?clinic=C: the clinic's active users, by name.
func (s *Server) devUsers(c echo.Context) error {
	clinic := c.QueryParam("clinic")
	if err := checkDirectoryID("clinic", clinic); err != nil {
		return invalid(err.Error())
	}
	users := []devUser{}
	cursor := ""
	for s.Directory != nil {
		page, err := s.Directory.Users(c.Request().Context(), clinic, "", 100, cursor)
		if err != nil {
			return err
		}
		for _, u := range page.Items {
			if u.Active {
				users = append(users, devUser{ID: u.ID, Name: u.Name, Email: u.Email, Title: u.Title})
			}
		}
		if cursor = page.NextCursor; cursor == "" || len(users) >= 500 {
			break
		}
	}
	return c.JSON(http.StatusOK, map[string]any{"users": users})
}

// devToken answers POST /dev/signin/token {"clinic","user_id","role"?}: a token for that
// user with the staff role (or admin, which the sign-in page uses to add demo staff).
func (s *Server) devToken(c echo.Context) error {
	var in struct {
		Clinic string `json:"clinic"`
		UserID string `json:"user_id"`
		Role   string `json:"role"`
	}
	if err := bindJSON(c, &in); err != nil {
		return err
	}
	if in.Role == "" {
		in.Role = RoleStaff
	}
	if in.Role != RoleStaff && in.Role != RoleAdmin {
		return invalid("role: staff or admin")
	}
	tok, err := MintToken(s.JWTSecret, in.UserID, in.Clinic, []string{in.Role}, devTokenTTL)
	if err != nil {
		return invalid(err.Error())
	}
	return c.JSON(http.StatusOK, map[string]string{"token": tok})
}
