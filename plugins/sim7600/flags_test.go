package main

// raceBuildFlags are the go build flags that make the plugin under test
// race-instrumented when the test itself is.
var raceBuildFlags []string
