package reading

import (
	"fmt"
	"strings"
	"testing"
)

// Bytes over the air, counted as DESIGN.md counts them: the MQTT v5 PUBLISH
// (QoS 1, content-type property) and its PUBACK, each inside TLS records of
// at most 16 KiB of plaintext costing 29 bytes apiece (TLS 1.2 AES-GCM: 5
// header + 8 explicit nonce + 16 tag). TCP/IP headers are not counted, on
// either side of the comparison.
const (
	costTopic         = "cellgate/gw-0001/telemetry" // the default topic for device gw-0001
	tlsRecordOverhead = 29
	tlsMaxPlaintext   = 16384
	mqttPubackBytes   = 4 // fixed header, remaining length 2, packet id; reason 0 and no properties are left out
	// designBaseline is DESIGN.md's figure for one QoS 1 publish of one
	// 73-byte JSON reading on a long-lived TLS connection.
	designBaseline = 153.0
	costBatchSize  = 100
)

func varintLen(n int) int {
	l := 1
	for n >= 128 {
		n >>= 7
		l++
	}
	return l
}

// mqttPublishBytes is the size of an MQTT v5 PUBLISH with QoS 1.
func mqttPublishBytes(topic, contentType string, payload int) int {
	props := 0
	if contentType != "" {
		props = 1 + 2 + len(contentType) // property id, string length, string
	}
	remaining := 2 + len(topic) + 2 + varintLen(props) + props + payload
	return 1 + varintLen(remaining) + remaining
}

// overTheAir is what one acknowledged publish costs on the cellular link.
func overTheAir(contentType string, payload int) int {
	pub := mqttPublishBytes(costTopic, contentType, payload)
	records := (pub + tlsMaxPlaintext - 1) / tlsMaxPlaintext
	return pub + records*tlsRecordOverhead + mqttPubackBytes + tlsRecordOverhead
}

func TestOverTheAirFramingArithmetic(t *testing.T) {
	// 73-byte payload, 26-byte topic, no properties: 1 + 1 + (2+26+2+1+73) = 106.
	if got := mqttPublishBytes(costTopic, "", 73); got != 106 {
		t.Errorf("PUBLISH of 73 bytes = %d bytes, want 106", got)
	}
	if got := overTheAir("", 73); got != 106+29+4+29 {
		t.Errorf("over the air = %d, want %d", got, 106+29+4+29)
	}
	// Remaining length takes 2 bytes from 128 and 3 from 16384.
	if got := mqttPublishBytes("t", "", 200) - 200; got != 1+2+2+1+2+1 {
		t.Errorf("framing of a 200-byte payload = %d", got)
	}
	// A 20,000-byte publish needs two TLS records.
	if got := overTheAir("", 20000) - mqttPublishBytes(costTopic, "", 20000); got != 2*29+4+29 {
		t.Errorf("TLS and PUBACK cost of a 20 kB publish = %d", got)
	}
}

// TestBytesOverTheAirPerReading computes, for each encoding and scenario,
// what one reading costs on the air when sent in batches of 100, and
// compares it with one QoS 1 publish per reading. The counts are byte
// arithmetic on deterministic payloads, so the assertion is exact.
func TestBytesOverTheAirPerReading(t *testing.T) {
	var report strings.Builder
	fmt.Fprintf(&report, "\nbatches of %d readings, MQTT v5 QoS 1 + PUBACK + %d B per TLS record, topic %q\n", costBatchSize, tlsRecordOverhead, costTopic)
	fmt.Fprintf(&report, "%-30s %-13s %9s %12s %12s %10s %10s\n", "scenario", "encoding", "payload", "B/reading", "air/reading", "÷153 B", "÷own base")
	for _, sc := range scenarios {
		records := typicalRecords(t, sc, costBatchSize)
		jsonBytes := 0
		for _, r := range records {
			jsonBytes += len(r)
		}
		avgJSON := float64(jsonBytes) / costBatchSize
		// The baseline at this scenario's own reading size, same arithmetic.
		ownBaseline := 0
		for _, r := range records {
			ownBaseline += overTheAir("", len(r))
		}
		own := float64(ownBaseline) / costBatchSize
		for _, name := range allEncodings {
			e := mustEncoder(t, name)
			payload, err := e.Encode("gw-0001", records)
			if err != nil {
				t.Fatal(err)
			}
			air := float64(overTheAir(e.ContentType(), len(payload))) / costBatchSize
			ratio := air / designBaseline
			fmt.Fprintf(&report, "%-30s %-13s %9d %12.2f %12.2f %10.3f %10.3f\n",
				sc.name, name, len(payload), float64(len(payload))/costBatchSize, air, ratio, air/own)
			if name == EncodingCBORDeflate && sc.name != "sensor sends random UUID ids" && ratio > 0.10 {
				t.Errorf("%s, %s: %.2f B per reading over the air is %.3f× the %.0f B baseline, above 0.10×", sc.name, name, air, ratio, designBaseline)
			}
		}
		fmt.Fprintf(&report, "%-30s %-13s %9s %12.2f %12.2f %10.3f %10s   (one publish per reading)\n", sc.name, "baseline", "", avgJSON, own, own/designBaseline, "1.000")
	}
	t.Log(report.String())
}
