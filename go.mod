module github.com/ct-exporter/ct_exporter

go 1.26.8

require (
	github.com/google/certificate-transparency-go v1.4.0
	golang.org/x/crypto v0.59.0
	golang.org/x/net v0.62.0
)

require (
	go.etcd.io/bbolt v1.4.3 // indirect
	golang.org/x/sys v0.50.0 // indirect
	golang.org/x/text v0.44.0 // indirect
)
