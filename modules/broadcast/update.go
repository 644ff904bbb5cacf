package broadcast

import (
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	stockguardv1 "github.com/stockguard/stockguard/gen/stockguard/v1"
)

// Update is one item's stock level at one version.
type Update struct {
	ItemID    string
	Available int32
	Reserved  int32
	Sold      int32
	Version   int64
}

// Frame is an Update encoded once per wire format, shared by every
// subscriber it is sent to. It must not be modified.
type Frame struct {
	Update Update
	At     time.Time // when it was encoded, for delivery-lag measurement
	JSON   []byte    // protojson of stockguard.v1.StockUpdate (WebSocket text frames)
	Proto  []byte    // binary stockguard.v1.StockUpdate (WebSocket binary frames, RPC)
}

// Message returns the update as its API message.
func (u Update) Message() *stockguardv1.StockUpdate {
	return &stockguardv1.StockUpdate{ItemId: u.ItemID, Available: u.Available, Reserved: u.Reserved, Sold: u.Sold, Version: u.Version}
}

var jsonOpts = protojson.MarshalOptions{EmitDefaultValues: true}

// Encode builds the frame of u: both encodings, once.
func Encode(u Update) (*Frame, error) {
	msg := u.Message()
	js, err := jsonOpts.Marshal(msg)
	if err != nil {
		return nil, err
	}
	pb, err := proto.Marshal(msg)
	if err != nil {
		return nil, err
	}
	return &Frame{Update: u, JSON: js, Proto: pb, At: time.Now()}, nil
}
