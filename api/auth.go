package api

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"
	echojwt "github.com/labstack/echo-jwt/v4"
	"github.com/labstack/echo/v4"

	"github.com/huddle-chat/huddle/domain"
)

// Roles a token can carry.
const (
	RoleStaff   = "staff"
	RoleAdmin   = "admin"
	RoleAuditor = "auditor"
)

// Claims are the JWT claims of API.md: sub (user), clinic, roles, exp.
type Claims struct {
	Clinic string   `json:"clinic"`
	Roles  []string `json:"roles"`
	jwt.RegisteredClaims
}

// Actor is the authenticated caller, taken from a verified token.
type Actor struct {
	UserID   string
	ClinicID string
	Roles    []string
}

// Has reports whether the actor holds role.
func (a Actor) Has(role string) bool { return slices.Contains(a.Roles, role) }

const actorKey = "huddle.actor"

// MintToken signs a token for the given user; used by `huddle token` and by tests. The ids
// must be valid directory ids (ValidDirectoryID).
func MintToken(secret []byte, userID, clinicID string, roles []string, ttl time.Duration) (string, error) {
	if err := errors.Join(checkDirectoryID("user id", userID), checkDirectoryID("clinic id", clinicID)); err != nil {
		return "", err
	}
	now := time.Now()
	claims := Claims{
		Clinic: clinicID,
		Roles:  roles,
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   userID,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
}

// authenticate verifies the bearer token (HS256 only, exp required) and stores the Actor.
func authenticate(secret []byte) echo.MiddlewareFunc {
	return echojwt.WithConfig(echojwt.Config{
		SigningKey:    secret,
		SigningMethod: "HS256",
		NewClaimsFunc: func(echo.Context) jwt.Claims { return new(Claims) },
		ParseTokenFunc: func(c echo.Context, auth string) (any, error) {
			claims := new(Claims)
			tok, err := jwt.ParseWithClaims(auth, claims, func(t *jwt.Token) (any, error) { return secret, nil },
				jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired())
			if err != nil {
				return nil, err
			}
			if !tok.Valid || claims.Subject == "" || claims.Clinic == "" {
				return nil, errors.New("token lacks sub or clinic")
			}
			// A token minted elsewhere (an identity provider) must not smuggle in an id that
			// would share a NATS subject with another clinic's (ValidDirectoryID).
			if err := errors.Join(checkDirectoryID("sub", claims.Subject), checkDirectoryID("clinic", claims.Clinic)); err != nil {
				return nil, err
			}
			return tok, nil
		},
		SuccessHandler: func(c echo.Context) {
			tok := c.Get("user").(*jwt.Token)
			claims := tok.Claims.(*Claims)
			c.Set(actorKey, Actor{UserID: claims.Subject, ClinicID: claims.Clinic, Roles: claims.Roles})
		},
		ErrorHandler: func(c echo.Context, err error) error {
			return problem(401, "unauthorized", "Unauthorized", fmt.Sprintf("missing or invalid bearer token: %v", errors.Unwrap(err)))
		},
	})
}

// requireRole lets only actors holding role through; others get 403 forbidden. Staff must
// also be active users of their clinic's directory (API-v1.1: 403 unknown_user), checked by
// the StaffChecker that withStaffChecker put in the context; the admin and auditor roles go by
// role alone.
func requireRole(role string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			a := actorOf(c)
			if !a.Has(role) {
				return problem(403, "forbidden", "Forbidden", "this endpoint needs the "+role+" role")
			}
			if check, ok := c.Get(staffCheckerKey).(StaffChecker); ok && role == RoleStaff {
				active, err := check.ActiveStaff(c.Request().Context(), a.ClinicID, a.UserID)
				if err != nil {
					return err
				}
				if !active {
					return &domain.Error{Code: domain.CodeUnknownUser,
						Message: "the token's user is not an active member of staff in its clinic's directory"}
				}
			}
			return next(c)
		}
	}
}

// StaffChecker tells whether a user is active in their clinic's directory (*commands.Handler,
// from memory, at most a second behind another instance's deactivation).
type StaffChecker interface {
	ActiveStaff(ctx context.Context, clinicID, userID string) (bool, error)
}

const staffCheckerKey = "huddle.staffChecker"

// withStaffChecker makes requireRole(RoleStaff) check the directory through check.
func withStaffChecker(check StaffChecker) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if check != nil {
				c.Set(staffCheckerKey, check)
			}
			return next(c)
		}
	}
}

// actorOf returns the authenticated caller; only valid behind authenticate.
func actorOf(c echo.Context) Actor {
	a, _ := c.Get(actorKey).(Actor)
	return a
}
