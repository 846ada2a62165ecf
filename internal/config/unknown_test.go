package config

import (
	"reflect"
	"testing"
)

func TestUnknownVars_NamesTheClosestKnownVariable(t *testing.T) {
	got := UnknownVars([]string{
		"HUDDLE_HTTP_ADR=127.0.0.1:9090", // a letter short
		"HUDDLE_DATADIR=/srv/huddle",     // an underscore short
		"HUDDLE_LOGLEVEL=debug",
		"HUDDLE_WIBBLE=1", // like nothing we read
		"HUDDLE_HTTP_ADDR=127.0.0.1:8080",
		"PATH=/usr/bin",
		"HUDDLE_JWT_SECRET=x=y", // a value holding '='
	})
	want := []Unknown{
		{Name: "HUDDLE_DATADIR", Closest: "HUDDLE_DATA_DIR"},
		{Name: "HUDDLE_HTTP_ADR", Closest: "HUDDLE_HTTP_ADDR"},
		{Name: "HUDDLE_LOGLEVEL", Closest: "HUDDLE_LOG_LEVEL"},
		{Name: "HUDDLE_WIBBLE"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("UnknownVars = %+v\nwant %+v", got, want)
	}
}

func TestUnknownVars_EveryKnownVariableIsKnown(t *testing.T) {
	var env []string
	for _, v := range Vars {
		env = append(env, v.Name+"=1")
	}
	if got := UnknownVars(env); len(got) != 0 {
		t.Errorf("known variables reported as unknown: %+v", got)
	}
}
