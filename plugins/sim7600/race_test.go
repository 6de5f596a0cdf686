//go:build race

package main

func init() { raceBuildFlags = []string{"-race"} }
