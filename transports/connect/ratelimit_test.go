package connect

import (
	"fmt"
	"testing"
	"time"
)

func TestRateLimiter_RefusesPastTheBurstAndRefills(t *testing.T) {
	r := NewRateLimiter(2, 3)
	now := time.Unix(1_800_000_000, 0)
	r.now = func() time.Time { return now }
	for i := range 3 {
		if ok, _ := r.Allow("alice"); !ok {
			t.Fatalf("call %d within the burst refused", i)
		}
	}
	ok, wait := r.Allow("alice")
	if ok || wait <= 0 || wait > time.Second {
		t.Fatalf("call past the burst = %v, wait %s; want refused with a wait up to 1s", ok, wait)
	}
	if ok, _ := r.Allow("bob"); !ok {
		t.Fatal("another caller was limited by alice's calls")
	}
	now = now.Add(wait)
	if ok, _ := r.Allow("alice"); !ok {
		t.Fatal("call after the advertised wait refused")
	}
}

func TestRateLimiter_StateIsBounded(t *testing.T) {
	r := NewRateLimiter(1, 1)
	r.maxKeys = 100
	now := time.Unix(1_800_000_000, 0)
	r.now = func() time.Time { return now }
	for i := range 1000 {
		r.Allow(fmt.Sprintf("caller-%d", i))
	}
	if n := r.Len(); n > 100 {
		t.Fatalf("tracking %d callers, bound is 100", n)
	}
	now = now.Add(time.Hour) // everyone idle
	r.Allow("late")
	if n := r.Len(); n != 1 {
		t.Fatalf("idle callers were kept: %d tracked", n)
	}
}

func TestRateLimiter_ZeroRateMeansNoLimiter(t *testing.T) {
	if NewRateLimiter(0, 10) != nil {
		t.Fatal("a zero rate built a limiter")
	}
}
