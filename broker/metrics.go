package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rujukan/rujukan/broker/client"
)

// InboxUsage is what one inbox holds now, against its limits.
type InboxUsage struct {
	Agency          string
	Messages, Bytes uint64
	MaxMessages     int64
	MaxBytes        int64
	SenderShare     int64             // messages one sender may keep here
	Senders         map[string]uint64 // sender -> messages waiting
	Connections     int               // the agency's open connections
	MaxConnections  int64
	SharesFull      []string // senders holding their whole share, sorted
	InboxNearlyFull bool     // at 90% of its message or byte limit

	// The agency's file queue (attachment chunks), likewise.
	FileChunks, FileBytes uint64
	FilesMaxBytes         int64
	FilesSenderShare      int64             // chunks one sender may keep there
	FileSenders           map[string]uint64 // sender -> chunks waiting
	FileSharesFull        []string          // senders holding their whole files share, sorted
}

// Usage returns, for every active agency, what its inbox holds and who
// sent it: the broker's view of who is filling whom. Only routing metadata
// (agency ids, counts, sizes) is read.
func (s *Server) Usage(ctx context.Context) ([]InboxUsage, error) {
	s.mu.Lock()
	js, dir, ns := s.js, s.dir, s.ns
	s.mu.Unlock()
	if js == nil || ns == nil {
		return nil, ErrNotStarted
	}
	var out []InboxUsage
	for _, id := range activeIDs(dir) {
		st, err := js.Stream(ctx, client.StreamName(id))
		if err != nil {
			return nil, fmt.Errorf("inbox %s: %w", id, err)
		}
		info, err := st.Info(ctx, jetstream.WithSubjectFilter(">"))
		if err != nil {
			return nil, fmt.Errorf("inbox %s: %w", id, err)
		}
		l := dir.LimitsOf(id)
		u := InboxUsage{Agency: id, Messages: info.State.Msgs, Bytes: info.State.Bytes,
			MaxMessages: info.Config.MaxMsgs, MaxBytes: info.Config.MaxBytes,
			SenderShare: info.Config.MaxMsgsPerSubject, Senders: map[string]uint64{}, MaxConnections: l.MaxConnections}
		for subj, n := range info.State.Subjects {
			if _, from, err := client.ParseSubject(subj); err == nil {
				u.Senders[from] += n
				if u.SenderShare > 0 && int64(u.Senders[from]) >= u.SenderShare {
					u.SharesFull = append(u.SharesFull, from)
				}
			}
		}
		sort.Strings(u.SharesFull)
		u.InboxNearlyFull = (u.MaxMessages > 0 && u.Messages*10 >= uint64(u.MaxMessages)*9) ||
			(u.MaxBytes > 0 && u.Bytes*10 >= uint64(u.MaxBytes)*9)
		if err := fileUsage(ctx, js, id, &u); err != nil {
			return nil, err
		}
		if acc, err := ns.LookupAccount(accountName(id)); err == nil {
			u.Connections = acc.NumLocalConnections()
		}
		out = append(out, u)
	}
	return out, nil
}

// fileUsage fills in what agency id's file queue holds.
func fileUsage(ctx context.Context, js jetstream.JetStream, id string, u *InboxUsage) error {
	st, err := js.Stream(ctx, client.FilesStreamName(id))
	if err != nil {
		return fmt.Errorf("file queue %s: %w", id, err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(">"))
	if err != nil {
		return fmt.Errorf("file queue %s: %w", id, err)
	}
	u.FileChunks, u.FileBytes = info.State.Msgs, info.State.Bytes
	u.FilesMaxBytes, u.FilesSenderShare = info.Config.MaxBytes, info.Config.MaxMsgsPerSubject
	u.FileSenders = map[string]uint64{}
	for subj, n := range info.State.Subjects {
		if _, from, err := client.ParseFileSubject(subj); err == nil {
			u.FileSenders[from] += n
			if u.FilesSenderShare > 0 && int64(u.FileSenders[from]) >= u.FilesSenderShare {
				u.FileSharesFull = append(u.FileSharesFull, from)
			}
		}
	}
	sort.Strings(u.FileSharesFull)
	return nil
}

// watchUsage logs, at warn, an inbox that is nearly full and a sender that
// holds its whole share of an inbox: once when it starts, then at most
// every usageLogEvery while it lasts.
func (s *Server) watchUsage(ctx context.Context) {
	last := map[string]time.Time{}
	t := time.NewTicker(s.cfg.UsageInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		uctx, cancel := context.WithTimeout(ctx, s.cfg.UsageInterval)
		us, err := s.Usage(uctx)
		cancel()
		if err != nil {
			if !errors.Is(err, context.Canceled) {
				s.log.Debug("inbox usage not available", "err", err)
			}
			continue
		}
		now := time.Now()
		seen := map[string]bool{}
		due := func(key string) bool {
			seen[key] = true
			if at, ok := last[key]; ok && now.Sub(at) < usageLogEvery {
				return false
			}
			last[key] = now
			return true
		}
		for _, u := range us {
			for _, from := range u.SharesFull {
				if due(u.Agency + "/" + from) {
					s.log.Warn("a sender holds its whole share of an inbox: the broker refuses its further envelopes to that agency until the agency reads them",
						"inbox", u.Agency, "sender", from, "messages", u.Senders[from], "share", u.SenderShare)
				}
			}
			for _, from := range u.FileSharesFull {
				if due("files/" + u.Agency + "/" + from) {
					s.log.Warn("a sender holds its whole share of a file queue: the broker refuses its further attachment chunks to that agency until the agency reads them",
						"files", u.Agency, "sender", from, "chunks", u.FileSenders[from], "share", u.FilesSenderShare)
				}
			}
			if u.InboxNearlyFull && due(u.Agency) {
				s.log.Warn("an inbox is nearly full", "inbox", u.Agency, "messages", u.Messages, "max_messages", u.MaxMessages,
					"bytes", u.Bytes, "max_bytes", u.MaxBytes, "senders", len(u.Senders))
			}
		}
		for key := range last {
			if !seen[key] {
				delete(last, key) // over: the next time is logged at once
			}
		}
	}
}

const usageLogEvery = 5 * time.Minute

// metricsHandler answers GET /metrics in the Prometheus text format with
// each inbox's usage, each sender's backlog and share, each agency's
// connections, and the broker's store.
func (s *Server) metricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		us, err := s.Usage(ctx)
		if err != nil {
			http.Error(w, "inbox usage not available", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		writeMetrics(w, us, s.storeStats())
	})
	return mux
}

type storeStats struct{ store, maxStore, memory, maxMemory uint64 }

func (s *Server) storeStats() storeStats {
	s.mu.Lock()
	ns := s.ns
	s.mu.Unlock()
	if ns == nil {
		return storeStats{}
	}
	var st storeStats
	if js := ns.JetStreamConfig(); js != nil {
		st.maxStore, st.maxMemory = uint64(js.MaxStore), uint64(js.MaxMemory)
	}
	if v, err := ns.Jsz(&server.JSzOptions{}); err == nil {
		st.store, st.memory = v.Store, v.Memory
	}
	return st
}

func writeMetrics(w io.Writer, us []InboxUsage, st storeStats) {
	gauge := func(name, help string) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name)
	}
	series := func(name string, v float64, labels ...string) {
		var b strings.Builder
		for i := 0; i+1 < len(labels); i += 2 {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "%s=%s", labels[i], strconv.Quote(labels[i+1]))
		}
		fmt.Fprintf(w, "%s{%s} %s\n", name, b.String(), strconv.FormatFloat(v, 'f', -1, 64))
	}
	perInbox := []struct {
		name, help string
		v          func(InboxUsage) float64
	}{
		{"rujukan_broker_inbox_messages", "Envelopes waiting in an agency's inbox.", func(u InboxUsage) float64 { return float64(u.Messages) }},
		{"rujukan_broker_inbox_bytes", "Bytes waiting in an agency's inbox.", func(u InboxUsage) float64 { return float64(u.Bytes) }},
		{"rujukan_broker_inbox_max_messages", "The inbox's message limit (from the directory).", func(u InboxUsage) float64 { return float64(u.MaxMessages) }},
		{"rujukan_broker_inbox_max_bytes", "The inbox's byte limit (from the directory).", func(u InboxUsage) float64 { return float64(u.MaxBytes) }},
		{"rujukan_broker_sender_share_messages", "Envelopes one sender may keep waiting in the inbox; more are refused.", func(u InboxUsage) float64 { return float64(u.SenderShare) }},
		{"rujukan_broker_files_chunks", "Attachment chunks waiting in an agency's file queue.", func(u InboxUsage) float64 { return float64(u.FileChunks) }},
		{"rujukan_broker_files_bytes", "Bytes waiting in an agency's file queue.", func(u InboxUsage) float64 { return float64(u.FileBytes) }},
		{"rujukan_broker_files_max_bytes", "The file queue's byte limit (from the directory).", func(u InboxUsage) float64 { return float64(u.FilesMaxBytes) }},
		{"rujukan_broker_files_sender_share_chunks", "Chunks one sender may keep waiting in the file queue; more are refused.", func(u InboxUsage) float64 { return float64(u.FilesSenderShare) }},
	}
	for _, m := range perInbox {
		gauge(m.name, m.help)
		for _, u := range us {
			series(m.name, m.v(u), "inbox", u.Agency)
		}
	}
	perSender := []struct {
		name, help string
		v          func(InboxUsage) map[string]uint64
	}{
		{"rujukan_broker_sender_messages", "Envelopes waiting in an inbox, by sender (as the broker authenticated it).", func(u InboxUsage) map[string]uint64 { return u.Senders }},
		{"rujukan_broker_files_sender_chunks", "Attachment chunks waiting in a file queue, by sender (as the broker authenticated it).", func(u InboxUsage) map[string]uint64 { return u.FileSenders }},
	}
	for _, m := range perSender {
		gauge(m.name, m.help)
		for _, u := range us {
			counts := m.v(u)
			senders := make([]string, 0, len(counts))
			for from := range counts {
				senders = append(senders, from)
			}
			sort.Strings(senders)
			for _, from := range senders {
				series(m.name, float64(counts[from]), "inbox", u.Agency, "sender", from)
			}
		}
	}
	gauge("rujukan_broker_connections", "Open connections of an agency.")
	for _, u := range us {
		series("rujukan_broker_connections", float64(u.Connections), "agency", u.Agency)
	}
	gauge("rujukan_broker_max_connections", "An agency's connection limit (from the directory).")
	for _, u := range us {
		series("rujukan_broker_max_connections", float64(u.MaxConnections), "agency", u.Agency)
	}
	for _, m := range []struct {
		name, help string
		v          uint64
	}{
		{"rujukan_broker_store_bytes", "Bytes JetStream keeps on disk.", st.store},
		{"rujukan_broker_max_store_bytes", "JetStream's max store.", st.maxStore},
		{"rujukan_broker_memory_bytes", "Bytes JetStream keeps in memory-backed storage.", st.memory},
		{"rujukan_broker_max_memory_bytes", "JetStream's max memory.", st.maxMemory},
	} {
		gauge(m.name, m.help)
		fmt.Fprintf(w, "%s %d\n", m.name, m.v)
	}
}

// startMetrics starts the metrics listener, if configured.
func (s *Server) startMetrics() error {
	if s.cfg.Metrics == "" {
		return nil
	}
	ln, err := net.Listen("tcp", s.cfg.Metrics)
	if err != nil {
		return fmt.Errorf("metrics listener: %w", err)
	}
	srv := &http.Server{Handler: s.metricsHandler(), ReadHeaderTimeout: 5 * time.Second}
	s.metricsLn, s.metricsSrv = ln, srv
	go srv.Serve(ln)
	return nil
}

// MetricsURL returns the base URL of the metrics listener, or "".
func (s *Server) MetricsURL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.metricsLn == nil {
		return ""
	}
	return "http://" + s.metricsLn.Addr().String()
}
