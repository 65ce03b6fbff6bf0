package staff

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rujukan/rujukan/policy"
)

// blockHashing takes every hash slot, so Logins queue after their lockout
// check; release lets them run in the order they queued.
func blockHashing() (release func()) {
	for range cap(hashSlots) {
		hashSlots <- struct{}{}
	}
	return func() {
		for range cap(hashSlots) {
			<-hashSlots
		}
	}
}

// Guesses sent at once for one account are not all checked: they are
// checked one at a time, so the account locks after ten and the right
// password, sent in the same burst, is never confirmed (not even as "a
// code is needed").
func TestBurstOfGuessesIsCounted(t *testing.T) {
	f := newFixture(t, "shelter", policy.KindShelter, RoleOperator)
	f.add(t, "op", RoleOperator)
	if _, err := f.acc.EnrollTOTP("op"); err != nil {
		t.Fatal(err)
	}
	release := blockHashing()
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() { f.acc.Login("op", fmt.Sprintf("wrong guess %d", i), "", fmt.Sprintf("198.51.100.%d", i)) })
	}
	time.Sleep(300 * time.Millisecond) // all twenty are past the lockout check
	var right error
	wg.Go(func() { _, right = f.acc.Login("op", pw, "", "198.51.100.200") })
	time.Sleep(100 * time.Millisecond)
	release()
	wg.Wait()
	u, _ := f.acc.Get("op")
	if u.Locked && errors.Is(right, ErrNeedCode) {
		t.Fatalf("account locked after %d failures, yet the 21st guess (the right password) was answered %v", LockAfter, right)
	}
}

// Sign-ins from one address that arrive together are checked one at a
// time, the rest refused: AddrFailures bounds the passwords one address
// gets checked, and the argon2 work.
func TestBurstFromOneAddressIsRefused(t *testing.T) {
	f := newFixture(t, "shelter", policy.KindShelter)
	f.add(t, "cw", RoleCaseworker)
	release := blockHashing()
	const n = 4 * AddrFailures
	var mu sync.Mutex
	checked := 0
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, err := f.acc.Login("cw", fmt.Sprintf("guess number %d", i), "", "203.0.113.9")
			if errors.Is(err, ErrBadLogin) {
				mu.Lock()
				checked++
				mu.Unlock()
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	release()
	wg.Wait()
	if checked > AddrFailures {
		t.Fatalf("one address had %d passwords checked (limit %d per window)", checked, AddrFailures)
	}
}

// A new second factor (enrolled because the old phone was lost) ends the
// sessions signed in with the old one.
func TestNewSecondFactorEndsSessions(t *testing.T) {
	f := newFixture(t, "shelter", policy.KindShelter)
	f.add(t, "cw", RoleCaseworker)
	s, err := f.acc.Login("cw", pw, "", "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.acc.EnrollTOTP("cw"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.acc.Session(s.ID); err == nil {
		t.Fatal("the session begun before re-enrolment still works")
	}
}
