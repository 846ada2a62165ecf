package eventstore_test

import (
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"github.com/huddle-chat/huddle/eventstore"
	"github.com/huddle-chat/huddle/internal/natsbroker"
	"github.com/huddle-chat/huddle/internal/testenv"
)

// What an integrator's plain NATS client sees on a published event: the CloudEvents binary-mode
// headers including content-type (which stock SDKs read), Nats-Msg-Id = ce-id, nothing
// internal to Watermill, and every header documented in docs/events.md and docs/asyncapi.yaml.
func TestRelay_PublishesCloudEventsHeadersOnly(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	b := testenv.NATS(t)
	js := jetStream(t, b.ClientURL())
	r := eventstore.NewRelay(s, newPublisher(t, b.ClientURL()), eventstore.RelayConfig{}, testenv.Logger(t), prometheus.NewRegistry())
	runRelay(t, r)
	e := mustAppend(t, s, "conversation-ce", eventstore.ExpectAny, "", msg(1)).Events[0]
	waitMsgs(t, js, 1)
	raw, err := js.GetMsg(natsbroker.StreamName, 1)
	if err != nil {
		t.Fatal(err)
	}
	h := raw.Header
	for name, want := range map[string]string{
		"content-type":       "application/json",
		"ce-datacontenttype": "application/json",
		"ce-id":              e.EventID,
		"Nats-Msg-Id":        e.EventID,
		"ce-specversion":     "1.0",
		"ce-type":            "MessageSent",
	} {
		if got := h.Get(name); got != want {
			t.Errorf("header %s = %q, want %q", name, got, want)
		}
	}
	doc, err := os.ReadFile("../docs/events.md")
	if err != nil {
		t.Fatal(err)
	}
	rawSpec, err := os.ReadFile("../docs/asyncapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var spec struct {
		Components struct {
			MessageTraits struct {
				CloudEvent struct {
					Headers struct {
						Properties map[string]any `yaml:"properties"`
					} `yaml:"headers"`
				} `yaml:"cloudEvent"`
			} `yaml:"messageTraits"`
		} `yaml:"components"`
	}
	if err := yaml.Unmarshal(rawSpec, &spec); err != nil {
		t.Fatal(err)
	}
	for name := range h {
		if strings.HasPrefix(name, "_") || strings.Contains(strings.ToLower(name), "watermill") {
			t.Errorf("internal header %s published", name)
		}
		if !strings.Contains(string(doc), "`"+name+"`") {
			t.Errorf("header %s is not documented in docs/events.md", name)
		}
		if _, ok := spec.Components.MessageTraits.CloudEvent.Headers.Properties[name]; !ok {
			t.Errorf("header %s is not in docs/asyncapi.yaml's cloudEvent headers", name)
		}
	}
}
