package api

import "github.com/labstack/echo/v4"

// registerAdminRoutes is owned by the domain engineer (directory endpoints).
func (s *Server) registerAdminRoutes(g *echo.Group) {}

// registerCommandRoutes is owned by the domain engineer (staff command endpoints).
func (s *Server) registerCommandRoutes(g *echo.Group) {}
