package validation

import (
	"errors"
	"testing"
)

func TestError_ErrIsNilWithoutViolations(t *testing.T) {
	var v Error
	if err := v.Err(); err != nil {
		t.Fatalf("Err() = %v, want nil", err)
	}
}

func TestError_ReportsEveryViolation(t *testing.T) {
	var v Error
	v.Add("sku", "must not be empty")
	v.Add("initial_stock", "must be between 0 and %d", 10)
	err := v.Err()
	var got *Error
	if !errors.As(err, &got) {
		t.Fatalf("Err() = %T, want *Error", err)
	}
	if len(got.Violations) != 2 || got.Violations[1].Description != "must be between 0 and 10" {
		t.Fatalf("violations = %+v", got.Violations)
	}
	if want := "invalid argument: sku: must not be empty; initial_stock: must be between 0 and 10"; err.Error() != want {
		t.Fatalf("Error() = %q, want %q", err.Error(), want)
	}
}
