package reading

import (
	"fmt"
	"testing"
	"time"
)

func TestZZSmoke(t *testing.T) {
	now := time.Date(2024, 11, 27, 4, 0, 0, 123e6, time.UTC)
	var recs [][]byte
	for i := 0; i < 100; i++ {
		body := fmt.Sprintf(`{"sensor":"t%d","value":%d.%d,"unit":"C"}`, i%4+1, 20+i%3, i%10)
		rs, err := Parse([]byte(body), now.Add(time.Duration(i)*250*time.Millisecond), Limits{})
		if err != nil {
			t.Fatal(err)
		}
		b, err := rs[0].MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			t.Logf("%d %s", len(b), b)
		}
		recs = append(recs, b)
	}
	for _, n := range []string{"json", "cbor", "cbor+deflate"} {
		e, _ := NewEncoder(n)
		p, err := e.Encode("gw-0001", recs)
		if err != nil {
			t.Fatal(err)
		}
		b, err := e.Decode(p)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range b.Readings {
			j, _ := r.MarshalJSON()
			if string(j) != string(recs[i]) {
				t.Fatalf("%s: %d: %s != %s", n, i, j, recs[i])
			}
		}
		t.Logf("%s: %d bytes, %.2f/reading", n, len(p), float64(len(p))/100)
	}
}
