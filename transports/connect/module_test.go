package connect

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestRESTStatus_SizeRefusalsAre413AndRetryableRefusalsStay429(t *testing.T) {
	cases := []struct {
		name       string
		retryAfter string
		code       int
		want       int
	}{
		{"size limit (no Retry-After)", "", http.StatusTooManyRequests, http.StatusRequestEntityTooLarge},
		{"rate limit or overload (Retry-After)", "1", http.StatusTooManyRequests, http.StatusTooManyRequests},
		{"other errors pass", "", http.StatusBadRequest, http.StatusBadRequest},
		{"success passes", "", http.StatusOK, http.StatusOK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			w := &restStatusWriter{ResponseWriter: rec}
			if tc.retryAfter != "" {
				w.Header().Set("Retry-After", tc.retryAfter)
			}
			w.WriteHeader(tc.code)
			if rec.Code != tc.want {
				t.Fatalf("status %d written as %d, want %d", tc.code, rec.Code, tc.want)
			}
		})
	}
}
