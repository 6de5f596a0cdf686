package reading

import (
	"bytes"
	"errors"
	"fmt"
	"mime"
	"strconv"
	"unicode"
	"unicode/utf8"
)

// The batch encodings, spelled as in the uplink.batch.encoding setting.
const (
	EncodingJSON        = "json"
	EncodingCBOR        = "cbor"
	EncodingCBORDeflate = "cbor+deflate"
)

// Content types and encodings of the batch payloads.
const (
	ContentTypeJSON = "application/json"
	ContentTypeCBOR = "application/cbor"
	// ContentEncodingDeflate is the HTTP content coding of cbor+deflate
	// payloads: the zlib format (RFC 1950) around a deflate stream, as RFC
	// 9110 section 8.4.1.2 defines "deflate".
	ContentEncodingDeflate = "deflate"
)

// MaxDeviceIDLen bounds the device id a batch carries.
const MaxDeviceIDLen = 128

// Batch is a decoded batch payload.
type Batch struct {
	DeviceID string
	Readings []Reading
}

// Encoder turns stored readings into an uplink payload and back. The four
// encoders are stateless and safe for concurrent use.
type Encoder interface {
	// Name is the encoding's configuration name: EncodingJSON,
	// EncodingCBOR, EncodingCBORDeflate or EncodingCompact.
	Name() string
	// ContentType is the payload's media type, for the HTTP Content-Type
	// header and the MQTT v5 content-type property.
	ContentType() string
	// ContentEncoding is the HTTP Content-Encoding of the payload, "" for
	// none.
	ContentEncoding() string
	// Encode builds one payload from readings as the spool stores them
	// (canonical JSON, see MarshalJSON), in the order given. A record that
	// is not a valid stored reading fails the call with a *RecordError
	// naming its index, so the caller can set it aside; an empty or
	// malformed deviceID fails it too.
	Encode(deviceID string, readings [][]byte) ([]byte, error)
	// Decode reverses Encode: every field of every reading comes back
	// equal, and MarshalJSON of a decoded reading gives the stored bytes.
	// It refuses anything that does not follow the encoding's schema.
	Decode(payload []byte) (Batch, error)
}

// NewEncoder returns the encoder named by the uplink.batch.encoding
// setting; an unknown name is an error that lists the known ones.
func NewEncoder(name string) (Encoder, error) {
	switch name {
	case EncodingJSON:
		return jsonEncoder{}, nil
	case EncodingCBOR:
		return cborEncoder{}, nil
	case EncodingCBORDeflate:
		return cborDeflateEncoder{}, nil
	case EncodingCompact:
		return compactEncoder{}, nil
	}
	return nil, fmt.Errorf("reading: unknown batch encoding %q (want %q, %q, %q or %q)",
		name, EncodingJSON, EncodingCBOR, EncodingCBORDeflate, EncodingCompact)
}

// DecodeBatch decodes a payload of any of the four encodings, chosen by
// its content type and content encoding as an upstream consumer receives
// them (the HTTP headers, or the MQTT v5 content-type property). MQTT has
// no content-encoding property, so for application/cbor with no encoding
// given the payload itself decides: a zlib header means cbor+deflate (a
// batch in plain CBOR always starts with the byte 0x84).
func DecodeBatch(contentType, contentEncoding string, payload []byte) (Batch, error) {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return Batch{}, fmt.Errorf("reading: decode batch: content type %q: %w", contentType, err)
	}
	var name string
	switch {
	case mt == ContentTypeJSON && contentEncoding == "":
		name = EncodingJSON
	case mt == ContentTypeCBOR && contentEncoding == ContentEncodingDeflate:
		name = EncodingCBORDeflate
	case mt == ContentTypeCompact && contentEncoding == "":
		name = EncodingCompact
	case mt == ContentTypeCBOR && contentEncoding == "":
		name = EncodingCBOR
		if looksZlib(payload) {
			name = EncodingCBORDeflate
		}
	default:
		return Batch{}, fmt.Errorf("reading: decode batch: no encoding for content type %q with content encoding %q", contentType, contentEncoding)
	}
	enc, _ := NewEncoder(name)
	return enc.Decode(payload)
}

// looksZlib reports whether b starts with a zlib header (RFC 1950 section
// 2.2): deflate with a window of at most 32 KiB, header checksum right.
func looksZlib(b []byte) bool {
	return len(b) >= 2 && b[0]&0x0f == 8 && b[0]>>4 <= 7 && (uint16(b[0])<<8|uint16(b[1]))%31 == 0
}

// RecordError says which stored record an Encoder could not use.
type RecordError struct {
	// Index is the record's position in the slice given to Encode.
	Index int
	Err   error
}

// Error implements error.
func (e *RecordError) Error() string {
	return "record " + strconv.Itoa(e.Index) + ": " + e.Err.Error()
}

// Unwrap returns the underlying error, usually a *ParseError.
func (e *RecordError) Unwrap() error { return e.Err }

func checkDeviceID(id string) error {
	if id == "" {
		return errors.New("device id is empty")
	}
	if len(id) > MaxDeviceIDLen {
		return fmt.Errorf("device id is %d bytes, more than %d", len(id), MaxDeviceIDLen)
	}
	if !utf8.ValidString(id) {
		return errors.New("device id is not valid UTF-8")
	}
	for _, r := range id {
		if unicode.IsControl(r) {
			return fmt.Errorf("device id %q holds a control character", id)
		}
	}
	return nil
}

// unmarshalRecords parses stored records for an encoder.
func unmarshalRecords(records [][]byte) ([]Reading, error) {
	out := make([]Reading, len(records))
	for i, rec := range records {
		r, err := Unmarshal(rec)
		if err != nil {
			return nil, &RecordError{Index: i, Err: err}
		}
		out[i] = r
	}
	return out, nil
}

// jsonEncoder writes {"device_id":"…","readings":[…]} with each reading in
// its canonical JSON.
type jsonEncoder struct{}

func (jsonEncoder) Name() string            { return EncodingJSON }
func (jsonEncoder) ContentType() string     { return ContentTypeJSON }
func (jsonEncoder) ContentEncoding() string { return "" }

func (jsonEncoder) Encode(deviceID string, records [][]byte) ([]byte, error) {
	if err := checkDeviceID(deviceID); err != nil {
		return nil, fmt.Errorf("reading: encode json batch: %w", err)
	}
	size := 32 + len(deviceID)
	for _, rec := range records {
		size += len(rec) + 1
	}
	buf := make([]byte, 0, size)
	buf = append(buf, `{"device_id":`...)
	buf = appendString(buf, deviceID)
	buf = append(buf, `,"readings":[`...)
	for i, rec := range records {
		// Re-marshalled rather than copied: the payload then holds
		// canonical readings only, whatever wrote the spool.
		r, err := Unmarshal(rec)
		if err != nil {
			return nil, fmt.Errorf("reading: encode json batch: %w", &RecordError{Index: i, Err: err})
		}
		if i > 0 {
			buf = append(buf, ',')
		}
		if buf, err = r.AppendJSON(buf); err != nil {
			return nil, fmt.Errorf("reading: encode json batch: %w", &RecordError{Index: i, Err: err})
		}
	}
	return append(buf, "]}"...), nil
}

func (jsonEncoder) Decode(payload []byte) (Batch, error) {
	b, err := decodeJSONBatch(payload)
	if err != nil {
		return Batch{}, fmt.Errorf("reading: decode json batch: %w", err)
	}
	return b, nil
}

func decodeJSONBatch(data []byte) (Batch, error) {
	var b Batch
	if off := firstInvalidUTF8(data); off >= 0 {
		return b, fmt.Errorf("invalid UTF-8 at byte %d", off)
	}
	p := parser{s: scanner{data: data}, stored: true, lim: Limits{MaxReadingBytes: len(data) + 1}.withDefaults()}
	s := &p.s
	s.ws()
	if err := s.expect('{', "looking for the batch object"); err != nil {
		return b, err
	}
	s.ws()
	var haveDevice, haveReadings bool
	if c, ok := s.peek(); ok && c == '}' {
		s.pos++
	} else {
		for {
			key, err := p.memberKey()
			if err != nil {
				return b, err
			}
			switch key {
			case "device_id":
				if haveDevice {
					return b, errors.New(`duplicate field "device_id"`)
				}
				haveDevice = true
				if b.DeviceID, err = p.batchDeviceID(); err != nil {
					return b, err
				}
			case "readings":
				if haveReadings {
					return b, errors.New(`duplicate field "readings"`)
				}
				haveReadings = true
				if b.Readings, err = p.batchReadings(); err != nil {
					return b, err
				}
			default:
				return b, fmt.Errorf("unknown field %q (want device_id, readings)", key)
			}
			more, err := s.next(',', '}', "after an object member (want ',' or '}')")
			if err != nil {
				return b, err
			}
			if !more {
				break
			}
		}
	}
	s.ws()
	if s.pos != len(data) {
		return b, s.unexpected("after the batch")
	}
	if !haveDevice {
		return b, errors.New(`field "device_id": missing`)
	}
	if !haveReadings {
		return b, errors.New(`field "readings": missing`)
	}
	if err := checkDeviceID(b.DeviceID); err != nil {
		return b, err
	}
	return b, nil
}

// batchDeviceID reads the value of a batch's device_id field, which must be
// a string; checkDeviceID judges it once the whole batch is read.
func (p *parser) batchDeviceID() (string, error) {
	if c, _ := p.s.peek(); c != '"' {
		return "", fmt.Errorf(`field "device_id": want a string, got %s`, p.s.kind())
	}
	return p.s.str()
}

// batchReadings reads the value of a batch's readings field: an array,
// possibly empty, of readings in stored form. On error it returns the
// readings read before the bad one.
func (p *parser) batchReadings() ([]Reading, error) {
	if err := p.s.expect('[', `in field "readings" (want an array)`); err != nil {
		return nil, err
	}
	p.s.ws()
	out := []Reading{}
	if c, ok := p.s.peek(); ok && c == ']' {
		p.s.pos++
		return out, nil
	}
	for {
		r, err := p.reading(len(out))
		if err != nil {
			return out, err
		}
		out = append(out, r)
		more, err := p.s.next(',', ']', "after a reading (want ',' or ']')")
		if err != nil {
			return out, err
		}
		if !more {
			return out, nil
		}
	}
}

// compactBuffer returns b trimmed of spare capacity when that saves much,
// so a payload held in a retry queue does not pin a large buffer.
func compactBuffer(b *bytes.Buffer) []byte {
	out := b.Bytes()
	if cap(out) > 2*len(out)+512 {
		return bytes.Clone(out)
	}
	return out
}
