package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	gateway "github.com/rujukan/rujukan/agency-gateway"
	"github.com/rujukan/rujukan/agency-gateway/filetype"
	"github.com/rujukan/rujukan/crypto"
)

// fileOf is size bytes of a file for tests: a PDF's first line, then
// bytes from a seeded generator, so any copy can be made again to compare.
type fileOf struct {
	size int64
	seed uint64
}

func (f fileOf) reader() io.Reader {
	head := []byte("%PDF-1.7\n")
	if f.size < int64(len(head)) {
		head = head[:f.size]
	}
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], f.seed)
	rest := io.LimitReader(rand.NewChaCha8(seed), f.size-int64(len(head)))
	return io.MultiReader(bytes.NewReader(head), rest)
}

func (f fileOf) sha256() string {
	h := sha256.New()
	io.Copy(h, f.reader())
	return hex.EncodeToString(h.Sum(nil))
}

// upload streams a file to POST /v1/attachments and returns its id.
func upload(t testing.TB, base, token, typ, name string, f fileOf) map[string]any {
	t.Helper()
	req, err := http.NewRequest("POST", base+"/v1/attachments", f.reader())
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = f.size
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", typ)
	req.Header.Set("Content-Disposition", `attachment; filename="`+name+`"`)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("upload of %d bytes: %d %s", f.size, resp.StatusCode, raw)
	}
	var v map[string]any
	json.Unmarshal(raw, &v)
	return v
}

// download fetches a file of a referral (with a Range header when rng is
// not empty).
func download(t testing.TB, base, token, ref, aid, rng string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/v1/referrals/"+ref+"/attachments/"+aid, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, raw
}

// downloadHash streams a whole file and returns its SHA-256 and size.
func downloadHash(t testing.TB, base, token, ref, aid string) (string, int64) {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/v1/referrals/"+ref+"/attachments/"+aid, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		raw, _ := io.ReadAll(resp.Body)
		t.Fatalf("download %s: %d %s", aid, resp.StatusCode, raw)
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil)), n
}

// sendWithFiles sends a referral listing files and returns its id.
func sendWithFiles(t testing.TB, base, token, to string, ids ...string) string {
	t.Helper()
	b := sampleReferral(to)
	var atts []map[string]string
	for _, id := range ids {
		atts = append(atts, map[string]string{"id": id})
	}
	b["attachments"] = atts
	r := call(t, "POST", base+"/v1/referrals", token, b)
	if r.Status != http.StatusAccepted {
		t.Fatalf("send: %d %s", r.Status, r.Raw)
	}
	return r.str("id")
}

// attachmentsOf returns the files of a referral as a gateway shows them.
func attachmentsOf(t testing.TB, base, token, ref string) []map[string]any {
	t.Helper()
	r := call(t, "GET", base+"/v1/referrals/"+ref, token, nil)
	var out []map[string]any
	if list, ok := r.JSON["attachments"].([]any); ok {
		for _, a := range list {
			out = append(out, a.(map[string]any))
		}
	}
	return out
}

func anyBytes(c *gateway.Config) {
	c.Attachments.Types = append(append([]string{}, filetype.Default...), "application/octet-stream")
}

// sealedOverhead is what sealing adds to an empty file (the age header and
// one tag), for files whose sealed size falls on a chunk boundary.
func sealedOverhead(t testing.TB) int64 {
	id, err := crypto.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	w, err := crypto.SealFile(&b, id)
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	return int64(b.Len())
}

// plainFor is the size of a file whose sealed file is sealed bytes long.
func plainFor(t testing.TB, sealed int64) int64 {
	over := sealedOverhead(t) // header + nonce + one tag
	for p := sealed - over; p > 0; p-- {
		chunks := max(1, (p+64<<10-1)/(64<<10))
		if p+over+16*(chunks-1) == sealed {
			return p
		}
	}
	t.Fatalf("no size seals to %d", sealed)
	return 0
}

// TestAttachmentRoundTrip sends files of the sizes around every boundary
// (empty, one byte, one age chunk and one more byte, one transfer chunk
// and one more byte) with one referral, and the shelter downloads each
// whole and in ranges: the same bytes.
func TestAttachmentRoundTrip(t *testing.T) {
	n := newNetwork(t)
	n.tweak = anyBytes
	n.startBroker()
	n.startGateway("iom")
	n.startGateway("shelter")
	iom, shelter := n.url("iom"), n.url("shelter")
	sizes := []int64{0, 1, 64 << 10, 64<<10 + 1, plainFor(t, crypto.FileChunkSize), plainFor(t, crypto.FileChunkSize) + 1,
		plainFor(t, 3*crypto.FileChunkSize)}
	var ids []string
	files := map[string]fileOf{}
	for i, size := range sizes {
		f := fileOf{size: size, seed: uint64(i + 1)}
		typ := "application/octet-stream"
		if size >= 9 {
			typ = "application/pdf"
		}
		v := upload(t, iom, n.tokens["iom"], typ, fmt.Sprintf("scan-%d.pdf", i), f)
		if v["sha256"] != f.sha256() || int64(v["size"].(float64)) != size {
			t.Fatalf("upload %d: %v", size, v)
		}
		id := v["id"].(string)
		ids = append(ids, id)
		files[id] = f
	}
	ref := sendWithFiles(t, iom, n.tokens["iom"], "shelter", ids...)
	waitStatusWithin(t, iom, n.tokens["iom"], ref, "delivered", 60*time.Second)
	atts := attachmentsOf(t, shelter, n.tokens["shelter"], ref)
	if len(atts) != len(ids) {
		t.Fatalf("shelter lists %d files, want %d", len(atts), len(ids))
	}
	for _, a := range atts {
		if a["state"] != "available" || a["key"] != nil {
			t.Fatalf("file as shown: %v", a)
		}
	}
	for id, f := range files {
		sum, size := downloadHash(t, shelter, n.tokens["shelter"], ref, id)
		if sum != f.sha256() || size != f.size {
			t.Errorf("file of %d bytes came back as %d bytes, sha256 %s", f.size, size, sum)
		}
		// The sender can read what it sent.
		if sum, _ := downloadHash(t, iom, n.tokens["iom"], ref, id); sum != f.sha256() {
			t.Errorf("iom's own copy of %d bytes differs", f.size)
		}
	}
	// Ranges: one, several, open-ended, and one outside the file.
	big := ids[len(ids)-1]
	whole, _ := io.ReadAll(files[big].reader())
	resp, raw := download(t, shelter, n.tokens["shelter"], ref, big, "bytes=100000-100099")
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(raw, whole[100000:100100]) {
		t.Fatalf("range: %d, %d bytes", resp.StatusCode, len(raw))
	}
	if cd := resp.Header.Get("Content-Disposition"); !strings.HasPrefix(cd, "attachment;") {
		t.Fatalf("Content-Disposition %q", cd)
	}
	if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatal("no nosniff")
	}
	resp, raw = download(t, shelter, n.tokens["shelter"], ref, big, fmt.Sprintf("bytes=%d-", len(whole)-10))
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(raw, whole[len(whole)-10:]) {
		t.Fatalf("open range: %d", resp.StatusCode)
	}
	resp, raw = download(t, shelter, n.tokens["shelter"], ref, big, "bytes=0-9,600000-600009")
	if resp.StatusCode != http.StatusPartialContent || !bytes.Contains(raw, whole[600000:600010]) || !bytes.Contains(raw, whole[0:10]) {
		t.Fatalf("multiple ranges: %d", resp.StatusCode)
	}
	resp, raw = download(t, shelter, n.tokens["shelter"], ref, big, fmt.Sprintf("bytes=%d-", len(whole)+5))
	if resp.StatusCode != http.StatusRequestedRangeNotSatisfiable || !strings.Contains(resp.Header.Get("Content-Type"), "problem+json") {
		t.Fatalf("range outside: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), raw)
	}
	// Audit: upload, send, receive and each download, by hash; never a
	// file name.
	for _, id := range []string{"iom", "shelter"} {
		r := call(t, "GET", n.url(id)+"/v1/audit?limit=500", n.tokens[id], nil)
		if strings.Contains(string(r.Raw), "scan-") {
			t.Errorf("%s's audit log names a file", id)
		}
	}
	ra := call(t, "GET", shelter+"/v1/audit?action=attachment.download&limit=100", n.tokens["shelter"], nil)
	if got := strings.Count(string(ra.Raw), `"attachment.download"`); got < len(ids) {
		t.Errorf("%d download events at the shelter, want at least %d", got, len(ids))
	}
	for _, act := range []string{"attachment.upload", "attachment.send"} {
		r := call(t, "GET", iom+"/v1/audit?action="+act+"&limit=100", n.tokens["iom"], nil)
		if got := strings.Count(string(r.Raw), `"`+act+`"`); got != len(ids) {
			t.Errorf("%d %s events at iom, want %d", got, act, len(ids))
		}
	}
	rr := call(t, "GET", shelter+"/v1/audit?action=attachment.receive&limit=100", n.tokens["shelter"], nil)
	if got := strings.Count(string(rr.Raw), `"verified"`); got != len(ids) {
		t.Errorf("%d files verified at the shelter, want %d", got, len(ids))
	}
	// Nothing of a file is left half written, and nothing is kept in the
	// clear.
	parts, _ := filepath.Glob(filepath.Join(n.data, "*", "*", "attachments", "in", "*", "*.part"))
	if len(parts) > 0 {
		t.Errorf("partial files left: %v", parts)
	}
}

func waitStatusWithin(t testing.TB, base, token, id, want string, d time.Duration) {
	t.Helper()
	eventually(t, fmt.Sprintf("referral %s reaching %s", id, want), d, func() (bool, string) {
		s, _ := statusOf(t, base, token, id)
		return s == want, s
	})
}

// TestAttachmentHostile: what a member of staff, or another agency, may
// not do with files.
func TestAttachmentHostile(t *testing.T) {
	n := newNetwork(t)
	n.tweak = func(c *gateway.Config) { c.Attachments.MaxSize = 1 << 20 }
	n.startBroker()
	for _, id := range []string{"iom", "shelter", "dinsos"} {
		n.startGateway(id)
	}
	iom, shelter, dinsos := n.url("iom"), n.url("shelter"), n.url("dinsos")
	rawUpload := func(base, token, typ string, body []byte) response {
		return callType(t, "POST", base+"/v1/attachments", token, string(body), typ)
	}
	// A web page labelled as a PDF.
	r := rawUpload(iom, n.tokens["iom"], "application/pdf", []byte("<!DOCTYPE html><html><body><script>alert(1)</script></body></html>"))
	if r.Status != http.StatusUnsupportedMediaType {
		t.Fatalf("HTML labelled PDF: %d %s", r.Status, r.Raw)
	}
	// A type the gateway does not take.
	if r := rawUpload(iom, n.tokens["iom"], "text/html", []byte("<html></html>")); r.Status != http.StatusUnsupportedMediaType {
		t.Fatalf("text/html: %d", r.Status)
	}
	// Over the limit, declared and not declared.
	big := fileOf{size: 1<<20 + 1, seed: 9}
	req, _ := http.NewRequest("POST", iom+"/v1/attachments", big.reader())
	req.ContentLength = big.size
	req.Header.Set("Authorization", "Bearer "+n.tokens["iom"])
	req.Header.Set("Content-Type", "application/pdf")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("over the limit: %d", resp.StatusCode)
	}
	req, _ = http.NewRequest("POST", iom+"/v1/attachments", io.MultiReader(big.reader())) // chunked: no length
	req.Header.Set("Authorization", "Bearer "+n.tokens["iom"])
	req.Header.Set("Content-Type", "application/pdf")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("over the limit, chunked: %d", resp.StatusCode)
	}
	if left, _ := filepath.Glob(filepath.Join(n.data, "*", "iom", "attachments", "*")); len(left) > 0 {
		t.Fatalf("refused uploads left files: %v", left)
	}
	// Two referrals with a file each.
	a := upload(t, iom, n.tokens["iom"], "application/pdf", "a.pdf", fileOf{size: 5000, seed: 1})["id"].(string)
	b := upload(t, iom, n.tokens["iom"], "application/pdf", "b.pdf", fileOf{size: 6000, seed: 2})["id"].(string)
	refA := sendWithFiles(t, iom, n.tokens["iom"], "shelter", a)
	refB := sendWithFiles(t, iom, n.tokens["iom"], "shelter", b)
	waitStatusWithin(t, iom, n.tokens["iom"], refA, "delivered", 30*time.Second)
	waitStatusWithin(t, iom, n.tokens["iom"], refB, "delivered", 30*time.Second)
	// A file already sent cannot go with another message.
	r = call(t, "POST", iom+"/v1/referrals", n.tokens["iom"], withFiles(sampleReferral("dinsos"), a))
	if r.Status != http.StatusUnprocessableEntity {
		t.Fatalf("a file sent twice: %d %s", r.Status, r.Raw)
	}
	// Another agency's upload id, or one that does not exist.
	c := upload(t, dinsos, n.tokens["dinsos"], "application/pdf", "c.pdf", fileOf{size: 100, seed: 3})["id"].(string)
	for _, id := range []string{c, "nosuchfile"} {
		r = call(t, "POST", iom+"/v1/referrals", n.tokens["iom"], withFiles(sampleReferral("shelter"), id))
		if r.Status != http.StatusUnprocessableEntity {
			t.Fatalf("someone else's upload %s: %d %s", id, r.Status, r.Raw)
		}
	}
	// The file of one referral is not found under another.
	if resp, _ := download(t, shelter, n.tokens["shelter"], refB, a, ""); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("a file under another referral: %d", resp.StatusCode)
	}
	// A third agency cannot download, even knowing both ids.
	if resp, _ := download(t, dinsos, n.tokens["dinsos"], refA, a, ""); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("a third agency: %d", resp.StatusCode)
	}
	// The right file under the right referral works.
	if resp, _ := download(t, shelter, n.tokens["shelter"], refA, a, ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("the shelter's own file: %d", resp.StatusCode)
	}
	// No file key in any answer.
	for _, base := range []string{iom, shelter} {
		tok := n.tokens["iom"]
		if base == shelter {
			tok = n.tokens["shelter"]
		}
		r := call(t, "GET", base+"/v1/referrals/"+refA, tok, nil)
		if regexp.MustCompile(`"key"`).Match(r.Raw) {
			t.Fatalf("a file key is shown: %s", r.Raw)
		}
	}
}

func withFiles(b map[string]any, ids ...string) map[string]any {
	var atts []map[string]string
	for _, id := range ids {
		atts = append(atts, map[string]string{"id": id})
	}
	b["attachments"] = atts
	return b
}

// attachmentMetric reads rujukan_attachment_bytes_total of a gateway.
func attachmentMetric(t testing.TB, n *network, id, dir string) int64 {
	re := regexp.MustCompile(`rujukan_attachment_bytes_total\{agency="` + id + `",direction="` + dir + `"\} ([0-9.e+]+)`)
	m := re.FindStringSubmatch(metrics(t, n.metricsURL(id)))
	if m == nil {
		return 0
	}
	f, _ := strconv.ParseFloat(m[1], 64)
	return int64(f)
}

// partSize is how much of a file has arrived at a gateway (its .part).
func partSize(n *network, id string) int64 {
	parts, _ := filepath.Glob(filepath.Join(n.data, "*", id, "attachments", "in", "*", "*.part"))
	var total int64
	for _, p := range parts {
		if st, err := os.Stat(p); err == nil {
			total += st.Size()
		}
	}
	return total
}

// uploadFor uploads a file at a gateway for a kind of message.
func uploadFor(t testing.TB, a api, forKind string, f fileOf) string {
	t.Helper()
	req, _ := http.NewRequest("POST", a.url+"/v1/attachments?for="+forKind, f.reader())
	req.ContentLength = f.size
	req.Header.Set("Authorization", "Bearer "+a.tok)
	req.Header.Set("Content-Type", "application/pdf")
	req.Header.Set("Content-Disposition", `attachment; filename="record.pdf"`)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v map[string]any
	json.NewDecoder(resp.Body).Decode(&v)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("upload for %s: %d %v", forKind, resp.StatusCode, v)
	}
	return v["id"].(string)
}

// requestFileHash downloads a file of a statement request.
func requestFileHash(t testing.TB, a api, id, aid string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", a.url+"/v1/statement-requests/"+id+"/attachments/"+aid, nil)
	req.Header.Set("Authorization", "Bearer "+a.tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("download %s of request %s: %d", aid, id, resp.StatusCode)
	}
	h := sha256.New()
	io.Copy(h, resp.Body)
	return hex.EncodeToString(h.Sum(nil))
}

// TestStatementFiles: the police send a statement request with a file (a
// warrant), the shelter answers with a statement and a recording; each
// side downloads the other's file under the request.
func TestStatementFiles(t *testing.T) {
	n := startNet(t, "police", "shelter")
	police, shelter := n.api("police"), n.api("shelter")
	warrant := fileOf{size: 40_000, seed: 11}
	wid := uploadFor(t, police, "statement-request", warrant)
	body := requestBody("shelter", "V-2026-0042", time.Now().Add(72*time.Hour))
	body["attachments"] = []map[string]string{{"id": wid}}
	id := sendRequest(t, police, body)
	waitListed(t, police, "outbox", id, "delivered")
	if got := requestFileHash(t, shelter, id, wid); got != warrant.sha256() {
		t.Fatal("the shelter's copy of the warrant differs")
	}
	if r := shelter.do(t, "GET", "/v1/statement-requests/"+id, nil); r.str("status") != "read" {
		t.Fatalf("opening the request: %s", r.Raw)
	}
	if r := shelter.do(t, "POST", "/v1/statement-requests/"+id+"/consent", consentGiven(30, "")); r.Status != 200 {
		t.Fatalf("consent: %d %s", r.Status, r.Raw)
	}
	rec := fileOf{size: 700_000, seed: 12}
	rid := uploadFor(t, shelter, "statement", rec)
	sb := statementBody("The statement, as recorded.")
	sb["attachments"] = []map[string]string{{"id": rid}}
	if r := shelter.do(t, "POST", "/v1/statement-requests/"+id+"/response", sb); r.Status != 200 {
		t.Fatalf("response: %d %s", r.Status, r.Raw)
	}
	eventually(t, "the recording at the police", 30*time.Second, func() (bool, string) {
		r := police.do(t, "GET", "/v1/statement-requests/"+id, nil)
		atts, _ := r.JSON["attachments"].([]any)
		for _, a := range atts {
			if m := a.(map[string]any); m["id"] == rid {
				return m["state"] == "available", fmt.Sprint(m["state"])
			}
		}
		return false, r.str("status")
	})
	if got := requestFileHash(t, police, id, rid); got != rec.sha256() {
		t.Fatal("the police's copy of the recording differs")
	}
	// The shelter's own copy, and the warrant at the police.
	if requestFileHash(t, shelter, id, rid) != rec.sha256() || requestFileHash(t, police, id, wid) != warrant.sha256() {
		t.Fatal("a sender's own copy differs")
	}
	// A file uploaded for a statement cannot go with a referral.
	other := uploadFor(t, shelter, "statement", fileOf{size: 100, seed: 13})
	if r := shelter.do(t, "POST", "/v1/referrals", withFiles(sampleReferral("police"), other)); r.Status != http.StatusUnprocessableEntity {
		t.Fatalf("a statement's file with a referral: %d %s", r.Status, r.Raw)
	}
}
