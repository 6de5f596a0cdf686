# bench-ratios.awk reads `go test -bench` output and prints each benchmark's
# figure as a ratio to the baseline measured in the same run. Machines here
# are noisy; only ratios within one run mean anything.
function metric(name, unit) { return m[name SUBSEP unit] }
/^Benchmark/ {
	name = $1; sub(/-[0-9]+$/, "", name)
	for (i = 3; i < NF; i += 2) m[name SUBSEP $(i+1)] = $i
}
function ratio(label, a, b, unit,   x, y) {
	x = metric(a, unit); y = metric(b, unit)
	if (x == "" || y == "" || y == 0) return
	printf "  %-58s %10.3f  (%s %s vs %s)\n", label, x / y, unit, a, b
}
END {
	print "ratios against in-run baselines:"
	ratio("serial upload payload/line vs CCERTDOWN baseline", "BenchmarkUploadEfficiency", "BenchmarkRawLineBaseline", "payload/line")
	ratio("durable HTTP ingest vs no-fsync ingest", "BenchmarkHTTPIngest/durable", "BenchmarkHTTPIngest/nosync", "readings/s")
	ratio("durable HTTP ingest, one reading per POST, vs no-fsync", "BenchmarkHTTPIngestOnePerRequest/durable", "BenchmarkHTTPIngestOnePerRequest/nosync", "readings/s")
	ratio("durable UDP ingest, one reading per datagram, vs no-fsync", "BenchmarkDatagramIngest/durable", "BenchmarkDatagramIngest/nosync", "readings/s")
	ratio("spool group commit (64 appenders) vs fsync per reading", "BenchmarkAppendDurable/appenders=64", "BenchmarkRawWriteFsyncEach", "readings/s")
	ratio("cbor+deflate bytes per reading vs json", "BenchmarkEncode/cbor+deflate", "BenchmarkEncode/json", "bytes/reading")
	ratio("plugin session echo vs net.Pipe", "BenchmarkSessionEcho/plugin", "BenchmarkSessionEcho/net.Pipe_baseline", "MB/s")
	ratio("AT binary frames vs raw copy", "BenchmarkBinaryURC", "BenchmarkRawCopy", "MB/s")
	x = metric("BenchmarkAirBytes", "compact-B/reading"); y = metric("BenchmarkAirBytes", "baseline-B/reading")
	if (x != "" && y > 0) printf "  %-58s %10.4f  (design target <= 0.04)\n", "air bytes/reading, compact / mosquitto_pub -l", x / y
	x = metric("BenchmarkAirBytes", "compact-month-MB-60s")
	if (x != "") printf "  %-58s %10.2f  (goal <= 5; mosquitto_pub %.1f)\n", "MB per gateway-month, 1 reading/10 s, max_delay 60s", x, metric("BenchmarkAirBytes", "baseline-month-MB")
	a = metric("BenchmarkForwardingFootprint", "agent-MiB"); p = metric("BenchmarkForwardingFootprint", "plugin-MiB")
	if (a != "") printf "  %-58s %10.1f  (design target <= 30 MiB; %.2fx the idle agent)\n", "agent resident MiB at 100 readings/s", a, metric("BenchmarkForwardingFootprint", "agent/idle")
	if (p != "") printf "  %-58s %10.1f  (design target <= 20 MiB)\n", "plugin resident MiB at 100 readings/s", p
	for (n in m) {
		split(n, k, SUBSEP)
		if (m[n] != "" && k[2] == "readings/s" && k[1] ~ /(HTTP|Datagram)Ingest.*durable/)
			printf "  %-58s %10.0f  (design target >= 20000)\n", k[1] " readings/s", m[n]
	}
	up = metric("BenchmarkUploadEfficiency", "payload/line")
	if (up != "") printf "  %-58s %10.4f  (design target >= 0.95)\n", "serial upload payload / line rate at 115200 baud", up
}
