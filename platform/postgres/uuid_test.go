package postgres

import (
	"slices"
	"testing"

	"github.com/jackc/pgx/v5/pgtype"
)

func TestUUIDText_StringsEncodeAsBinaryUUIDs(t *testing.T) {
	m := pgtype.NewMap()
	registerUUIDText(m)
	ids := []string{"0192f0c4-0000-7000-8000-00000000000a", "0192f0c4-0000-7000-8000-00000000000b"}

	one, err := m.Encode(pgtype.UUIDOID, pgtype.BinaryFormatCode, ids[0], nil)
	if err != nil || len(one) != 16 {
		t.Fatalf("binary uuid from a string = %x, %v; want 16 bytes", one, err)
	}
	var back pgtype.UUID
	if err := m.Scan(pgtype.UUIDOID, pgtype.BinaryFormatCode, one, &back); err != nil || back.String() != ids[0] {
		t.Fatalf("decoded %v, %v; want %s", back, err, ids[0])
	}

	many, err := m.Encode(pgtype.UUIDArrayOID, pgtype.BinaryFormatCode, ids, nil)
	if err != nil {
		t.Fatalf("binary uuid[] from []string: %v", err)
	}
	var decoded []string
	if err := m.Scan(pgtype.UUIDArrayOID, pgtype.BinaryFormatCode, many, &decoded); err != nil || !slices.Equal(decoded, ids) {
		t.Fatalf("decoded %v, %v; want %v", decoded, err, ids)
	}

	if _, err := m.Encode(pgtype.UUIDOID, pgtype.BinaryFormatCode, "not-a-uuid", nil); err == nil {
		t.Fatal("a string that is not a uuid encoded without error")
	}
	if text, err := m.Encode(pgtype.UUIDOID, pgtype.TextFormatCode, ids[0], nil); err != nil || string(text) != ids[0] {
		t.Fatalf("text uuid = %q, %v; want it unchanged", text, err)
	}
}
