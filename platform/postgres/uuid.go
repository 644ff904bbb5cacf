package postgres

import (
	"github.com/jackc/pgx/v5/pgtype"
)

// registerUUIDText lets a connection send ids, which are strings
// everywhere in stockguard, as binary uuid parameters: 16 bytes each,
// parsed once on this side. pgx has no binary plan from a string to uuid,
// so for every such parameter it built an error that formatted the whole
// value (a batch's array of 4,096 ids included), then encoded it again as
// text for PostgreSQL to parse.
func registerUUIDText(m *pgtype.Map) {
	uuid := &pgtype.Type{Name: "uuid", OID: pgtype.UUIDOID, Codec: uuidTextCodec{}}
	m.RegisterType(uuid)
	m.RegisterType(&pgtype.Type{Name: "_uuid", OID: pgtype.UUIDArrayOID, Codec: &pgtype.ArrayCodec{ElementType: uuid}})
}

// uuidTextCodec is pgx's uuid codec plus a binary encoding of strings.
type uuidTextCodec struct{ pgtype.UUIDCodec }

func (c uuidTextCodec) PlanEncode(m *pgtype.Map, oid uint32, format int16, value any) pgtype.EncodePlan {
	if _, ok := value.(string); ok && format == pgtype.BinaryFormatCode {
		return encodeUUIDText{}
	}
	return c.UUIDCodec.PlanEncode(m, oid, format, value)
}

type encodeUUIDText struct{}

// Encode parses the canonical text form. A string that is not a uuid fails
// here, and pgx then sends it as text, for PostgreSQL to refuse as before.
func (encodeUUIDText) Encode(value any, buf []byte) ([]byte, error) {
	var u pgtype.UUID
	if err := u.Scan(value.(string)); err != nil { //nolint:forcetypeassert // PlanEncode checked it
		return nil, err
	}
	return append(buf, u.Bytes[:]...), nil
}
