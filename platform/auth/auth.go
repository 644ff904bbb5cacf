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
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// leeway tolerates clock skew between token issuers and this server.
const leeway = 5 * time.Second

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

// Authority signs and verifies tokens with one HS256 secret. Verified
// tokens are remembered until they expire (at most verifiedCacheSize of
// them), so a client that sends the same token on every call pays for the
// signature check once.
type Authority struct {
	secret []byte
	now    func() time.Time

	mu       sync.Mutex
	verified map[string]verifiedToken
}

type verifiedToken struct {
	principal Principal
	expires   time.Time
}

// verifiedCacheSize bounds the remembered tokens; past it, arbitrary ones
// are forgotten (and verified again when next seen).
const verifiedCacheSize = 50_000

// NewAuthority returns an Authority using secret.
func NewAuthority(secret []byte) *Authority {
	return &Authority{secret: secret, now: time.Now, verified: map[string]verifiedToken{}}
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
	now := a.now()
	a.mu.Lock()
	v, ok := a.verified[token]
	a.mu.Unlock()
	if ok {
		if now.Before(v.expires) {
			return v.principal, nil
		}
		a.mu.Lock()
		delete(a.verified, token)
		a.mu.Unlock()
		return Principal{}, fmt.Errorf("%w: expired", ErrInvalidToken)
	}
	p, expires, err := a.verify(token)
	if err != nil {
		return Principal{}, err
	}
	a.mu.Lock()
	if len(a.verified) >= verifiedCacheSize {
		for k := range a.verified {
			delete(a.verified, k)
			if len(a.verified) < verifiedCacheSize*9/10 {
				break
			}
		}
	}
	a.verified[token] = verifiedToken{principal: p, expires: expires}
	a.mu.Unlock()
	return p, nil
}

// verify does the full check and returns the principal and when the token
// stops being accepted (its expiry plus the leeway).
func (a *Authority) verify(token string) (Principal, time.Time, error) {
	var c claims
	_, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return a.secret, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(a.now),
		jwt.WithLeeway(leeway),
	)
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return Principal{}, time.Time{}, fmt.Errorf("%w: expired", ErrInvalidToken)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return Principal{}, time.Time{}, fmt.Errorf("%w: bad signature", ErrInvalidToken)
	case err != nil:
		return Principal{}, time.Time{}, fmt.Errorf("%w: malformed", ErrInvalidToken)
	}
	if c.Subject == "" || !c.Role.Valid() {
		return Principal{}, time.Time{}, fmt.Errorf("%w: needs claims sub and role (admin or customer)", ErrInvalidToken)
	}
	return Principal{Subject: c.Subject, Role: c.Role}, c.ExpiresAt.Add(leeway), nil
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
