// Package contract holds no code, only tests that keep Huddle's published documents honest:
// the JSON Schemas of docs/schemas and the AsyncAPI document against real stored events.
// (The OpenAPI document is checked in api/.)
package contract
