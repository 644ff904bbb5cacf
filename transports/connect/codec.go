package connect

import (
	"connectrpc.com/connect"
	"connectrpc.com/vanguard"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// jsonCodec is vanguard's JSON codec, except that a body that does not
// decode is the caller's mistake: invalid_argument with the decoder's
// message, not an unknown or internal error.
type jsonCodec struct{ vanguard.JSONCodec }

func (c jsonCodec) Unmarshal(data []byte, msg proto.Message) error {
	return badJSON(c.JSONCodec.Unmarshal(data, msg))
}

func (c jsonCodec) UnmarshalField(data []byte, msg proto.Message, field protoreflect.FieldDescriptor) error {
	return badJSON(c.JSONCodec.UnmarshalField(data, msg, field))
}

func badJSON(err error) error {
	if err == nil {
		return nil
	}
	return withInfo(connect.CodeInvalidArgument, "malformed JSON body: "+err.Error(), ReasonInvalidArgument, nil)
}
