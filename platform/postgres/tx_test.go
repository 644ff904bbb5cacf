package postgres

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

func TestNotCommitted_OnlyAnswersThatKeepTheSessionAreDefinite(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"server error", &pgconn.PgError{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "23514"}, true},
		{"wrapped server error", fmt.Errorf("commit: %w", &pgconn.PgError{Severity: "ERROR", Code: "40001"}), true},
		{"fatal ends the session, maybe after the commit", &pgconn.PgError{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "57P01"}, false},
		{"localized fatal", &pgconn.PgError{Severity: "FATAL", Code: "57P01"}, false},
		{"panic", &pgconn.PgError{SeverityUnlocalized: "PANIC"}, false},
		{"transaction had already failed", pgx.ErrTxCommitRollback, true},
		{"batch never sent", pgx.ErrPreprocessingBatch{}, true},
		{"connection lost", io.ErrUnexpectedEOF, false},
		{"other", errors.New("timeout"), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := notCommitted(c.err); got != c.want {
				t.Fatalf("notCommitted(%v) = %v, want %v", c.err, got, c.want)
			}
		})
	}
}
