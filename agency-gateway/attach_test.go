package gateway_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gateway "github.com/rujukan/rujukan/agency-gateway"
	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/crypto"
	"github.com/rujukan/rujukan/policy"
)

// pdfOf is n bytes that start as a PDF does.
func pdfOf(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, 1))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	copy(b, "%PDF-1.7\n")
	return b
}

func hexSum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// uploadAt uploads a file at agency id as its staff.
func (c *core) uploadAt(id string, data []byte) gateway.AttachmentInfo {
	c.t.Helper()
	info, err := c.gws[id].Upload(context.Background(), c.staff(id), "referral", "application/pdf", "scan.pdf", bytes.NewReader(data))
	if err != nil {
		c.t.Fatal(err)
	}
	return info
}

// readAll downloads a file of a referral at agency id.
func (c *core) readAll(id, ref, aid string) ([]byte, error) {
	f, err := c.gws[id].OpenAttachment(context.Background(), c.staff(id), "referral", ref, aid, true)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.NewSectionReader(f, 0, f.Size))
}

func withAttachments(b map[string]any, ids ...string) map[string]any {
	var atts []map[string]string
	for _, id := range ids {
		atts = append(atts, map[string]string{"id": id})
	}
	b["attachments"] = atts
	return b
}

// TestAttachmentChunksTamperedInFlight: chunks replaced, dropped,
// duplicated or reordered between the broker and the recipient. A replaced
// chunk is refused before it is written and a dropped one never arrives:
// either way the file is not complete, no receipt comes, the sender
// publishes the file again and the recipient writes what it lacks. Copies
// and reordering do no harm. The file that arrives has the uploaded bytes,
// and the referral is delivered only then.
func TestAttachmentChunksTamperedInFlight(t *testing.T) {
	cases := map[string]func(state *tamper, to string, ch gateway.Chunk) []gateway.Chunk{
		"replaced": func(s *tamper, to string, ch gateway.Chunk) []gateway.Chunk {
			if ch.Header[crypto.HeaderChunk] == "1" && s.once() {
				d := bytes.Clone(ch.Data)
				d[100] ^= 1
				ch.Data = d
			}
			return []gateway.Chunk{ch}
		},
		"dropped": func(s *tamper, to string, ch gateway.Chunk) []gateway.Chunk {
			if ch.Header[crypto.HeaderChunk] == "2" && s.once() {
				return nil
			}
			return []gateway.Chunk{ch}
		},
		"duplicated": func(s *tamper, to string, ch gateway.Chunk) []gateway.Chunk {
			return []gateway.Chunk{ch, ch}
		},
		"reordered": func(s *tamper, to string, ch gateway.Chunk) []gateway.Chunk {
			s.mu.Lock()
			defer s.mu.Unlock()
			if ch.Header[crypto.HeaderChunk] == "0" && s.held == nil {
				s.held = &ch
				return nil
			}
			if ch.Header[crypto.HeaderChunk] == "2" && s.held != nil {
				h := *s.held
				return []gateway.Chunk{ch, h}
			}
			return []gateway.Chunk{ch}
		},
	}
	for name, f := range cases {
		t.Run(name, func(t *testing.T) {
			c := mustCoreOpts(t, gateway.Options{FileResend: 300 * time.Millisecond})
			s := &tamper{}
			c.net.SetChunkFilter(func(to string, ch gateway.Chunk) []gateway.Chunk { return f(s, to, ch) })
			data := pdfOf(3*crypto.FileChunkSize+1000, 7)
			info := c.uploadAt("iom", data)
			acc := c.mustSend("iom", "referral", policy.ActionReferralSend, "", withAttachments(referral("shelter"), info.ID))
			deadline := time.Now().Add(20 * time.Second)
			for {
				it := c.item("iom", policy.ActionReferralRead, acc.ID)
				if it.Status == policy.RefDelivered {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("not delivered: %s", it.Status)
				}
				// The recipient never serves a file that is not whole. It
				// may become whole between the listing and the read: then
				// it is served, with the uploaded bytes.
				if it2, err := c.gws["shelter"].Item(c.staff("shelter"), policy.ActionReferralRead, acc.ID); err == nil {
					if len(it2.Attachments) == 1 && it2.Attachments[0].State == gateway.AttachmentArriving {
						got, err := c.readAll("shelter", acc.ID, info.ID)
						switch {
						case err == nil && !bytes.Equal(got, data):
							t.Fatalf("a file still arriving was served: %d bytes, not the %d uploaded", len(got), len(data))
						case err != nil && !errors.Is(err, gateway.ErrArriving):
							t.Fatalf("a file still arriving: %v, want ErrArriving", err)
						}
					}
				}
				time.Sleep(20 * time.Millisecond)
			}
			got, err := c.readAll("shelter", acc.ID, info.ID)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("the file at the shelter: %d bytes, %v", len(got), err)
			}
			if name == "replaced" {
				ev := c.waitAudit("shelter", func(e store.AuditEvent) bool { return e.Action == gateway.ActEnvelopesRefused })
				if ev.Detail["refused."+gateway.ReasonChunkInvalid] == "" {
					t.Fatalf("the spoiled chunk is not counted: %+v", ev)
				}
			}
		})
	}
}

type tamper struct {
	mu   sync.Mutex
	done bool
	held *gateway.Chunk
}

func (s *tamper) once() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return false
	}
	s.done = true
	return true
}

// TestAttachmentSwappedFile: the sealed body promises one file and the
// chunks that arrive, correctly authenticated, make another (a sender
// whose record of the upload lies). The recipient opens the whole file,
// finds the hash differs, keeps nothing and answers with a rejected
// receipt: the referral fails at the sender with the reason.
func TestAttachmentSwappedFile(t *testing.T) {
	c := mustCore(t)
	info := c.uploadAt("iom", pdfOf(200_000, 3))
	err := c.gws["iom"].DB().Update(func(tx *store.Tx) error {
		u, err := tx.Upload(info.ID)
		if err != nil {
			return err
		}
		u.SHA256 = hexSum([]byte("another file"))
		return tx.PutUpload(u)
	})
	if err != nil {
		t.Fatal(err)
	}
	acc := c.mustSend("iom", "referral", policy.ActionReferralSend, "", withAttachments(referral("shelter"), info.ID))
	it := c.waitStatus("iom", policy.ActionReferralRead, acc.ID, policy.RefFailed)
	last := it.Timeline[len(it.Timeline)-1]
	if last.Reason != gateway.ReasonAttachmentInvalid {
		t.Fatalf("failed with %q", last.Reason)
	}
	sh := c.item("shelter", policy.ActionReferralRead, acc.ID)
	if len(sh.Attachments) != 1 || sh.Attachments[0].State != gateway.AttachmentFailed {
		t.Fatalf("the shelter shows %+v", sh.Attachments)
	}
	kept, _ := filepath.Glob(filepath.Join(c.data, "gateways", "shelter", "attachments", "in", "*", "*"))
	if len(kept) != 0 {
		t.Fatalf("the shelter kept %v", kept)
	}
	if _, err := c.readAll("shelter", acc.ID, info.ID); !errors.Is(err, gateway.ErrNotFound) {
		t.Fatalf("a file that did not verify opens: %v", err)
	}
}

// TestAttachmentListedBySomeoneElse: a file can be sent only by whoever
// uploaded it, once, with the kind of message it was uploaded for.
func TestAttachmentListedBySomeoneElse(t *testing.T) {
	c := mustCore(t)
	info := c.uploadAt("iom", pdfOf(1000, 1))
	other := c.staff("iom")
	other.Subject = "someone-else"
	raw, _ := json.Marshal(withAttachments(referral("shelter"), info.ID))
	_, err := c.gws["iom"].Send(context.Background(), other, gateway.Draft{Kind: "referral", Action: policy.ActionReferralSend, Body: raw})
	var invalid *gateway.InvalidError
	if !errors.As(err, &invalid) || invalid.Fields[0].Field != "/attachments/0/id" {
		t.Fatalf("someone else's upload: %v", err)
	}
	// Fields the gateway fills in may not come from the caller.
	forged := []byte(strings.Replace(string(raw), `{"id":"`+info.ID+`"}`,
		`{"id":"`+info.ID+`","key":"AAAAAAAAAAAAAAAAAAAAAA"}`, 1))
	if _, err := c.send("iom", "referral", policy.ActionReferralSend, "", forged); !errors.As(err, &invalid) {
		t.Fatalf("a caller setting the key: %v", err)
	}
	// An upload needs the scope of the message it goes with.
	inv := policy.Principal{Agency: "police", Subject: "investigator", Scopes: []string{policy.ScopeStatementRequest}}
	if _, err := c.gws["police"].Upload(context.Background(), inv, "referral", "application/pdf", "x.pdf", bytes.NewReader(pdfOf(10, 1))); !errors.Is(err, policy.ErrInsufficientScope) {
		t.Fatalf("an upload for a referral without referral:send: %v", err)
	}
	if _, err := c.gws["police"].Upload(context.Background(), inv, "statement-request", "application/pdf", "x.pdf", bytes.NewReader(pdfOf(10, 1))); err != nil {
		t.Fatalf("an upload for a statement request: %v", err)
	}
	// Nothing is left of an upload that is refused.
	_, err = c.gws["iom"].Upload(context.Background(), c.staff("iom"), "referral", "application/pdf", "x.pdf", strings.NewReader("<html>"))
	if !errors.Is(err, gateway.ErrUnsupportedType) {
		t.Fatalf("HTML as a PDF: %v", err)
	}
	left, _ := os.ReadDir(filepath.Join(c.data, "gateways", "iom", "attachments"))
	if len(left) != 1 {
		t.Fatalf("files left: %d", len(left))
	}
}

// TestUnsentUploadsExpire: an upload not sent with any message is deleted
// after the configured time, file and record, with an audit event.
func TestUnsentUploadsExpire(t *testing.T) {
	c := mustCore(t)
	info := c.uploadAt("iom", pdfOf(1000, 1))
	path := filepath.Join(c.data, "gateways", "iom", "attachments", info.ID+".age")
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
	c.clock.Advance(25 * time.Hour)
	c.waitAudit("iom", func(e store.AuditEvent) bool { return e.Action == gateway.ActAttachmentExpire && e.Object == info.ID })
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the file is still there: %v", err)
	}
}

// TestNoReadBeforeFiles: while a referral's files are still arriving, its
// recipient may open it but the sender learns nothing more than sent, and
// a status change waits for the files.
func TestNoReadBeforeFiles(t *testing.T) {
	c := mustCore(t)
	c.net.SetChunkFilter(func(to string, ch gateway.Chunk) []gateway.Chunk { return nil }) // nothing arrives
	info := c.uploadAt("iom", pdfOf(10_000, 1))
	acc := c.mustSend("iom", "referral", policy.ActionReferralSend, "", withAttachments(referral("shelter"), info.ID))
	c.waitStatus("iom", policy.ActionReferralRead, acc.ID, policy.RefSent)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := c.gws["shelter"].Item(c.staff("shelter"), policy.ActionReferralRead, acc.ID); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the referral did not arrive")
		}
		time.Sleep(10 * time.Millisecond)
	}
	it, err := c.gws["shelter"].Get(context.Background(), c.staff("shelter"), acc.ID)
	if err != nil {
		t.Fatal(err)
	}
	if it.Status != policy.RefDelivered || it.Attachments[0].State != gateway.AttachmentArriving {
		t.Fatalf("opened while its file arrives: %s, %+v", it.Status, it.Attachments)
	}
	_, err = c.send("shelter", "status", policy.ActionReferralStatus, acc.ID, map[string]string{"status": "accepted"})
	if !errors.Is(err, policy.ErrConflict) {
		t.Fatalf("a decision before the files: %v", err)
	}
	time.Sleep(300 * time.Millisecond)
	if it := c.item("iom", policy.ActionReferralRead, acc.ID); it.Status != policy.RefSent || it.Outcome != "" {
		t.Fatalf("the sender sees %s (outcome %q) before the file arrived", it.Status, it.Outcome)
	}
}

// TestCompletionCutShort: the last chunk is recorded but the file cannot
// be kept (here: its place is taken); once the obstacle is gone, a
// restarted gateway completes it, and the referral is delivered.
func TestCompletionCutShort(t *testing.T) {
	c := mustCore(t)
	data := pdfOf(700_000, 2)
	info := c.uploadAt("iom", data)
	block := filepath.Join(c.data, "gateways", "shelter", "attachments", "in", "iom", info.ID+".age")
	if err := os.MkdirAll(filepath.Join(block, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	acc := c.mustSend("iom", "referral", policy.ActionReferralSend, "", withAttachments(referral("shelter"), info.ID))
	deadline := time.Now().Add(10 * time.Second)
	for {
		it, err := c.gws["shelter"].Item(c.staff("shelter"), policy.ActionReferralRead, acc.ID)
		if err == nil && len(it.Attachments) == 1 && it.Attachments[0].Received == info.Size+(it.Attachments[0].Received-info.Size) &&
			it.Attachments[0].Received >= it.Attachments[0].Size {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the chunks did not all arrive: %+v", it.Attachments)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	if it := c.item("iom", policy.ActionReferralRead, acc.ID); it.Outcome != "" {
		t.Fatalf("delivered although the file was not kept: %s", it.Status)
	}
	os.RemoveAll(block)
	c.stop("shelter")
	c.start("shelter")
	c.waitStatus("iom", policy.ActionReferralRead, acc.ID, policy.RefDelivered)
	got, err := c.readAll("shelter", acc.ID, info.ID)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the file after the restart: %d bytes, %v", len(got), err)
	}
}

// TestHostileFileDeclarations: a member agency, with its own keys, sends
// envelopes listing files the recipient would not take from its own staff
// (over its size limit, of a type it does not accept): refused, nothing
// kept.
func TestHostileFileDeclarations(t *testing.T) {
	c := mustCore(t)
	for name, att := range map[string]map[string]any{
		"half a terabyte": {"size": int64(1) << 39, "type": "application/pdf", "sealed_size": int64(1)<<39 + 16 + 16*(int64(1)<<23)},
		"a web page":      {"size": 1000, "type": "text/html", "sealed_size": 1000 + 32 + 1600},
	} {
		b := referral("shelter")
		att["id"], att["name"], att["sha256"], att["key"] = crypto.NewID(), "bukti.pdf", strings.Repeat("a", 64), "AAAAAAAAAAAAAAAAAAAAAA"
		b["attachments"] = []any{att}
		b["consent"].(map[string]any)["recorded_by"] = "iom/someone"
		env := c.seal("iom", "shelter", crypto.KindReferral, b)
		h, err := crypto.ParseHeader(env)
		if err != nil {
			t.Fatal(err)
		}
		c.net.Inject("shelter", "iom", env)
		c.waitAudit("shelter", func(e store.AuditEvent) bool {
			return e.Object == h.ID && e.Reason == gateway.ReasonAttachmentInvalid
		})
		var n int
		c.gws["shelter"].DB().View(func(tx *store.Tx) error { trs, _ := tx.TransfersIn(""); n = len(trs); return nil })
		if n != 0 {
			t.Fatalf("%s: %d transfers kept", name, n)
		}
	}
}

// TestStaleArrivalsExpire: a file that stops arriving is given up after
// the delivery deadline: what arrived is deleted and the file shows as
// failed.
func TestStaleArrivalsExpire(t *testing.T) {
	c := mustCore(t)
	c.net.SetChunkFilter(func(to string, ch gateway.Chunk) []gateway.Chunk {
		if ch.Header[crypto.HeaderChunk] == "0" {
			return []gateway.Chunk{ch}
		}
		return nil
	})
	info := c.uploadAt("iom", pdfOf(2*crypto.FileChunkSize, 5))
	acc := c.mustSend("iom", "referral", policy.ActionReferralSend, "", withAttachments(referral("shelter"), info.ID))
	part := filepath.Join(c.data, "gateways", "shelter", "attachments", "in", "iom", info.ID+".age.part")
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(part); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no chunk arrived")
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.clock.Advance(c.config("shelter").DeliveryDeadline + time.Hour)
	c.waitAudit("shelter", func(e store.AuditEvent) bool {
		return e.Action == gateway.ActAttachmentReceive && e.Reason == gateway.ReasonAttachmentIncomplete
	})
	// The part is removed right after the commit that records the failure.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		_, err := os.Stat(part)
		if errors.Is(err, os.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the part received is still there: %v", err)
		}
	}
	if it := c.item("shelter", policy.ActionReferralRead, acc.ID); it.Attachments[0].State != gateway.AttachmentFailed {
		t.Fatalf("the file shows as %s", it.Attachments[0].State)
	}
}

// TestArrivingQuota: one member agency cannot have more than
// attachments.arriving_max bytes of files on their way to another at
// once; messages over it are refused, the others' files are not affected.
func TestArrivingQuota(t *testing.T) {
	c := mustCore(t)
	size := int64(1900 << 20)
	sealed := size + 16 + 16*((size+64<<10-1)/(64<<10)) + 1500
	var ids []string
	for range 5 {
		b := referral("shelter")
		b["attachments"] = []any{map[string]any{"id": crypto.NewID(), "name": "rekaman.mp4", "type": "video/mp4",
			"size": size, "sealed_size": sealed, "sha256": strings.Repeat("b", 64), "key": "AAAAAAAAAAAAAAAAAAAAAA"}}
		b["consent"].(map[string]any)["recorded_by"] = "iom/someone"
		env := c.seal("iom", "shelter", crypto.KindReferral, b)
		h, err := crypto.ParseHeader(env)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, h.ID)
		c.net.Inject("shelter", "iom", env)
	}
	ev := c.waitAudit("shelter", func(e store.AuditEvent) bool { return e.Reason == gateway.ReasonAttachmentQuota })
	if !slices.Contains(ids, ev.Object) {
		t.Fatalf("refused %s", ev.Object)
	}
	var n int
	c.gws["shelter"].DB().View(func(tx *store.Tx) error { trs, _ := tx.TransfersIn(""); n = len(trs); return nil })
	if n != 4 {
		t.Fatalf("%d files expected at the shelter, want 4", n)
	}
}

// halfUpload writes a half-written upload named name in agency id's
// attachments, as one under way or left by a crash, and returns the
// attachments folder and the file's path.
func (c *core) halfUpload(id, name string) (dir, path string) {
	c.t.Helper()
	dir = filepath.Join(c.config(id).Data, "attachments")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		c.t.Fatal(err)
	}
	path = filepath.Join(dir, name+".age.tmp")
	if err := os.WriteFile(path, []byte("half an upload"), 0o600); err != nil {
		c.t.Fatal(err)
	}
	return dir, path
}

// TestUploadWhileStarting checks that the uploads a crash left half
// written are gone once a gateway is open, before it takes an upload, and
// that an upload under way while the gateway starts its loops is kept: a
// restarted gateway once removed such a file under it (a 500 in the chaos
// run).
func TestUploadWhileStarting(t *testing.T) {
	c := mustCore(t)
	c.stop("iom")
	cfg := c.config("iom")
	dir, stale := c.halfUpload("iom", "left-by-a-crash")
	gw, err := gateway.New(cfg, c.keys["iom"], c.net.Bus("iom"), gateway.Options{Logger: quiet, Now: c.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close() })
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a half-written upload left by a crash is still there once the gateway is open (%v)", err)
	}

	data := pdfOf(64<<10, 7)
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := gw.Upload(context.Background(), c.staff("iom"), "referral", "application/pdf", "scan.pdf", pr)
		done <- err
	}()
	if _, err := pw.Write(data[:len(data)/2]); err != nil {
		t.Fatal(err)
	}
	writing := func() bool {
		tmps, _ := filepath.Glob(filepath.Join(dir, "*.tmp"))
		return len(tmps) == 1
	}
	for deadline := time.Now().Add(10 * time.Second); !writing(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the upload under way wrote no file")
		}
	}
	gw.Start()
	// Give the loops the chance to do their first round while the upload
	// waits for the rest of the file.
	for deadline := time.Now().Add(200 * time.Millisecond); writing() && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if !writing() {
		t.Error("the file of the upload under way was removed when the gateway started")
	}
	if _, err := pw.Write(data[len(data)/2:]); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if err := <-done; err != nil {
		t.Fatalf("an upload under way while the gateway started: %v", err)
	}
}

// TestSecondGatewayKeepsUploads checks that a second gateway started on
// the data of one that runs fails on the store's lock before it touches
// the first one's uploads under way.
func TestSecondGatewayKeepsUploads(t *testing.T) {
	c := mustCore(t)
	cfg := c.config("iom")
	_, writing := c.halfUpload("iom", "under-way")
	if gw, err := gateway.New(cfg, c.keys["iom"], c.net.Bus("iom"), gateway.Options{Logger: quiet}); !errors.Is(err, store.ErrLocked) {
		if err == nil {
			gw.Close()
		}
		t.Fatalf("a second gateway on the same data: %v, want %v", err, store.ErrLocked)
	}
	if _, err := os.Stat(writing); err != nil {
		t.Errorf("the running gateway's upload under way: %v", err)
	}
}
