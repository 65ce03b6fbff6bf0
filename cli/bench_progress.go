package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// progress shows how far a bench run is: on a terminal a bar redrawn in
// place; anywhere else (a log, CI) a plain line now and then, with no
// control characters.
type progress struct {
	w     io.Writer
	tty   bool
	name  string
	total int
	done  func() int
	// unit names what is counted, for the rate ("" shows no rate).
	unit  string
	start time.Time
	stop  chan struct{}
	wg    sync.WaitGroup
	once  sync.Once
}

// Redraw and report intervals.
const (
	progressRedraw = 200 * time.Millisecond
	progressLine   = 5 * time.Second
	progressWidth  = 30
)

// startProgress reports done() of total, and its rate in unit per second,
// until Stop.
func startProgress(w io.Writer, name string, total int, unit string, done func() int) *progress {
	p := &progress{w: w, tty: isTerminal(w), name: name, total: total, done: done, unit: unit, start: time.Now(), stop: make(chan struct{})}
	every := progressLine
	if p.tty {
		every = progressRedraw
	} else {
		fmt.Fprintf(w, "%s: %d to go\n", name, total)
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				p.show(false)
			}
		}
	}()
	return p
}

// Stop shows the final count and ends the bar's line; later calls do
// nothing.
func (p *progress) Stop() {
	p.once.Do(func() {
		close(p.stop)
		p.wg.Wait()
		p.show(true)
	})
}

func (p *progress) show(last bool) {
	n := min(p.done(), p.total)
	el := time.Since(p.start)
	rate := ""
	if p.unit != "" {
		rate = fmt.Sprintf(", %.0f %s/s", float64(n)/max(el.Seconds(), 1e-9), p.unit)
	}
	if !p.tty {
		verb := "done"
		if !last {
			verb = "so far"
		}
		fmt.Fprintf(p.w, "%s: %d of %d %s in %s%s\n", p.name, n, p.total, verb, el.Round(100*time.Millisecond), rate)
		return
	}
	fill := progressWidth * n / max(p.total, 1)
	bar := strings.Repeat("=", fill) + strings.Repeat(" ", progressWidth-fill)
	end := ""
	if last {
		end = "\n"
	}
	// \r and "erase to end of line" redraw the bar in place.
	fmt.Fprintf(p.w, "\r\x1b[K%s [%s] %d/%d %s%s%s", p.name, bar, n, p.total, el.Round(100*time.Millisecond), rate, end)
}

// isTerminal reports whether w is a terminal (a character device other
// than /dev/null) on a TERM that understands "\r\x1b[K".
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("TERM") == "dumb" {
		return false
	}
	fi, err := f.Stat()
	if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return false
	}
	null, err := os.Stat(os.DevNull)
	return err != nil || !os.SameFile(fi, null)
}
