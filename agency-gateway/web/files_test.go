package web

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	gateway "github.com/rujukan/rujukan/agency-gateway"
)

// A small PDF: its bytes are of the type it is uploaded as.
var testPDF = []byte("%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n")

// formFile is a file part of a multipart form.
type formFile struct {
	name, typ string
	data      []byte
}

// multipartBody builds a form as a browser sends it: the fields in order,
// then the files (the file input is last in the form).
func multipartBody(t testing.TB, fields [][2]string, files []formFile) (string, []byte) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, f := range fields {
		mw.WriteField(f[0], f[1])
	}
	for _, f := range files {
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="file"; filename="%s"`, f.name))
		h.Set("Content-Type", f.typ)
		w, err := mw.CreatePart(h)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(f.data)
	}
	mw.Close()
	return mw.FormDataContentType(), buf.Bytes()
}

// fields lists form values with the CSRF token first.
func fields(csrf string, v url.Values) [][2]string {
	out := [][2]string{}
	if csrf != "" {
		out = append(out, [2]string{"csrf", csrf})
	}
	for k, vs := range v {
		for _, x := range vs {
			out = append(out, [2]string{k, x})
		}
	}
	return out
}

func (c *client) raw(method, path, ct string, body []byte, hdr map[string]string) page {
	c.t.Helper()
	if hdr == nil {
		hdr = map[string]string{}
	}
	hdr["Content-Type"] = ct
	req, err := http.NewRequest(method, c.base+path, bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if c.lang != "" {
		req.Header.Set("Accept-Language", c.lang)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return page{Code: resp.StatusCode, Header: resp.Header, Body: string(b), Loc: resp.Header.Get("Location")}
}

// postFiles posts a form with files from page from to path.
func (c *client) postFiles(from, path string, v url.Values, files []formFile) page {
	c.t.Helper()
	ct, b := multipartBody(c.t, fields(csrfOf(c.t, c.get(from)), v), files)
	return c.raw("POST", path, ct, b, nil)
}

// sealedFiles counts the files uploaded at agency id's gateway.
func sealedFiles(t testing.TB, n *network, id string) int {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(n.data, "gateways", id, "attachments", "*.age"))
	tmp, _ := filepath.Glob(filepath.Join(n.data, "gateways", id, "attachments", "*.tmp"))
	return len(m) + len(tmp)
}

// carriesFiles reports whether the test network's bus carries files; the
// tests that send files need it.
func carriesFiles(n *network) bool {
	_, ok := any(n.bus.Bus("iom")).(gateway.FileBus)
	return ok
}

func sentReferrals(t testing.TB, n *network, id string) int {
	t.Helper()
	page, err := n.gws[id].List(newFakeAuth(id, id, nil).anyPrincipal(), gatewayOutbox)
	if err != nil {
		t.Fatal(err)
	}
	return len(page.Items)
}

var fileLinkRE = regexp.MustCompile(`href="(/ui/referrals/[^/"]+/files/[^"]+)"`)

// TestFilesWithoutScript: a referral form posted as multipart, its file
// streamed into the gateway, sent with the referral and listed where it
// arrives; the download is an attachment, and no one else gets it.
func TestFilesWithoutScript(t *testing.T) {
	n := mustNetwork(t)
	iom, shelter, dinsos := mustApp(t, n, "iom"), mustApp(t, n, "shelter"), mustApp(t, n, "dinsos")
	cw := iom.client()
	cw.login("cw")
	form := cw.get("/ui/referrals/new").Body
	for _, want := range []string{`enctype="multipart/form-data"`, `type="file"`, `name="file" multiple`, `data-upload="referral"`} {
		if !strings.Contains(form, want) {
			t.Fatalf("form lacks %s:\n%s", want, form)
		}
	}
	if strings.Index(form, `type="file"`) < strings.Index(form, `name="notes"`) {
		t.Fatal("the file input is not after the text fields")
	}
	r := cw.postFiles("/ui/referrals/new", "/ui/referrals", referralValues("shelter"),
		[]formFile{{"Laporan medis <1>.pdf", "application/pdf", testPDF}, {"", "application/octet-stream", nil}})
	if sealedFiles(t, n, "iom") != 1 {
		t.Fatalf("files stored: %d", sealedFiles(t, n, "iom"))
	}
	if !carriesFiles(n) {
		// Until the in-memory bus carries files the gateway refuses to
		// send them; the form comes back with the file kept.
		if r.Code != http.StatusServiceUnavailable || !strings.Contains(r.Body, "Laporan medis &lt;1&gt;.pdf") ||
			!strings.Contains(r.Body, `name="attachment"`) || !strings.Contains(r.Body, "V-2026-0042") {
			t.Fatalf("send without a file bus: %d\n%s", r.Code, r.Body)
		}
		t.Skip("the test bus carries no files yet: the rest needs membus with FileBus")
	}
	if r.Code != http.StatusSeeOther || !strings.HasPrefix(r.Loc, "/ui/referrals/") {
		t.Fatalf("send: %d %s\n%s", r.Code, r.Loc, r.Body)
	}
	id := strings.TrimPrefix(r.Loc, "/ui/referrals/")
	own := cw.get(r.Loc).Body
	if !strings.Contains(own, "Laporan medis &lt;1&gt;.pdf") || !strings.Contains(own, "PDF") ||
		!strings.Contains(own, "available") {
		t.Fatalf("referral page without its file:\n%s", own)
	}
	scw := shelter.client()
	scw.login("cw")
	var link string
	eventually(t, "the file arriving at the shelter", func() bool {
		b := scw.get("/ui/referrals/" + id).Body
		if m := fileLinkRE.FindStringSubmatch(b); m != nil && strings.Contains(b, "state-available") {
			link = m[1]
			return true
		}
		return false
	})
	p := scw.get("/ui/referrals/" + id)
	if !strings.Contains(p.Body, "Laporan medis &lt;1&gt;.pdf") || !strings.Contains(p.Body, (&loc{lang: "en"}).Size(int64(len(testPDF)))) {
		t.Fatalf("shelter's referral page:\n%s", p.Body)
	}
	if strings.Contains(link, "Laporan") {
		t.Fatalf("the file name is in the link: %s", link)
	}
	d := scw.get(link)
	if d.Code != http.StatusOK || d.Body != string(testPDF) {
		t.Fatalf("download: %d %q", d.Code, d.Body)
	}
	if cd := d.Header.Get("Content-Disposition"); !strings.HasPrefix(cd, "attachment;") {
		t.Errorf("Content-Disposition %q", cd)
	}
	if d.Header.Get("X-Content-Type-Options") != "nosniff" || d.Header.Get("Content-Type") != "application/pdf" {
		t.Errorf("download headers: %v", d.Header)
	}
	// The sender downloads its own file too.
	if d := cw.get(link); d.Code != http.StatusOK || d.Body != string(testPDF) {
		t.Fatalf("sender's download: %d", d.Code)
	}
	// A caseworker of another agency: the record is not theirs.
	dcw := dinsos.client()
	dcw.login("cw")
	if d := dcw.get(link); d.Code != http.StatusNotFound || strings.Contains(d.Body, "%PDF") {
		t.Fatalf("another agency's caseworker: %d", d.Code)
	}
	// Another role at the shelter: not a caseworker.
	op := shelter.client()
	op.login("op")
	if d := op.get(link); d.Code != http.StatusForbidden || strings.Contains(d.Body, "%PDF") {
		t.Fatalf("operator: %d", d.Code)
	}
	// A file id of no file of this referral.
	if d := scw.get("/ui/referrals/" + id + "/files/nosuchfile"); d.Code != http.StatusNotFound {
		t.Fatalf("unknown file: %d", d.Code)
	}
}

// TestFileTypeRefused: bytes of a web page labelled as a PDF are refused
// with the translated message, the form keeps what was typed, and nothing
// is stored or sent.
func TestFileTypeRefused(t *testing.T) {
	n := mustNetwork(t)
	iom := mustApp(t, n, "iom")
	cw := iom.client()
	cw.login("cw")
	html := []byte("<!DOCTYPE html><html><body><script>alert(1)</script></body></html>")
	r := cw.postFiles("/ui/referrals/new", "/ui/referrals", referralValues("shelter"), []formFile{{"scan.pdf", "application/pdf", html}})
	if r.Code != http.StatusUnsupportedMediaType || !strings.Contains(r.Body, "This type of file is not accepted") ||
		!strings.Contains(r.Body, "scan.pdf") || !strings.Contains(r.Body, `value="V-2026-0042"`) {
		t.Fatalf("html as pdf: %d\n%s", r.Code, r.Body)
	}
	cw.lang = "id"
	r = cw.postFiles("/ui/referrals/new", "/ui/referrals", referralValues("shelter"), []formFile{{"scan.pdf", "application/pdf", html}})
	if r.Code != http.StatusUnsupportedMediaType || !strings.Contains(r.Body, "Jenis berkas ini tidak diterima") {
		t.Fatalf("html as pdf, in Bahasa Indonesia: %d\n%s", r.Code, r.Body)
	}
	// By script: the same message as JSON.
	csrf := csrfOf(t, cw.get("/ui/referrals/new"))
	r = cw.raw("POST", "/ui/attachments?for=referral", "application/pdf", html, map[string]string{csrfHeader: csrf, nameHeader: "scan.pdf"})
	var res struct{ Error, ID string }
	json.Unmarshal([]byte(r.Body), &res)
	if r.Code != http.StatusUnsupportedMediaType || !strings.Contains(res.Error, "Jenis berkas ini tidak diterima") || res.ID != "" {
		t.Fatalf("html as pdf by script: %d %s", r.Code, r.Body)
	}
	if sealedFiles(t, n, "iom") != 0 || sentReferrals(t, n, "iom") != 0 {
		t.Fatalf("stored %d, sent %d", sealedFiles(t, n, "iom"), sentReferrals(t, n, "iom"))
	}
}

// TestFilesNeedCSRF: an upload without the session's CSRF token is
// refused before anything is stored, by script or in a form whose file
// comes before its token.
func TestFilesNeedCSRF(t *testing.T) {
	n := mustNetwork(t)
	iom := mustApp(t, n, "iom")
	cw := iom.client()
	cw.login("cw")
	if r := cw.raw("POST", "/ui/attachments?for=referral", "application/pdf", testPDF, map[string]string{nameHeader: "a.pdf"}); r.Code != http.StatusForbidden ||
		!strings.Contains(r.Body, `"error":"This form has expired`) {
		t.Fatalf("upload without a token: %d %s", r.Code, r.Body)
	}
	if r := cw.raw("POST", "/ui/attachments?for=referral", "application/pdf", testPDF, map[string]string{csrfHeader: "forged"}); r.Code != http.StatusForbidden {
		t.Fatalf("upload with a wrong token: %d", r.Code)
	}
	// A form whose file part comes before the token.
	csrf := csrfOf(t, cw.get("/ui/referrals/new"))
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, _ := mw.CreateFormFile("file", "a.pdf")
	fw.Write(testPDF)
	mw.WriteField("csrf", csrf)
	mw.Close()
	if r := cw.raw("POST", "/ui/referrals", mw.FormDataContentType(), buf.Bytes(), nil); r.Code != http.StatusForbidden {
		t.Fatalf("file before the token: %d", r.Code)
	}
	// Without any token.
	ct, b := multipartBody(t, fields("", referralValues("shelter")), []formFile{{"a.pdf", "application/pdf", testPDF}})
	if r := cw.raw("POST", "/ui/referrals", ct, b, nil); r.Code != http.StatusForbidden {
		t.Fatalf("form without a token: %d", r.Code)
	}
	// Signed out.
	anon := iom.client()
	if r := anon.raw("POST", "/ui/attachments?for=referral", "application/pdf", testPDF, map[string]string{csrfHeader: csrf}); r.Code != http.StatusForbidden {
		t.Fatalf("upload signed out: %d", r.Code)
	}
	// A role that sends no referrals.
	op := iom.client()
	op.login("op")
	if r := op.raw("POST", "/ui/attachments?for=referral", "application/pdf", testPDF,
		map[string]string{csrfHeader: csrfOf(t, op.get("/ui/deliveries"))}); r.Code != http.StatusForbidden {
		t.Fatalf("upload by an operator: %d", r.Code)
	}
	if sealedFiles(t, n, "iom") != 0 {
		t.Fatalf("files stored: %d", sealedFiles(t, n, "iom"))
	}
}

// TestFilesByScript: the script's path, a file uploaded on its own and
// its id sent with the form; a file over the limit is refused with its
// message.
func TestFilesByScript(t *testing.T) {
	n := mustNetwork(t)
	iom, shelter := mustApp(t, n, "iom"), mustApp(t, n, "shelter")
	cw := iom.client()
	cw.login("cw")
	csrf := csrfOf(t, cw.get("/ui/referrals/new"))
	r := cw.raw("POST", "/ui/attachments?for=referral", "application/pdf", testPDF,
		map[string]string{csrfHeader: csrf, nameHeader: url.PathEscape("Surat keterangan é.pdf")})
	var res struct {
		ID   string
		Size int64
	}
	if err := json.Unmarshal([]byte(r.Body), &res); err != nil || r.Code != http.StatusCreated || res.ID == "" || res.Size != int64(len(testPDF)) {
		t.Fatalf("upload: %d %s", r.Code, r.Body)
	}
	if sealedFiles(t, n, "iom") != 1 {
		t.Fatal("not stored")
	}
	v := referralValues("shelter")
	v.Set("attachment", res.ID)
	v.Set("attachment_name", res.ID+"/77/Surat keterangan é.pdf")
	// A form shown again (a required field left out) keeps the file,
	// named.
	v.Del("pseudonym")
	p := cw.post("/ui/referrals/new", "/ui/referrals", v)
	if p.Code != http.StatusUnprocessableEntity || !strings.Contains(p.Body, `value="`+res.ID+`" checked`) ||
		!strings.Contains(p.Body, "Surat keterangan é.pdf") {
		t.Fatalf("form shown again: %d\n%s", p.Code, p.Body)
	}
	v.Set("pseudonym", "V-2026-0042")
	p = cw.post("/ui/referrals/new", "/ui/referrals", v)
	if !carriesFiles(n) {
		if p.Code != http.StatusServiceUnavailable || !strings.Contains(p.Body, `value="`+res.ID+`"`) {
			t.Fatalf("send without a file bus: %d\n%s", p.Code, p.Body)
		}
		t.Skip("the test bus carries no files yet: the rest needs membus with FileBus")
	}
	if p.Code != http.StatusSeeOther {
		t.Fatalf("send: %d\n%s", p.Code, p.Body)
	}
	id := strings.TrimPrefix(p.Loc, "/ui/referrals/")
	if b := cw.get(p.Loc).Body; !strings.Contains(b, "Surat keterangan é.pdf") {
		t.Fatalf("referral page:\n%s", b)
	}
	// The same id again: already sent.
	p = cw.post("/ui/referrals/new", "/ui/referrals", v)
	if p.Code != http.StatusUnprocessableEntity || !strings.Contains(p.Body, "upload it again") {
		t.Fatalf("id sent twice: %d\n%s", p.Code, p.Body)
	}
	scw := shelter.client()
	scw.login("cw")
	scw.lang = "id"
	eventually(t, "the file at the shelter", func() bool {
		return strings.Contains(scw.get("/ui/referrals/"+id).Body, "tersedia")
	})
}

// TestFileTooLarge: a file over the limit is refused with the limit in
// the message, by form and by script, and nothing is kept of it.
func TestFileTooLarge(t *testing.T) {
	n := mustNetworkConfig(t, gateway.Options{}, func(c *gateway.Config) { c.Attachments.MaxSize = 1000 })
	iom := mustApp(t, n, "iom")
	cw := iom.client()
	cw.login("cw")
	big := append(append([]byte{}, testPDF...), make([]byte, 2000)...)
	r := cw.postFiles("/ui/referrals/new", "/ui/referrals", referralValues("shelter"), []formFile{{"big.pdf", "application/pdf", big}})
	if r.Code != http.StatusRequestEntityTooLarge || !strings.Contains(r.Body, "The file is too large: at most 1.0 KB.") ||
		!strings.Contains(r.Body, `value="V-2026-0042"`) {
		t.Fatalf("too large by form: %d\n%s", r.Code, r.Body)
	}
	csrf := csrfOf(t, cw.get("/ui/referrals/new"))
	cw.lang = "id"
	r = cw.raw("POST", "/ui/attachments?for=referral", "application/pdf", big, map[string]string{csrfHeader: csrf})
	if r.Code != http.StatusRequestEntityTooLarge || !strings.Contains(r.Body, "Berkas terlalu besar: maksimal 1,0 KB.") {
		t.Fatalf("too large by script: %d %s", r.Code, r.Body)
	}
	if sealedFiles(t, n, "iom") != 0 || sentReferrals(t, n, "iom") != 0 {
		t.Fatal("stored or sent")
	}
}

// TestStatementFiles: a file sent with a statement request by an
// investigator and with the statement by the consent recorder, both
// listed on the request page at both ends.
func TestStatementFiles(t *testing.T) {
	n := mustNetwork(t)
	police, shelter := mustApp(t, n, "police"), mustApp(t, n, "shelter")
	inv := police.client()
	inv.login("inv")
	form := inv.get("/ui/requests/new").Body
	if !strings.Contains(form, `data-upload="statement-request"`) || !strings.Contains(form, `enctype="multipart/form-data"`) {
		t.Fatalf("request form:\n%s", form)
	}
	due := "2099-01-01T10:00"
	v := url.Values{"to": {"shelter"}, "pseudonym": {"V-2026-0077"}, "legal_basis": {"LP/B/123/XI/2026/NTB"},
		"purpose": {"investigation"}, "questions": {"Who recruited you?"}, "due": {due}}
	r := inv.postFiles("/ui/requests/new", "/ui/requests", v, []formFile{{"surat-perintah.pdf", "application/pdf", testPDF}})
	if sealedFiles(t, n, "police") != 1 {
		t.Fatalf("stored: %d", sealedFiles(t, n, "police"))
	}
	if !carriesFiles(n) {
		if r.Code != http.StatusServiceUnavailable || !strings.Contains(r.Body, "surat-perintah.pdf") {
			t.Fatalf("send without a file bus: %d\n%s", r.Code, r.Body)
		}
		t.Skip("the test bus carries no files yet: the rest needs membus with FileBus")
	}
	if r.Code != http.StatusSeeOther {
		t.Fatalf("request: %d\n%s", r.Code, r.Body)
	}
	id := strings.TrimPrefix(r.Loc, "/ui/requests/")
	cr := shelter.client()
	cr.login("cr")
	eventually(t, "the request's file at the shelter", func() bool {
		b := cr.get("/ui/requests/" + id).Body
		return strings.Contains(b, "surat-perintah.pdf") && strings.Contains(b, "state-available")
	})
	if d := cr.get("/ui/requests/" + id + "/files/" + fileID(t, cr.get("/ui/requests/"+id).Body)); d.Code != 200 || d.Body != string(testPDF) {
		t.Fatalf("download at the shelter: %d", d.Code)
	}
	if r := cr.post("/ui/requests/"+id, "/ui/requests/"+id+"/consent", url.Values{"given": {"yes"},
		"purposes": {"statement"}, "method": {"written"}, "age": {"25"}}); r.Code != http.StatusSeeOther {
		t.Fatalf("consent: %d\n%s", r.Code, r.Body)
	}
	page := cr.get("/ui/requests/" + id).Body
	if !strings.Contains(page, `data-upload="statement"`) {
		t.Fatalf("statement form without files:\n%s", page)
	}
	r = cr.postFiles("/ui/requests/"+id, "/ui/requests/"+id+"/response", url.Values{"answer": {"statement"},
		"text": {"I was recruited in Mataram."}, "language": {"id"}, "taken_at": {"2026-01-20T08:00"}, "taken_by": {"S. Rahma"}},
		[]formFile{{"bap-ttd.pdf", "application/pdf", testPDF}})
	if r.Code != http.StatusSeeOther {
		t.Fatalf("statement: %d\n%s", r.Code, r.Body)
	}
	eventually(t, "the statement's file at the police", func() bool {
		b := inv.get("/ui/requests/" + id).Body
		return strings.Contains(b, "bap-ttd.pdf") && strings.Count(b, "state-available") == 2
	})
}

var anyFileRE = regexp.MustCompile(`/files/([A-Za-z0-9_-]+)"`)

func fileID(t testing.TB, body string) string {
	t.Helper()
	m := anyFileRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no file link:\n%s", body)
	}
	return m[1]
}

func TestSizes(t *testing.T) {
	en, id := &loc{lang: "en"}, &loc{lang: "id"}
	for _, c := range []struct {
		n      int64
		en, id string
	}{{0, "0 B", "0 B"}, {999, "999 B", "999 B"}, {1000, "1.0 KB", "1,0 KB"}, {45_300, "45.3 KB", "45,3 KB"},
		{1_260_000, "1.3 MB", "1,3 MB"}, {999_990, "1.0 MB", "1,0 MB"}, {2 << 30, "2.1 GB", "2,1 GB"}} {
		if g := en.Size(c.n); g != c.en {
			t.Errorf("en %d: %s, want %s", c.n, g, c.en)
		}
		if g := id.Size(c.n); g != c.id {
			t.Errorf("id %d: %s, want %s", c.n, g, c.id)
		}
	}
	a := gateway.AttachmentView{Size: 1000, SealedSize: 1048, Received: 524}
	if p := en.Percent(a); p != 50 {
		t.Errorf("percent %d", p)
	}
}

// TestFileStates: how the list shows each state of a file, names as text
// only, the hash abbreviated with the whole in a details element.
func TestFileStates(t *testing.T) {
	cat, err := loadCatalog()
	if err != nil {
		t.Fatal(err)
	}
	pages, err := parsePages()
	if err != nil {
		t.Fatal(err)
	}
	s := &server{cat: cat, log: quiet, pages: pages}
	sha := strings.Repeat("ab", 32)
	files := []gateway.AttachmentView{
		{ID: "f1", Name: `<img src=x onerror=alert(1)>.pdf`, Type: "application/pdf", Size: 45_300, SHA256: sha, State: "available"},
		{ID: "f2", Name: "rekaman.m4a", Type: "audio/x-m4a", Size: 1_000_000, SHA256: sha, State: "arriving", Received: 450_000, SealedSize: 1_000_000},
		{ID: "f3", Name: "foto.jpg", Type: "image/jpeg", Size: 2000, SHA256: sha, State: "failed"},
	}
	for lang, want := range map[string][]string{
		"en": {"45.3 KB", "available", "arriving, 45%", "1.0 MB", "failed: the file did not arrive intact", "M4A", "JPEG"},
		"id": {"45,3 KB", "tersedia", "sedang diterima, 45%", "1,0 MB", "gagal: berkas tidak diterima dengan utuh"},
	} {
		l := &loc{lang: lang, l: cat.locs[lang], s: s}
		var buf bytes.Buffer
		if err := pages["referral"].ExecuteTemplate(&buf, "files", map[string]any{"L": l, "Files": files, "Base": "/ui/referrals/R1"}); err != nil {
			t.Fatal(err)
		}
		out := buf.String()
		for _, w := range append(want, `href="/ui/referrals/R1/files/f1"`, `<progress max="100" value="45">`,
			"&lt;img src=x onerror=alert(1)&gt;.pdf", "<details", sha, "abababababab…") {
			if !strings.Contains(out, w) {
				t.Errorf("%s: %q missing in\n%s", lang, w, out)
			}
		}
		for _, bad := range []string{"<img", "files/f2", "files/f3"} {
			if strings.Contains(out, bad) {
				t.Errorf("%s: %q in\n%s", lang, bad, out)
			}
		}
	}
}
