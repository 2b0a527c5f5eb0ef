// Package harness runs the ct_exporter binary for tests: it builds it once
// per test process (Binary, and Main to clean up), starts it and reads the
// metrics it serves (StartExporter, Exporter.Scrape, Value, Count), runs it
// to its end (Run), starts the programs around it (StartProcess), and
// receives Alertmanager's notifications (Webhook). What tests need from the
// machine (programs, a free address, polling) is in internal/testenv.
package harness
