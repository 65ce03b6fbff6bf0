package store

import (
	"strings"
	"testing"
)

// TestAllWaitingRoundRobin: two senders' envelopes with the same id are
// both returned, and scans of a few at a time go on from where the last
// one stopped, so every sender's envelopes come round however many wait.
func TestAllWaitingRoundRobin(t *testing.T) {
	db := MustOpen(t)
	err := db.Update(func(tx *Tx) error {
		for _, from := range []string{"dinsos", "iom", "shelter"} {
			for _, id := range []string{"same", "x"} {
				if err := tx.PutWaiting(id, Waiting{From: from, Envelope: []byte(from + "/" + id)}); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	var after []byte
	scans := 0
	db.View(func(tx *Tx) error {
		for {
			page, next, err := tx.AllWaiting(after, 4)
			if err != nil {
				t.Fatal(err)
			}
			scans++
			for _, w := range page {
				got = append(got, w.From+"/"+w.ID)
			}
			if after = next; after == nil {
				return nil
			}
		}
	})
	if want := "dinsos/same dinsos/x iom/same iom/x shelter/same shelter/x"; strings.Join(got, " ") != want || scans != 2 {
		t.Fatalf("%d scans gave %q, want 2 giving %q", scans, strings.Join(got, " "), want)
	}
}
