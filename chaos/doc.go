// Package chaos holds the chaos test of Rujukan: the broker and the four
// gateways of the development network (iom, dinsos, police, shelter) run
// as real processes while a load of referrals, referrals with files,
// statement requests and statements flows between them, and a killer
// SIGKILLs one process at a time at random moments and restarts it on the
// same data and ports. At the end every message accepted (202) must be at
// its recipient exactly once, or failed with a reason at its sender; the
// two sides must agree; files must arrive with the hash uploaded; every
// audit log must verify and every witness agree.
//
// The test is short by default (a few kills, for every commit). Set
// RUJUKAN_CHAOS=long for a five-minute run with more kills, or
// RUJUKAN_CHAOS_DURATION to a duration for a load phase of that length;
// RUJUKAN_CHAOS_SEED replays a run's random choices (the seed is logged).
//
//	go test -count=1 -run Chaos -v ./chaos/
//	RUJUKAN_CHAOS=long go test -count=1 -run Chaos -v -timeout 30m ./chaos/
package chaos
