package client

import (
	"errors"
	"strings"
	"testing"

	"github.com/rujukan/rujukan/crypto"
)

func TestFileSubject(t *testing.T) {
	if got := FileSubject("shelter", "iom"); got != "rujukan.file.shelter.iom" {
		t.Fatalf("FileSubject = %q", got)
	}
	if got := FilesStreamName("shelter"); got != "FILES_shelter" {
		t.Fatalf("FilesStreamName = %q", got)
	}
	to, from, err := ParseFileSubject("rujukan.file.dinsos-ntb.uptd-1")
	if err != nil || to != "dinsos-ntb" || from != "uptd-1" {
		t.Fatalf("ParseFileSubject = %q, %q, %v", to, from, err)
	}
	for _, s := range []string{"rujukan.msg.shelter.iom", "rujukan.file.shelter", "rujukan.file.shelter.iom.x", "rujukan.file.*.iom", ""} {
		if _, _, err := ParseFileSubject(s); !errors.Is(err, ErrBadSubject) {
			t.Fatalf("ParseFileSubject(%q): %v", s, err)
		}
	}
	// An envelope subject is not a file subject and the other way round.
	if _, _, err := ParseSubject("rujukan.file.shelter.iom"); err == nil {
		t.Fatal("ParseSubject accepted a file subject")
	}
}

func TestChunkCheck(t *testing.T) {
	ok := Chunk{MsgID: "a/0", Header: map[string]string{crypto.HeaderChunk: "0", crypto.HeaderChunkMAC: strings.Repeat("m", 43)},
		Data: make([]byte, crypto.FileChunkSize)}
	if err := ok.check(); err != nil {
		t.Fatalf("a full chunk with its headers: %v", err)
	}
	for name, c := range map[string]Chunk{
		"no id":          {Data: []byte("x")},
		"id with a CR":   {MsgID: "a\r", Data: []byte("x")},
		"header with LF": {MsgID: "a", Header: map[string]string{"K": "v\n"}, Data: []byte("x")},
		"header name":    {MsgID: "a", Header: map[string]string{"K: x": "v"}, Data: []byte("x")},
		"too large":      {MsgID: "a", Data: make([]byte, MaxChunkMessage)},
	} {
		if err := c.check(); err == nil {
			t.Fatalf("%s: accepted", name)
		}
	}
}
