package natsbroker

import (
	"fmt"

	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
)

// Marshaler maps Watermill messages to NATS messages with nothing on the wire but what
// integrators read: the metadata as headers (the CloudEvents ce-* attributes, built by
// eventstore.ToMessage) and the UUID as Nats-Msg-Id, so JetStream deduplicates a republished
// event. Watermill's NATSMarshaler also publishes an internal _watermill_message_uuid header
// (and needs TrackMsgId to copy it into Nats-Msg-Id); integrators would see it on every event.
type Marshaler struct{}

// Marshal implements wmnats.Marshaler.
func (Marshaler) Marshal(topic string, msg *message.Message) (*nats.Msg, error) {
	h := make(nats.Header, len(msg.Metadata)+1)
	for k, v := range msg.Metadata {
		h.Set(k, v)
	}
	if msg.UUID != "" {
		h.Set(nats.MsgIdHdr, msg.UUID)
	}
	return &nats.Msg{Subject: topic, Header: h, Data: msg.Payload}, nil
}

// Unmarshal implements wmnats.Unmarshaler. The UUID comes from Nats-Msg-Id, or from
// _watermill_message_uuid on messages published before this marshaler.
func (Marshaler) Unmarshal(m *nats.Msg) (*message.Message, error) {
	id := m.Header.Get(nats.MsgIdHdr)
	if id == "" {
		id = m.Header.Get(wmnats.WatermillUUIDHdr)
	}
	md := make(message.Metadata, len(m.Header))
	for k, v := range m.Header {
		switch k {
		case nats.MsgIdHdr, wmnats.WatermillUUIDHdr, nats.ExpectedStreamHdr, nats.ExpectedLastSeqHdr,
			nats.ExpectedLastSubjSeqHdr, nats.ExpectedLastMsgIdHdr:
			continue
		}
		if len(v) != 1 {
			return nil, fmt.Errorf("nats header %q has %d values, want 1", k, len(v))
		}
		md.Set(k, v[0])
	}
	msg := message.NewMessage(id, m.Data)
	msg.Metadata = md
	return msg, nil
}
