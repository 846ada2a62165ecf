package api
import "github.com/labstack/echo/v4"
func (s *Server) registerHealthRoutes(e *echo.Echo) {}
func (s *Server) registerAdminRoutes(g *echo.Group) {}
func (s *Server) registerCommandRoutes(g *echo.Group) {}
func (s *Server) registerQueryRoutes(g *echo.Group) {}
