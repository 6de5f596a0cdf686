package main

import (
	"slices"
	"strings"
	"testing"
)

func TestParseSteps(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want []int
	}{{"", 10, []int{10}}, {" ", 7, []int{7}}, {"10,25,50", 10, []int{10, 25, 50}}, {"10, 25", 1, []int{10, 25}}} {
		got, err := parseSteps(c.in, c.n)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("parseSteps(%q, %d) = %v, %v; want %v", c.in, c.n, got, err, c.want)
		}
	}
	for _, bad := range []string{"10,,50", "ten", "0", "-5", "10,25x"} {
		if _, err := parseSteps(bad, 10); err == nil || !strings.Contains(err.Error(), "item") {
			t.Errorf("parseSteps(%q): %v, want an error naming the item", bad, err)
		}
	}
}

func TestRunRefusesBadFlagsBeforeStartingAnything(t *testing.T) {
	var out, errb strings.Builder
	if code := run([]string{"-steps", "10,x"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), `item 2 "x"`) {
		t.Fatalf("exit %d, stderr %q; want 2 and the bad item", code, errb.String())
	}
	errb.Reset()
	if code := run([]string{"-duration", "0s"}, &out, &errb); code != 2 {
		t.Fatalf("-duration 0s: exit %d, want 2", code)
	}
}
