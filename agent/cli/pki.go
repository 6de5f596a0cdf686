package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"github.com/cellgate/cellgate/agent/pki"
)

// The small PKI (docs/certificates.md, "Rotation"): `cellgate pki init`
// makes a CA, `cellgate pki serve` answers the CSRs gateways publish when
// they rotate their certificate, so the whole loop runs without a cloud.

func init() {
	extraCommands["pki"] = pkiCmd
}

const pkiHelp = `Create a small certificate authority and answer gateways' certificate requests.

Usage:
  cellgate pki init --dir DIR [--name NAME] [--key-type p256|p384|p521|rsa2048] [--validity 3650d] [--permit-dns DOMAIN]...
  cellgate pki serve --broker mqtts://HOST:PORT --ca FILE --cert FILE --key FILE --dir DIR [--validity 90d]

init writes DIR/ca.key (mode 0600) and DIR/ca.pem and never overwrites them.
serve subscribes to cellgate/+/cert/csr, signs each CSR whose common name is
the device id of its topic with the CA in DIR, for --validity (at most 397d),
and publishes the certificate retained on cellgate/{device_id}/cert/issued.
--ca, --cert and --key are serve's own TLS files for the broker.

Examples:
  cellgate pki init --dir /var/lib/cellgate-pki
  cellgate pki serve --broker mqtts://broker.example.net:8883 --ca ca.pem --cert pki-client.pem --key pki-client.key --dir /var/lib/cellgate-pki --validity 90d
`

// pkiCmd: cellgate pki init|serve.
func pkiCmd(ctx context.Context, args []string, env Env) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		if len(args) == 0 {
			return usageError("pki: want a subcommand, init or serve (see --help)")
		}
		fmt.Fprint(env.Stdout, pkiHelp)
		return errHelp
	}
	switch args[0] {
	case "init":
		return pkiInit(args[1:], env)
	case "serve":
		return pkiServe(ctx, args[1:], env)
	}
	return usageError("pki: unknown subcommand %q: want init or serve", args[0])
}

func pkiInit(args []string, env Env) error {
	fs := newFlagSet("pki init", env)
	dir := fs.String("dir", "", "directory of the CA (created 0700)")
	name := fs.String("name", "cellgate fleet CA", "the CA's common name")
	keyType := fs.String("key-type", "p256", "p256, p384, p521 or rsa2048")
	validity := fs.String("validity", "3650d", "the CA certificate's life")
	permit := fs.StringArray("permit-dns", nil, "name constraint: a DNS domain the CA may issue for (repeatable)")
	if err := parseNoArgs(fs, args, env, pkiHelp); err != nil {
		return err
	}
	if *dir == "" {
		return usageError("pki init: --dir is required")
	}
	v, err := pki.ParseValidity(*validity)
	if err != nil {
		return usageError("pki init: --validity: %v", err)
	}
	if _, err := pki.NewKey(*keyType); err != nil {
		return usageError("pki init: --key-type: %v", err)
	}
	ca, err := pki.Init(*dir, pki.InitOptions{Name: *name, KeyType: *keyType, Validity: v, PermittedDNS: *permit})
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "wrote %s/%s (secret, mode 0600) and %s/%s: CA %q valid until %s\n",
		*dir, pki.CAKeyFile, *dir, pki.CACertFile, ca.Cert.Subject.CommonName, ca.Cert.NotAfter.UTC().Format("2006-01-02"))
	fmt.Fprintf(env.Stdout, "the broker must trust %s/%s for the certificates it issues (mosquitto: add it to cafile); gateways need it in tls.ca\n", *dir, pki.CACertFile)
	return nil
}

func pkiServe(ctx context.Context, args []string, env Env) error {
	fs := newFlagSet("pki serve", env)
	broker := fs.String("broker", "", "the broker, mqtts://HOST:PORT")
	caFile := fs.String("ca", "", "CA file that verifies the broker")
	certFile := fs.String("cert", "", "this server's client certificate for the broker")
	keyFile := fs.String("key", "", "its key")
	sni := fs.String("sni", "", "server name to verify (default: the broker's host)")
	dir := fs.String("dir", "", "the CA directory made by pki init")
	validity := fs.String("validity", "90d", "life of the issued certificates (at most 397d)")
	clientID := fs.String("client-id", "cellgate-pki", "MQTT client id")
	if err := parseNoArgs(fs, args, env, pkiHelp); err != nil {
		return err
	}
	switch {
	case *broker == "" || *dir == "":
		return usageError("pki serve: --broker and --dir are required")
	case (*certFile == "") != (*keyFile == ""):
		return usageError("pki serve: --cert and --key go together")
	}
	u, err := url.Parse(*broker)
	if err != nil || u.Scheme != "mqtts" || u.Port() == "" {
		return usageError("pki serve: --broker %q: want mqtts://HOST:PORT (TLS is always on)", *broker)
	}
	v, err := pki.ParseValidity(*validity)
	if err != nil {
		return usageError("pki serve: --validity: %v", err)
	}
	if v > pki.MaxValidity {
		return usageError("pki serve: --validity %s exceeds %s", *validity, pki.MaxValidity)
	}
	ca, err := pki.Load(*dir)
	if err != nil {
		return err
	}
	name := *sni
	if name == "" {
		name = u.Hostname()
	}
	tlsCfg, err := clientTLS(*caFile, *certFile, *keyFile, name)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(env.Stderr, nil))
	fmt.Fprintf(env.Stdout, "answering CSRs on cellgate/+/cert/csr at %s with CA %q, validity %s\n", u.Redacted(), ca.Cert.Subject.CommonName, strings.TrimSpace(*validity))
	return pki.Serve(ctx, pki.ServeConfig{
		Broker: u, TLS: tlsCfg, CA: ca, Validity: v, ClientID: *clientID, Log: log,
		Issued: func(device, serial string) { fmt.Fprintf(env.Stdout, "issued %s serial %s\n", device, serial) },
	})
}
