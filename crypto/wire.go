package crypto

import (
	"encoding/binary"
	"errors"
)

// errShort is returned by the decoder when the input ends early.
var errShort = errors.New("input ends early")

// encoder appends the fixed-width and length-prefixed fields of the wire
// format (docs/PROTOCOL.md) to a byte slice.
type encoder struct{ b []byte }

func (e *encoder) u8(v uint8)      { e.b = append(e.b, v) }
func (e *encoder) u16(v uint16)    { e.b = binary.BigEndian.AppendUint16(e.b, v) }
func (e *encoder) u32(v uint32)    { e.b = binary.BigEndian.AppendUint32(e.b, v) }
func (e *encoder) i64(v int64)     { e.b = binary.BigEndian.AppendUint64(e.b, uint64(v)) }
func (e *encoder) raw(v []byte)    { e.b = append(e.b, v...) }
func (e *encoder) str8(s string)   { e.u8(uint8(len(s))); e.b = append(e.b, s...) }
func (e *encoder) rawStr(s string) { e.b = append(e.b, s...) }

// decoder reads the fields of the wire format from a byte slice. After the
// first error every read returns zero values and the error sticks, so a
// parser can read all fields and check err once.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b) {
		d.err = errShort
		d.b = nil
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) u8() uint8 {
	if v := d.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (d *decoder) u16() uint16 {
	if v := d.take(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (d *decoder) u32() uint32 {
	if v := d.take(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (d *decoder) i64() int64 {
	if v := d.take(8); v != nil {
		return int64(binary.BigEndian.Uint64(v))
	}
	return 0
}

func (d *decoder) str8() string { return string(d.take(int(d.u8()))) }
