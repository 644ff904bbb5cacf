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

func TestParseStockNotice_ReadsNoticesAndTheOneItemFormOfOlderServers(t *testing.T) {
	cases := []struct {
		name, payload string
		want          string // fmt of the notice, or the error
	}{
		{"notice", `{"tp" : "00-ab-cd-01", "items" : [{"id" : "i1", "a" : 3, "r" : 1, "s" : 6, "v" : 9}, {"id" : "i2", "a" : 0, "r" : 0, "s" : 5, "v" : 6}]}`,
			"{00-ab-cd-01 [{i1 3 1 6 9 } {i2 0 0 5 6 }]}"},
		{"notice, untraced", `{"tp" : "", "items" : [{"id" : "i1", "a" : 3, "r" : 1, "s" : 6, "v" : 9}]}`, "{ [{i1 3 1 6 9 }]}"},
		{"one item, older servers", `{"id" : "i1", "a" : 3, "r" : 1, "s" : 6, "v" : 9, "tp" : "00-ab-cd-01"}`, "{00-ab-cd-01 [{i1 3 1 6 9 }]}"},
		{"no item", `{"tp" : "x"}`, "error: stock notice names no item"},
		{"not json", `stock`, "error: invalid character 's' looking for beginning of value"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n, err := ParseStockNotice(c.payload)
			got := fmt.Sprint(n)
			if err != nil {
				got = "error: " + err.Error()
			}
			if got != c.want {
				t.Fatalf("ParseStockNotice = %s, want %s", got, c.want)
			}
		})
	}
}
