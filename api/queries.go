package api

import "github.com/labstack/echo/v4"

// registerQueryRoutes is owned by the projections engineer (staff GET endpoints).
func (s *Server) registerQueryRoutes(g *echo.Group) {}
