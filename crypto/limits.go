package crypto

import "fmt"

// Limits are what one agency may hold at the broker. The directory carries
// network-wide limits (Directory.Limits) and, for an agency that needs
// other values, its own (Agency.Limits); a field left out (zero) takes the
// network's value, and a network field left out takes the default
// (DefaultLimits). The broker enforces them with NATS's own stream and
// account limits; see package broker.
//
// An agency's inbox limits bound what all senders together may leave
// waiting in its inbox; the sender limits bound what one sender may leave
// there, so that one agency cannot take the others' room. The connection
// and subscription limits bound the agency's own NATS account.
type Limits struct {
	// InboxMaxBytes and InboxMaxMessages cap the agency's inbox stream.
	InboxMaxBytes    int64 `json:"inbox_max_bytes,omitempty"`
	InboxMaxMessages int64 `json:"inbox_max_messages,omitempty"`
	// SenderMaxBytes and SenderMaxMessages cap what one sender may have
	// waiting in the agency's inbox. NATS counts messages per subject (one
	// subject per sender) but not bytes, so the broker enforces the byte
	// share as a number of messages: SenderMaxBytes divided by the largest
	// message the inbox accepts.
	SenderMaxBytes    int64 `json:"sender_max_bytes,omitempty"`
	SenderMaxMessages int64 `json:"sender_max_messages,omitempty"`
	// MaxConnections caps the agency's open connections to the broker,
	// and MaxSubscriptions the subscriptions of each connection.
	MaxConnections   int64 `json:"max_connections,omitempty"`
	MaxSubscriptions int64 `json:"max_subscriptions,omitempty"`
	// FilesMaxBytes caps the agency's file queue (attachment chunks
	// waiting to be read, beside the inbox), and FilesSenderMaxBytes what
	// one sender may have waiting there. The broker enforces the sender's
	// share as a number of chunks: FilesSenderMaxBytes / FileChunkSize.
	FilesMaxBytes       int64 `json:"files_max_bytes,omitempty"`
	FilesSenderMaxBytes int64 `json:"files_sender_max_bytes,omitempty"`
}

// Bounds of the limits a directory may set. Anything outside is refused as
// a mistake: a limit below the lower bound would stop the network, and one
// above the upper bound is no limit on the machines Rujukan runs on.
const (
	// MinInboxBytes is the smallest byte limit of an inbox or of a
	// sender's share: one envelope of the largest size must fit.
	MinInboxBytes = 1 << 20
	// MinFilesBytes is the smallest byte limit of a file queue or of a
	// sender's share of it: a few chunks.
	MinFilesBytes = 4 * FileChunkSize
	maxLimitBytes = 1 << 40 // 1 TiB
	maxLimitMsgs  = 100_000_000
	maxLimitConns = 10_000
	maxLimitSubs  = 1_000_000
)

// DefaultLimits are the limits of an agency when the directory sets none,
// sized for a small network on small machines: a 1 GiB inbox of at most
// 100,000 envelopes, of which one sender may hold a quarter (256 MiB and
// 25,000 envelopes), 8 connections and 1,000 subscriptions per connection,
// and a 4 GiB file queue of which one sender may hold half.
func DefaultLimits() Limits {
	return Limits{
		InboxMaxBytes:       1 << 30,
		InboxMaxMessages:    100_000,
		SenderMaxBytes:      256 << 20,
		SenderMaxMessages:   25_000,
		MaxConnections:      8,
		MaxSubscriptions:    1_000,
		FilesMaxBytes:       4 << 30,
		FilesSenderMaxBytes: 2 << 30,
	}
}

// over returns l with each field that o sets replaced by o's.
func (l Limits) over(o *Limits) Limits {
	if o == nil {
		return l
	}
	set := func(dst *int64, v int64) {
		if v != 0 {
			*dst = v
		}
	}
	set(&l.InboxMaxBytes, o.InboxMaxBytes)
	set(&l.InboxMaxMessages, o.InboxMaxMessages)
	set(&l.SenderMaxBytes, o.SenderMaxBytes)
	set(&l.SenderMaxMessages, o.SenderMaxMessages)
	set(&l.MaxConnections, o.MaxConnections)
	set(&l.MaxSubscriptions, o.MaxSubscriptions)
	set(&l.FilesMaxBytes, o.FilesMaxBytes)
	set(&l.FilesSenderMaxBytes, o.FilesSenderMaxBytes)
	return l
}

// NetworkLimits returns the network-wide limits: the defaults with the
// directory's own values over them.
func (d *Directory) NetworkLimits() Limits { return DefaultLimits().over(d.Limits) }

// LimitsOf returns the limits in force for agency id: the defaults, the
// network's values over them, the agency's own over those. An agency not
// in the directory gets the network's.
func (d *Directory) LimitsOf(id string) Limits {
	l := d.NetworkLimits()
	if a, ok := d.Agency(id); ok {
		l = l.over(a.Limits)
	}
	return l
}

// check refuses a value out of bounds. Zero means "not set" and is
// accepted; where names the object in the error.
func (l *Limits) check(where string) error {
	if l == nil {
		return nil
	}
	for _, f := range []struct {
		name      string
		v, lo, hi int64
	}{
		{"inbox_max_bytes", l.InboxMaxBytes, MinInboxBytes, maxLimitBytes},
		{"inbox_max_messages", l.InboxMaxMessages, 1, maxLimitMsgs},
		{"sender_max_bytes", l.SenderMaxBytes, MinInboxBytes, maxLimitBytes},
		{"sender_max_messages", l.SenderMaxMessages, 1, maxLimitMsgs},
		{"max_connections", l.MaxConnections, 1, maxLimitConns},
		{"max_subscriptions", l.MaxSubscriptions, 1, maxLimitSubs},
		{"files_max_bytes", l.FilesMaxBytes, MinFilesBytes, maxLimitBytes},
		{"files_sender_max_bytes", l.FilesSenderMaxBytes, MinFilesBytes, maxLimitBytes},
	} {
		switch {
		case f.v == 0:
		case f.v < 0:
			return fmt.Errorf("%w: %s.%s is %d: a limit cannot be negative (leave it out for the default)", ErrDirectoryMalformed, where, f.name, f.v)
		case f.v < f.lo || f.v > f.hi:
			return fmt.Errorf("%w: %s.%s is %d: it must be between %d and %d", ErrDirectoryMalformed, where, f.name, f.v, f.lo, f.hi)
		}
	}
	return nil
}

// consistent refuses resolved limits whose sender share exceeds the inbox
// (or the file queue).
func (l Limits) consistent(who string) error {
	if l.SenderMaxBytes > l.InboxMaxBytes {
		return fmt.Errorf("%w: %s: sender_max_bytes %d is more than inbox_max_bytes %d", ErrDirectoryMalformed, who, l.SenderMaxBytes, l.InboxMaxBytes)
	}
	if l.SenderMaxMessages > l.InboxMaxMessages {
		return fmt.Errorf("%w: %s: sender_max_messages %d is more than inbox_max_messages %d", ErrDirectoryMalformed, who, l.SenderMaxMessages, l.InboxMaxMessages)
	}
	if l.FilesSenderMaxBytes > l.FilesMaxBytes {
		return fmt.Errorf("%w: %s: files_sender_max_bytes %d is more than files_max_bytes %d", ErrDirectoryMalformed, who, l.FilesSenderMaxBytes, l.FilesMaxBytes)
	}
	return nil
}

// validateLimits checks the network's limits and every agency's, each on
// its own and as they combine.
func (d *Directory) validateLimits() error {
	if err := d.Limits.check("limits"); err != nil {
		return err
	}
	if err := d.NetworkLimits().consistent("limits"); err != nil {
		return err
	}
	for i := range d.Agencies {
		a := &d.Agencies[i]
		if err := a.Limits.check("agency " + a.ID + ": limits"); err != nil {
			return err
		}
		if err := d.LimitsOf(a.ID).consistent("agency " + a.ID + ": limits"); err != nil {
			return err
		}
	}
	return nil
}
