package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/huddle-chat/huddle/api"
	"github.com/huddle-chat/huddle/internal/config"
)

func init() {
	register(&Command{
		Name:    "token",
		Summary: "mint a JWT for the configured secret (development and tests)",
		Usage: `Usage: huddle token --user U --clinic C --role R [--role R2] [--ttl 24h]

Prints a bearer token signed with HUDDLE_JWT_SECRET, or else with the dev secret that
huddle serve created in its HUDDLE_DATA_DIR (./huddle-data by default): run it where the server
runs, or with the server's HUDDLE_DATA_DIR. It never creates a secret.
Roles: staff, admin, auditor. User and clinic ids are 1 to 128 letters, digits, '_', '-', '@'
or ':' (no '.', '*', '>' or spaces, which mean something in NATS subjects).

Example:
  curl -H "Authorization: Bearer $(huddle token --user u1 --clinic c1 --role staff)" \
       http://127.0.0.1:8080/v1/conversations`,
		Run: token,
	})
}

type roleList []string

func (r *roleList) String() string     { return strings.Join(*r, ",") }
func (r *roleList) Set(v string) error { *r = append(*r, v); return nil }

func token(_ context.Context, args []string) error {
	fs := newFlagSet(commands["token"])
	user := fs.String("user", "", "user id (the token's sub)")
	clinic := fs.String("clinic", "", "clinic id")
	ttl := fs.Duration("ttl", 24*time.Hour, "lifetime")
	var roles roleList
	fs.Var(&roles, "role", "role: staff, admin or auditor (repeatable)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return usagef("unexpected arguments: %v", fs.Args())
	case *user == "" || *clinic == "":
		return usagef("--user and --clinic are required")
	case len(roles) == 0:
		return usagef("at least one --role is required")
	case *ttl <= 0:
		return usagef("--ttl must be positive")
	}
	if !api.ValidDirectoryID(*user) || !api.ValidDirectoryID(*clinic) {
		return usagef("--user %q, --clinic %q: ids are %s", *user, *clinic, api.DirectoryIDRule)
	}
	for _, r := range roles {
		if !slices.Contains([]string{api.RoleStaff, api.RoleAdmin, api.RoleAuditor}, r) {
			return usagef("unknown role %q: want staff, admin or auditor", r)
		}
	}
	// The server's secret, never a new one: a token signed with a fresh secret in the wrong
	// directory is rejected by the server with nothing to say why.
	cfg, _, err := setupWith(config.LoadExisting)
	if err != nil {
		return err
	}
	tok, err := api.MintToken(cfg.JWTSecret, *user, *clinic, roles, *ttl)
	if err != nil {
		return fmt.Errorf("sign token: %w", err)
	}
	fmt.Fprintln(stdout, tok)
	return nil
}
