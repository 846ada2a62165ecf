package api

import "github.com/labstack/echo/v4"

// registerHealthRoutes is owned by the platform engineer (healthz, readyz, metrics).
func (s *Server) registerHealthRoutes(e *echo.Echo) {}
