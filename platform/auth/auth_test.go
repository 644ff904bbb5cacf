package auth

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var secret = []byte("0123456789abcdef0123456789abcdef")

func TestVerify_AcceptsIssuedToken(t *testing.T) {
	a := NewAuthority(secret)
	tok, err := a.Issue("alice", RoleCustomer, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p, err := a.Verify(tok)
	if err != nil {
		t.Fatalf("Verify() error = %v", err)
	}
	if p != (Principal{Subject: "alice", Role: RoleCustomer}) {
		t.Fatalf("Verify() = %+v", p)
	}
}

func TestVerify_RefusesBadTokens(t *testing.T) {
	a := NewAuthority(secret)
	past := NewAuthority(secret)
	past.now = func() time.Time { return time.Now().Add(-2 * time.Hour) }
	expired, _ := past.Issue("alice", RoleCustomer, time.Hour)
	other, _ := NewAuthority([]byte("ffffffffffffffffffffffffffffffff")).Issue("alice", RoleAdmin, time.Hour)
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sub": "alice", "role": "admin", "exp": time.Now().Add(time.Hour).Unix()}).
		SignedString(jwt.UnsafeAllowNoneSignatureType)
	noRole, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()}).SignedString(secret)
	noExp, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "alice", "role": "admin"}).SignedString(secret)
	tests := []struct{ name, token, want string }{
		{"expired", expired, "expired"},
		{"wrong secret", other, "bad signature"},
		{"alg none", none, "bad signature"},
		{"garbage", "not.a.token", "malformed"},
		{"missing role", noRole, "claims"},
		{"missing exp", noExp, "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := a.Verify(tt.token)
			if !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Verify() error = %v, want ErrInvalidToken mentioning %q", err, tt.want)
			}
		})
	}
}

func TestVerify_RememberedTokensStillExpire(t *testing.T) {
	a := NewAuthority(secret)
	now := time.Now()
	a.now = func() time.Time { return now }
	tok, err := a.Issue("alice", RoleCustomer, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second call is answered from memory
		if p, err := a.Verify(tok); err != nil || p.Subject != "alice" {
			t.Fatalf("Verify() = %+v, %v", p, err)
		}
	}
	now = now.Add(time.Minute + 6*time.Second) // past expiry and leeway
	if _, err := a.Verify(tok); !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("a remembered token was accepted after it expired: %v", err)
	}
}

func TestVerify_MemoryIsBounded(t *testing.T) {
	a := NewAuthority(secret)
	for i := range verifiedCacheSize + 100 {
		tok, _ := a.Issue(fmt.Sprint("c", i), RoleCustomer, time.Hour)
		if _, err := a.Verify(tok); err != nil {
			t.Fatal(err)
		}
	}
	a.mu.Lock()
	n := len(a.verified)
	a.mu.Unlock()
	if n > verifiedCacheSize {
		t.Fatalf("remembering %d tokens, bound is %d", n, verifiedCacheSize)
	}
}
