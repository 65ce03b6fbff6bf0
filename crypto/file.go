package crypto

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"

	"filippo.io/age"
)

// Attachments travel beside the envelope that lists them. A file is sealed
// once, when it is uploaded: age-encrypted to the sending agency's own
// hybrid key, so it is ciphertext at rest from its first byte. The sealed
// body of the message that lists it carries the file's age file key; the
// recipient opens the same sealed file with it, so the file key only ever
// travels inside the hybrid (post-quantum) envelope and the sealed file is
// never re-encrypted on the way. The sealed file is cut into chunks of
// FileChunkSize bytes; each chunk carries a MAC under a key derived from
// the file key, so the recipient refuses a chunk replaced, cut or moved
// in flight before it writes it.
const (
	// FileChunkSize is the size of every chunk of a sealed file but the
	// last, which is shorter (or empty for an empty sealed file, which
	// cannot occur: the age header alone is longer).
	FileChunkSize = 512 << 10
	// Chunk message headers.
	HeaderAttachment = "Rujukan-Attachment"
	HeaderChunk      = "Rujukan-Chunk"
	HeaderChunkMAC   = "Rujukan-Chunk-Mac"
)

// FileKeySize is the size of an age file key.
const FileKeySize = 16

// ErrChunk is returned for a chunk whose MAC does not verify.
var ErrChunk = errors.New("chunk does not verify")

// FileChunks returns how many chunks a sealed file of size bytes is cut
// into.
func FileChunks(size int64) int64 {
	if size <= 0 {
		return 0
	}
	return (size + FileChunkSize - 1) / FileChunkSize
}

// chunkKey derives the chunk MAC key from a file key.
func chunkKey(fileKey []byte) ([]byte, error) {
	return hkdf.Key(sha256.New, fileKey, nil, "rujukan attachment chunk v1", 32)
}

// ChunkMAC returns the base64 MAC of chunk index of the sealed file with
// attachment id aid, sealedSize bytes long, under fileKey.
func ChunkMAC(fileKey []byte, aid string, sealedSize int64, index int64, data []byte) (string, error) {
	if len(fileKey) != FileKeySize {
		return "", fmt.Errorf("file key of %d bytes", len(fileKey))
	}
	k, err := chunkKey(fileKey)
	if err != nil {
		return "", err
	}
	m := hmac.New(sha256.New, k)
	var b [8]byte
	io.WriteString(m, aid)
	m.Write([]byte{0})
	binary.BigEndian.PutUint64(b[:], uint64(sealedSize))
	m.Write(b[:])
	binary.BigEndian.PutUint64(b[:], uint64(index))
	m.Write(b[:])
	m.Write(data)
	return base64.RawStdEncoding.EncodeToString(m.Sum(nil)), nil
}

// VerifyChunk checks a chunk as received: its index within the sealed file,
// its length and its MAC.
func VerifyChunk(fileKey []byte, aid string, sealedSize int64, index, mac string, data []byte) (int64, error) {
	i, err := strconv.ParseInt(index, 10, 64)
	if err != nil || i < 0 || i >= FileChunks(sealedSize) || strconv.FormatInt(i, 10) != index {
		return 0, fmt.Errorf("%w: chunk index %q", ErrChunk, index)
	}
	want := int64(FileChunkSize)
	if i == FileChunks(sealedSize)-1 {
		want = sealedSize - i*FileChunkSize
	}
	if int64(len(data)) != want {
		return 0, fmt.Errorf("%w: chunk %d is %d bytes, not %d", ErrChunk, i, len(data), want)
	}
	got, err := ChunkMAC(fileKey, aid, sealedSize, i, data)
	if err != nil {
		return 0, err
	}
	if !hmac.Equal([]byte(got), []byte(mac)) {
		return 0, fmt.Errorf("%w: chunk %d", ErrChunk, i)
	}
	return i, nil
}

// FileKey returns the age file key of a sealed file from its header, with
// one of the agency's identities.
func FileKey(sealed io.Reader, ids ...*Identity) ([]byte, error) {
	hdr, err := age.ExtractHeader(sealed)
	if err != nil {
		return nil, fmt.Errorf("sealed file: %w", err)
	}
	ai := make([]age.Identity, 0, len(ids))
	for _, id := range ids {
		ai = append(ai, id.id)
	}
	return age.DecryptHeader(hdr, ai...)
}

// SealFile returns a writer that age-encrypts what is written to it into
// dst, to identity id's own recipient. Close finishes the file.
func SealFile(dst io.Writer, id *Identity) (io.WriteCloser, error) {
	return age.Encrypt(dst, id.id.Recipient())
}

// OpenFile returns the plaintext of a sealed file of sealedSize bytes, for
// reading at any offset, with its file key, and the plaintext size. Every
// read checks the chunks it covers (age's STREAM).
func OpenFile(sealed io.ReaderAt, sealedSize int64, fileKey []byte) (io.ReaderAt, int64, error) {
	return age.DecryptReaderAt(sealed, sealedSize, age.NewInjectedFileKeyIdentity(fileKey))
}

// OpenFileStream returns the plaintext of a sealed file read from start to
// end, with its file key.
func OpenFileStream(sealed io.Reader, fileKey []byte) (io.Reader, error) {
	return age.Decrypt(sealed, age.NewInjectedFileKeyIdentity(fileKey))
}
