// Package auth issues and verifies the HS256 bearer tokens stockguard
// accepts, and carries the verified Principal in a context.
//
// It imports nothing from stockguard. Transports turn a Principal into the
// caller types modules understand.
package auth

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Role is what a principal may do.
type Role string

// The roles stockguard knows.
const (
	RoleCustomer Role = "customer"
	RoleAdmin    Role = "admin"
)

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return r == RoleCustomer || r == RoleAdmin }

// Principal is a verified caller.
type Principal struct {
	Subject string // the customer id
	Role    Role
}

// IsAdmin reports whether p has the admin role.
func (p Principal) IsAdmin() bool { return p.Role == RoleAdmin }

// ErrInvalidToken wraps every reason a token is refused. Its text is safe
// to show the caller.
var ErrInvalidToken = errors.New("invalid bearer token")

type claims struct {
	Role Role `json:"role"`
	jwt.RegisteredClaims
}

// Authority signs and verifies tokens with one HS256 secret.
type Authority struct {
	secret []byte
	now    func() time.Time
}

// NewAuthority returns an Authority using secret.
func NewAuthority(secret []byte) *Authority {
	return &Authority{secret: secret, now: time.Now}
}

// GenerateSecret returns 32 random bytes, hex-encoded, for dev mode.
func GenerateSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// Issue signs a token for subject with role, valid for ttl.
func (a *Authority) Issue(subject string, role Role, ttl time.Duration) (string, error) {
	if subject == "" || !role.Valid() {
		return "", fmt.Errorf("issue token: need a subject and the role admin or customer, got %q/%q", subject, role)
	}
	now := a.now()
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims{
		Role: role,
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   subject,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
	}).SignedString(a.secret)
}

// Verify checks the signature, algorithm, expiry and claims of token.
func (a *Authority) Verify(token string) (Principal, error) {
	var c claims
	_, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return a.secret, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(a.now),
		jwt.WithLeeway(5*time.Second),
	)
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return Principal{}, fmt.Errorf("%w: expired", ErrInvalidToken)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return Principal{}, fmt.Errorf("%w: bad signature", ErrInvalidToken)
	case err != nil:
		return Principal{}, fmt.Errorf("%w: malformed", ErrInvalidToken)
	}
	if c.Subject == "" || !c.Role.Valid() {
		return Principal{}, fmt.Errorf("%w: needs claims sub and role (admin or customer)", ErrInvalidToken)
	}
	return Principal{Subject: c.Subject, Role: c.Role}, nil
}

type ctxKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// FromContext returns the principal in ctx, if any.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(ctxKey{}).(Principal)
	return p, ok
}
