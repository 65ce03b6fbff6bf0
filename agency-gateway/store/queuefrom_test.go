package store

import (
	"strings"
	"testing"
)

// TestQueuedFrom: the queue read a page at a time, from a sequence on,
// gives every item once, in order.
func TestQueuedFrom(t *testing.T) {
	db := MustOpen(t)
	var seqs []uint64
	db.Update(func(tx *Tx) error {
		for _, id := range []string{"a", "b", "c", "d", "e"} {
			seq, err := tx.Enqueue(QueueItem{ID: id})
			if err != nil {
				return err
			}
			seqs = append(seqs, seq)
		}
		return tx.Dequeue(seqs[2]) // c was published
	})
	db.View(func(tx *Tx) error {
		var got []string
		for from := uint64(0); ; {
			page, err := tx.QueuedFrom(from, 2, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, it := range page {
				got = append(got, it.ID)
			}
			if len(page) < 2 {
				break
			}
			from = page[len(page)-1].Seq + 1
		}
		if want := "a b d e"; strings.Join(got, " ") != want {
			t.Fatalf("pages gave %q, want %q", strings.Join(got, " "), want)
		}
		if page, _ := tx.QueuedFrom(seqs[4]+1, 2, nil); len(page) != 0 {
			t.Fatalf("past the end: %+v", page)
		}
		// Items being published are left out, and the page fills up with
		// the ones after them.
		page, _ := tx.QueuedFrom(0, 2, func(seq uint64) bool { return seq == seqs[0] || seq == seqs[1] })
		if len(page) != 2 || page[0].ID != "d" || page[1].ID != "e" {
			t.Fatalf("skipping a and b: %+v", page)
		}
		return nil
	})
}
