// Package validation describes bad input field by field, so that transports
// can report every problem in one answer (google.rpc.BadRequest).
//
// It imports nothing from stockguard.
package validation

import (
	"fmt"
	"strings"
)

// Violation names one field and what is wrong with it.
type Violation struct {
	// Field is the request field path in proto (snake_case) form, e.g. "lines[2].quantity".
	Field string
	// Description says what is wrong and what is allowed, e.g. "must be between 1 and 10000".
	Description string
}

// Error is a set of violations. The zero value has none; use Err to get nil
// when nothing was added.
type Error struct {
	Violations []Violation
}

// Add records a violation.
func (e *Error) Add(field, format string, args ...any) {
	e.Violations = append(e.Violations, Violation{Field: field, Description: fmt.Sprintf(format, args...)})
}

// Err returns e when it holds violations, and nil otherwise.
func (e *Error) Err() error {
	if e == nil || len(e.Violations) == 0 {
		return nil
	}
	return e
}

func (e *Error) Error() string {
	parts := make([]string, 0, len(e.Violations))
	for _, v := range e.Violations {
		parts = append(parts, v.Field+": "+v.Description)
	}
	return "invalid argument: " + strings.Join(parts, "; ")
}
